/** The audit screen: verify the log, export the bundle, read the log with filters. */
import { field, form, formValues, h, replace, when } from "../dom.js";
import { act, section, table, type Screen } from "../kiosk.js";

export function auditScreen(): Screen {
  return {
    show(root) {
      const verdict = h("div", { class: "verdict", "aria-live": "polite" });
      const msg = h("div", { class: "messages" });
      const logBox = h("div", { class: "log" });
      const filters = form(
        { class: "row" },
        [
          ...field(
            "Action",
            h("input", {
              id: "f-action",
              name: "action",
              placeholder: "e.g. issuance.reject or signing.",
            }),
          ),
          ...field("Who", h("input", { id: "f-actor", name: "actor" })),
          ...field(
            "Outcome",
            h(
              "select",
              { id: "f-outcome", name: "outcome" },
              ...["any", "ok", "refused", "failed"].map((o) =>
                h("option", { value: o === "any" ? "" : o }, o),
              ),
            ),
          ),
          h("button", { type: "submit", class: "secondary" }, "Show"),
        ],
        () => load(),
      );
      const load = () => {
        const v = formValues(filters);
        void act(
          logBox,
          "audit.log",
          {
            limit: 200,
            ...(v.action ? { action: v.action } : {}),
            ...(v.actor ? { actor: v.actor } : {}),
            ...(v.outcome ? { outcome: v.outcome as "ok" | "refused" | "failed" } : {}),
          },
          (rows) =>
            logBox.replaceChildren(
              table(
                ["#", "When", "Who", "Action", "Subject", "Outcome", "Message"],
                rows.map((e) => [
                  e.seq,
                  when(e.ts),
                  e.actor,
                  e.action,
                  e.subject ?? "",
                  h(
                    "span",
                    { class: `outcome outcome-${e.outcome}` },
                    e.outcome + (e.code ? ` ${e.code}` : ""),
                  ),
                  e.message ?? "",
                ]),
                "Event log",
              ),
            ),
        );
      };
      replace(
        root,
        section(
          "Verify the log",
          h(
            "div",
            { class: "row" },
            h(
              "button",
              {
                class: "primary",
                onclick: () =>
                  void act(msg, "audit.verify", {}, (v) => {
                    const c = v.counts;
                    verdict.replaceChildren(
                      h(
                        "p",
                        {
                          class: `banner ${v.ok ? "ok" : "bad"}`,
                          "data-verdict": v.ok ? "intact" : "broken",
                        },
                        h("span", { "aria-hidden": "true" }, v.ok ? "✓ " : "⚠ "),
                        v.message,
                      ),
                      h(
                        "dl",
                        { class: "counts-list" },
                        ...(
                          [
                            ["Issued", c.issued],
                            ["Confirmed", c.confirmed],
                            ["Unconfirmed", c.unconfirmed],
                            ["Rejected", c.rejected],
                            ["Revoked", c.revoked],
                          ] as [string, number][]
                        ).flatMap(([k, n]) => [
                          h("dt", {}, k),
                          h("dd", { "data-count": k.toLowerCase() }, String(n)),
                        ]),
                      ),
                      Object.keys(c.rejectedByReason).length
                        ? table(
                            ["Rejected because", "Count"],
                            Object.entries(c.rejectedByReason).map(([k, n]) => [k, n]),
                            "Rejections by reason",
                          )
                        : "",
                    );
                    load();
                  }),
              },
              "Verify now",
            ),
            h(
              "button",
              {
                class: "secondary",
                onclick: () =>
                  void act(msg, "audit.export", {}, (x) => {
                    const bytes = Uint8Array.from(atob(x.base64), (ch) => ch.charCodeAt(0));
                    const a = h("a", {
                      href: URL.createObjectURL(new Blob([bytes], { type: "application/json" })),
                      download: x.fileName,
                    }) as HTMLAnchorElement;
                    a.click();
                    msg.replaceChildren(
                      h(
                        "p",
                        { class: "banner ok" },
                        `Exported ${x.events} entries as ${x.fileName}.`,
                      ),
                    );
                  }),
              },
              "Export audit bundle",
            ),
          ),
          verdict,
          msg,
        ),
        section("Event log", filters, logBox),
      );
      load();
    },
  };
}
