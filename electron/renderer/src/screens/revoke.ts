/** Revocation and re-issue approval. */
import type { Args } from "../../../../src/domain/kiosk-api.js";
import type { Result } from "../../../../src/domain/kiosk-api.js";
import { field, form, h, replace, when } from "../dom.js";
import { act, errorBox, section, table, type Screen } from "../kiosk.js";

/** What a revocation did, and what follows from it. */
function resultView(r: Result<"revocation.revoke">): HTMLElement {
  return h(
    "div",
    { class: "banner ok", "data-revoked": r.revoked.map((x) => x.serial).join(" ") },
    h(
      "p",
      {},
      h("strong", {}, "Revoked: "),
      r.revoked.map((x) => `${x.serial} (device ${x.deviceId}, CA ${x.ca})`).join("; "),
      ".",
    ),
    h(
      "p",
      { "data-crl": "" },
      "In the next CRL: ",
      r.crls.map((c) => `number ${c.number} of ${c.ca}`).join(", "),
      " (publish it from the CAs screen).",
    ),
    h(
      "p",
      { "data-targets": r.targets.join(" ") },
      r.targets.length
        ? `Queued for ${r.targets.join(", ")}: the next sync revokes it there.`
        : "No target had this certificate registered: nothing to revoke in AWS IoT.",
    ),
  );
}

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
      const confirmBox = h("div", { class: "confirm-box" });
      const revoke = form(
        { class: "grid-form", id: "revoke-form" },
        [
          ...field("Serial (hex)", h("input", { id: "rv-serial", name: "serial" })),
          ...field("or device id", h("input", { id: "rv-device", name: "deviceId" })),
          ...field(
            "Reason",
            h(
              "select",
              { id: "rv-reason", name: "reason", required: true },
              // No reason is chosen for the officer: each one means something different to a relying party.
              h("option", { value: "", selected: true }, "Choose a reason…"),
              ...REASONS.map((r) => h("option", { value: r }, r)),
            ),
          ),
          h("button", { type: "submit", class: "danger" }, "Revoke…"),
        ],
        (v, f) => {
          confirmBox.replaceChildren();
          const which = v.serial
            ? { serial: v.serial }
            : v.deviceId
              ? { deviceId: v.deviceId }
              : null;
          if (!which || !v.reason) {
            msg.replaceChildren(
              errorBox("Name a serial or a device id, and choose a reason.", undefined),
            );
            return;
          }
          void act(msg, "certificates.find", which, (found) => {
            const live = found.certificates.filter(
              (c) => c.state !== "REVOKED" && c.state !== "DELIVERY_FAILED",
            );
            if (live.length === 0) {
              msg.replaceChildren(
                errorBox(
                  `No certificate that could be revoked matches ${v.serial ? `serial ${v.serial}` : `device ${v.deviceId}`}.`,
                ),
              );
              return;
            }
            // The officer sees exactly what goes: device, serial, CA and state, before anything changes.
            replace(
              confirmBox,
              h(
                "div",
                {
                  class: "card confirm",
                  role: "alertdialog",
                  "aria-labelledby": "rv-confirm-title",
                },
                h(
                  "h3",
                  { id: "rv-confirm-title" },
                  `Revoke ${live.length === 1 ? "this certificate" : `these ${live.length} certificates`} (${v.reason})?`,
                ),
                table(
                  ["Device", "Serial", "CA", "State", "Issued"],
                  live.map((c) => [c.deviceId, c.serial, c.ca, c.state, when(c.issuedAt)]),
                  "Certificates to revoke",
                ),
                h("p", {}, "A revocation cannot be undone."),
                h(
                  "div",
                  { class: "row" },
                  h(
                    "button",
                    {
                      class: "danger",
                      "data-focus": "rv-confirm",
                      onclick: () =>
                        void act(
                          msg,
                          "revocation.revoke",
                          { ...which, reason: v.reason as Args<"revocation.revoke">["reason"] },
                          (r) => {
                            confirmBox.replaceChildren();
                            msg.replaceChildren(resultView(r));
                            f.reset();
                          },
                        ),
                    },
                    live.length === 1
                      ? `Revoke ${live[0]!.serial} of ${live[0]!.deviceId}`
                      : `Revoke all ${live.length} of ${live[0]!.deviceId}`,
                  ),
                  h(
                    "button",
                    { class: "secondary", onclick: () => confirmBox.replaceChildren() },
                    "Cancel",
                  ),
                ),
              ),
            );
            (confirmBox.querySelector("[data-focus=rv-confirm]") as HTMLElement | null)?.focus();
          });
        },
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
        section("Revoke a certificate", revoke, confirmBox, msg),
        section("Approve a re-issue", reissue, reMsg),
      );
    },
  };
}
