/** The audit screen: verify the log, export the bundle, back the station up, read the log with filters. */
import type { Result } from "../../../../src/domain/kiosk-api.js";
import { field, form, formValues, h, replace, when } from "../dom.js";
import { act, section, session, table, type Screen } from "../kiosk.js";

export function auditScreen(): Screen {
  return {
    show(root) {
      const verdict = h("div", { class: "verdict", "aria-live": "polite" });
      const msg = h("div", { class: "messages" });
      const logBox = h("div", { class: "log" });
      const lookBox = h("div", { class: "lookup-result" });
      const PAGE = 50;
      // Newest first; each page remembers where it started so "Newer" can go back.
      let pages: (number | undefined)[] = [undefined];
      const filters = form(
        { class: "row filters" },
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
          ...field("From (date)", h("input", { id: "f-since", name: "since", type: "date" })),
          ...field("To (date)", h("input", { id: "f-until", name: "until", type: "date" })),
          h("button", { type: "submit", class: "secondary" }, "Show"),
        ],
        () => {
          pages = [undefined];
          load();
        },
      );
      const dayStart = (d: string, next = false) => {
        const t = new Date(`${d}T00:00:00`);
        if (next) t.setDate(t.getDate() + 1);
        return t.toISOString();
      };
      // A device's or certificate's entries link to everything recorded about it.
      const subjectCell = (subject: string | null, action: string): string | Node => {
        if (!subject) return "";
        const serial = /^[0-9a-f]{16,64}$/.test(subject);
        if (!serial && !action.startsWith("issuance.")) return subject;
        return h(
          "button",
          {
            class: "link",
            title: "Everything recorded about it",
            onclick: () => void lookup(serial ? { serial: subject } : { deviceId: subject }),
          },
          subject,
        );
      };
      const eventsTable = (rows: Result<"audit.log">, label: string) =>
        table(
          ["#", "When", "Who", "Action", "Subject", "Outcome", "Message"],
          rows.map((e) => [
            e.seq,
            when(e.ts),
            e.actor,
            e.action,
            subjectCell(e.subject, e.action),
            h(
              "span",
              { class: `outcome outcome-${e.outcome}` },
              e.outcome + (e.code ? ` ${e.code}` : ""),
            ),
            e.message ?? "",
          ]),
          label,
        );
      const load = () => {
        const v = formValues(filters);
        const page = pages.length - 1;
        void act(
          logBox,
          "audit.log",
          {
            limit: PAGE + 1,
            ...(v.action ? { action: v.action } : {}),
            ...(v.actor ? { actor: v.actor } : {}),
            ...(v.outcome ? { outcome: v.outcome as "ok" | "refused" | "failed" } : {}),
            ...(v.since ? { since: dayStart(v.since) } : {}),
            ...(v.until ? { until: dayStart(v.until, true) } : {}),
            ...(pages[page] !== undefined ? { beforeSeq: pages[page] } : {}),
          },
          (rows) => {
            const more = rows.length > PAGE;
            const shown = rows.slice(0, PAGE);
            const last = shown[shown.length - 1];
            logBox.replaceChildren(
              h(
                "div",
                { class: "row pager" },
                h(
                  "button",
                  {
                    class: "secondary",
                    "data-focus": "newer",
                    disabled: page === 0,
                    onclick: () => {
                      pages.pop();
                      load();
                    },
                  },
                  "← Newer",
                ),
                h(
                  "span",
                  { "data-page": page + 1 },
                  shown.length
                    ? `Page ${page + 1}: entries ${shown[0]!.seq} to ${last!.seq}`
                    : "No entries match.",
                ),
                h(
                  "button",
                  {
                    class: "secondary",
                    "data-focus": "older",
                    disabled: !more,
                    onclick: () => {
                      pages.push(last!.seq);
                      load();
                    },
                  },
                  "Older →",
                ),
              ),
              eventsTable(shown, "Event log"),
            );
          },
        );
      };
      const lookup = (which: { serial: string } | { deviceId: string }) =>
        act(lookBox, "certificates.find", which, (r) => {
          const name = "serial" in which ? `serial ${which.serial}` : `device ${which.deviceId}`;
          lookBox.replaceChildren(
            h("h3", { "data-lookup": name }, `Everything recorded about ${name}`),
            r.certificates.length
              ? table(
                  [
                    "Device",
                    "Serial",
                    "State",
                    "CA",
                    "Profile",
                    "Work order",
                    "Operator",
                    "Issued",
                  ],
                  r.certificates.map((c) => [
                    c.deviceId,
                    c.serial,
                    c.state,
                    c.ca,
                    c.profile,
                    c.workOrder ?? "",
                    c.operator,
                    when(c.issuedAt),
                  ]),
                  "Certificates",
                )
              : h("p", {}, "No certificate was issued to it."),
            eventsTable(r.events, "Entries about it"),
          );
          lookBox.scrollIntoView();
        });
      const finder = form(
        { class: "row", id: "lookup-form" },
        [
          ...field(
            "Device id or serial",
            h("input", { id: "f-lookup", name: "what", required: true }),
          ),
          h("button", { type: "submit", class: "secondary" }, "Look up"),
        ],
        (v) => {
          const what = v.what ?? "";
          void lookup(/^[0-9A-Fa-f]{16,64}$/.test(what) ? { serial: what } : { deviceId: what });
        },
      );
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
            session.user?.role === "officer"
              ? h(
                  "button",
                  {
                    class: "secondary",
                    id: "backup-now",
                    onclick: () =>
                      void act(msg, "station.backup", {}, (x) => {
                        msg.replaceChildren(
                          h(
                            "p",
                            { class: "banner ok", "data-backup": x.id },
                            `Backup written to ${x.out}: ${x.files} files, the log up to entry ${x.head?.seq ?? 0}.`,
                          ),
                        );
                      }),
                  },
                  "Back up the station",
                )
              : "",
          ),
          verdict,
          msg,
        ),
        section("A device or certificate", finder, lookBox),
        section("Event log", filters, logBox),
      );
      load();
    },
  };
}
