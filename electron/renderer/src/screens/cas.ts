/** Certificate authorities: what the station holds and in which state. */
import { h, replace, when } from "../dom.js";
import { call, errorBox, section, table, type Screen } from "../kiosk.js";

export function casScreen(): Screen {
  return {
    show(root) {
      void call("cas.list", {}).then((r) => {
        if (!r.ok) return replace(root, errorBox(r.error.message, r.error.code));
        replace(
          root,
          section(
            "Certificate authorities",
            table(
              ["Label", "Status", "Kind", "Key", "Subject", "Valid until"],
              r.result.map((c) => [
                c.label,
                h(
                  "span",
                  { class: `status status-${c.status}` },
                  c.status + (c.development ? " (development)" : ""),
                ),
                c.kind,
                c.keyType,
                c.subject,
                when(c.notAfter),
              ]),
              "Certificate authorities",
            ),
          ),
        );
      });
    },
  };
}
