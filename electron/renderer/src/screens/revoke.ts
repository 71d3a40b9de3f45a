/** Revocation and re-issue approval. */
import type { Args } from "../../../../src/domain/kiosk-api.js";
import { field, form, h, replace } from "../dom.js";
import { act, section, type Screen } from "../kiosk.js";

const REASONS = [
  "keyCompromise",
  "superseded",
  "cessationOfOperation",
  "affiliationChanged",
  "cACompromise",
  "privilegeWithdrawn",
  "unspecified",
];

export function revokeScreen(): Screen {
  return {
    show(root) {
      const msg = h("div", { class: "messages" });
      const revoke = form(
        { class: "grid-form", id: "revoke-form" },
        [
          ...field("Serial (hex)", h("input", { id: "rv-serial", name: "serial" })),
          ...field("or device id", h("input", { id: "rv-device", name: "deviceId" })),
          ...field(
            "Reason",
            h(
              "select",
              { id: "rv-reason", name: "reason" },
              ...REASONS.map((r) => h("option", { value: r }, r)),
            ),
          ),
          h("button", { type: "submit", class: "danger" }, "Revoke"),
        ],
        (v, f) =>
          void act(
            msg,
            "revocation.revoke",
            {
              reason: v.reason as Args<"revocation.revoke">["reason"],
              ...(v.serial ? { serial: v.serial } : {}),
              ...(v.deviceId ? { deviceId: v.deviceId } : {}),
            },
            (r) => {
              msg.replaceChildren(
                h(
                  "p",
                  { class: "banner ok" },
                  `Revoked: ${r.revoked.map((x) => `${x.serial} (${x.deviceId})`).join(", ")}. Publish a new CRL and sync.`,
                ),
              );
              f.reset();
            },
          ),
      );
      const reMsg = h("div", { class: "messages" });
      const reissue = form(
        { class: "grid-form", id: "reissue-form" },
        [
          ...field("Device id", h("input", { id: "ri-device", name: "deviceId", required: true })),
          ...field(
            "Why",
            h("input", { id: "ri-reason", name: "reason", required: true, maxlength: 500 }),
          ),
          h("button", { type: "submit", class: "primary" }, "Approve one re-issue"),
        ],
        (v, f) =>
          void act(
            reMsg,
            "reissue.approve",
            { deviceId: v.deviceId ?? "", reason: v.reason ?? "" },
            (a) => {
              reMsg.replaceChildren(
                h(
                  "p",
                  { class: "banner ok" },
                  `Approved: the next certificate for ${a.deviceId} supersedes its live one (approval ${a.id}).`,
                ),
              );
              f.reset();
            },
          ),
      );
      replace(
        root,
        section("Revoke a certificate", revoke, msg),
        section("Approve a re-issue", reissue, reMsg),
      );
    },
  };
}
