/**
 * Certificate authorities: what the station holds, which are roots, which
 * profiles issue under each; and the officer's acts on them (activate,
 * deactivate, move a profile to another CA, publish a CRL into the export
 * folder). Each act is the station's own (the same as `linesign ca ...` and
 * `linesign crl`); the screen says what happened and where a file went.
 */
import type { Result } from "../../../../src/domain/kiosk-api.js";
import { field, form, h, replace, when } from "../dom.js";
import { act, errorBox, section, session, table, type Screen } from "../kiosk.js";

type Ca = Result<"cas.list">[number];

const statusText = (c: Ca) =>
  (c.keyMissing ? "key missing" : c.retiredAt ? "retired" : c.status) +
  (c.development ? " (development)" : "");

export function casScreen(): Screen {
  return {
    show(root) {
      const msg = h("div", { class: "messages", "aria-live": "polite" });
      const confirmBox = h("div", { class: "confirm-box" });
      const officer = session.user?.role === "officer";
      const done = (el: HTMLElement) => {
        confirmBox.replaceChildren();
        msg.replaceChildren(el);
        load();
      };
      const banner = (attrs: Record<string, string>, ...text: (string | Node)[]) =>
        h("div", { class: "banner ok", ...attrs }, ...text.map((t) => h("p", {}, t)));

      const deactivate = (c: Ca) => {
        const stop = (stopProfiles: boolean) =>
          void act(msg, "cas.deactivate", { label: c.label, stopProfiles }, (x) =>
            done(
              banner(
                { "data-ca-done": `deactivate ${x.label}` },
                `CA "${x.label}" is now ${x.status}: it signs nothing here, and the next sync marks it INACTIVE at AWS IoT.`,
              ),
            ),
          );
        replace(
          confirmBox,
          h(
            "div",
            { class: "card confirm", role: "alertdialog", "aria-labelledby": "ca-confirm-title" },
            h("h3", { id: "ca-confirm-title" }, `Deactivate CA ${c.label}?`),
            h(
              "p",
              {},
              "It stops signing here, and at the next sync it becomes INACTIVE at AWS IoT: devices it signed then fail just-in-time registration.",
            ),
            c.usedBy.length
              ? h(
                  "p",
                  { "data-used-by": c.usedBy.join(" ") },
                  `It still issues for ${c.usedBy.join(", ")}. Move ${c.usedBy.length > 1 ? "them" : "it"} to another CA first (below). Only if its key is compromised, stop ${c.usedBy.length > 1 ? "them" : "it"} now: no device is signed for ${c.usedBy.length > 1 ? "them" : "it"} until moved.`,
                )
              : null,
            h(
              "div",
              { class: "row" },
              c.usedBy.length
                ? h(
                    "button",
                    { class: "danger", "data-focus": "ca-stop", onclick: () => stop(true) },
                    `Deactivate ${c.label} and stop ${c.usedBy.join(", ")}`,
                  )
                : h(
                    "button",
                    { class: "danger", "data-focus": "ca-confirm", onclick: () => stop(false) },
                    `Deactivate ${c.label}`,
                  ),
              h(
                "button",
                { class: "secondary", onclick: () => confirmBox.replaceChildren() },
                "Cancel",
              ),
            ),
          ),
        );
        (confirmBox.querySelector("button") as HTMLElement | null)?.focus();
      };

      const actions = (c: Ca): Node => {
        if (!officer) return h("span", {});
        const buttons: HTMLElement[] = [];
        if (c.status !== "pending" && !c.keyMissing && (c.status === "inactive" || c.retiredAt))
          buttons.push(
            h(
              "button",
              {
                class: "secondary",
                "data-ca-act": `activate ${c.label}`,
                onclick: () =>
                  void act(msg, "cas.activate", { label: c.label }, (x) =>
                    done(
                      banner(
                        { "data-ca-done": `activate ${x.label}` },
                        `CA "${x.label}" is now ${x.status}: it may sign here again.`,
                      ),
                    ),
                  ),
              },
              "Activate",
            ),
          );
        if (c.status === "active")
          buttons.push(
            h(
              "button",
              {
                class: "secondary",
                "data-ca-act": `deactivate ${c.label}`,
                onclick: () => deactivate(c),
              },
              "Deactivate…",
            ),
          );
        if (c.status !== "pending" && !c.keyMissing)
          buttons.push(
            h(
              "button",
              {
                class: "secondary",
                "data-ca-act": `crl ${c.label}`,
                onclick: () =>
                  void act(msg, "cas.publishCrl", { ca: c.label }, (r) =>
                    done(
                      banner(
                        { "data-crl-out": r.out },
                        `CRL number ${r.number} of CA "${r.ca}" (${r.entries} revoked) written to ${r.out}.`,
                        `Next update by ${when(r.nextUpdate)}: publish again before then.`,
                      ),
                    ),
                  ),
              },
              "Publish CRL",
            ),
          );
        return h("div", { class: "row actions" }, ...buttons);
      };

      const listBox = h("div", {});
      const rotateBox = h("div", {});
      const load = () =>
        void act(listBox, "cas.list", {}, (cas) => {
          listBox.replaceChildren(
            table(
              ["CA", "Status", "Issues for", "Subject", "Valid until", ...(officer ? [""] : [])],
              cas.map((c) => [
                h(
                  "div",
                  {},
                  h("strong", { "data-ca": c.label }, c.label),
                  h(
                    "span",
                    { class: "muted ca-role" },
                    `${c.root ? "Root: signs CAs, never devices" : "Intermediate"} · ${c.keyType}`,
                  ),
                ),
                h("span", { class: `status status-${c.status}` }, statusText(c)),
                h(
                  "span",
                  { "data-ca-used-by": c.label },
                  c.usedBy.length ? c.usedBy.join(", ") : c.root ? "" : "no profile",
                ),
                c.subject,
                when(c.notAfter),
                ...(officer ? [actions(c)] : []),
              ]),
              "Certificate authorities",
            ),
          );
          if (officer) rotateForm(cas);
        });

      // A profile moves to an active intermediate; roots and retired CAs are not offered.
      const rotateForm = (cas: Ca[]) => {
        const profiles = [...new Set(cas.flatMap((c) => c.usedBy))].sort();
        const targets = cas.filter((c) => !c.root && c.status === "active" && !c.retiredAt);
        const rotateMsg = h("div", { class: "messages" });
        replace(
          rotateBox,
          form(
            { class: "grid-form", id: "rotate-form" },
            [
              ...field(
                "Profile",
                h(
                  "select",
                  { id: "rot-profile", name: "profile", required: true },
                  h("option", { value: "" }, "Choose a profile…"),
                  ...profiles.map((p) => {
                    const from = cas.find((c) => c.usedBy.includes(p));
                    return h("option", { value: p }, `${p} (now ${from?.label ?? "?"})`);
                  }),
                ),
              ),
              ...field(
                "To CA",
                h(
                  "select",
                  { id: "rot-to", name: "to", required: true },
                  h("option", { value: "" }, "Choose a CA…"),
                  ...targets.map((c) => h("option", { value: c.label }, c.label)),
                ),
              ),
              h("button", { type: "submit", class: "primary" }, "Move the profile"),
            ],
            (v) => {
              if (!v.profile || !v.to) {
                rotateMsg.replaceChildren(errorBox("Choose a profile and the CA it moves to."));
                return;
              }
              void act(rotateMsg, "cas.rotate", { profile: v.profile, to: v.to }, (r) =>
                done(
                  banner(
                    { "data-rotated": `${r.profile} ${r.to}` },
                    `Profile "${r.profile}" now issues under CA "${r.to}" (was "${r.from}") from its next device on.`,
                    r.stillUsing.length
                      ? `CA "${r.from}" still issues for ${r.stillUsing.join(", ")}.`
                      : `CA "${r.from}" issues for no profile now: it can be deactivated, and it still signs its CRLs.`,
                  ),
                ),
              );
            },
          ),
          rotateMsg,
        );
      };

      replace(
        root,
        section("Certificate authorities", msg, confirmBox, listBox),
        officer ? section("Move a profile to another CA", rotateBox) : null,
      );
      load();
    },
  };
}
