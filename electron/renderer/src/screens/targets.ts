/** AWS IoT targets with their upload queues and last sync. */
import { h, replace, when } from "../dom.js";
import { call, errorBox, section, table, type Screen } from "../kiosk.js";

export function targetsScreen(): Screen {
  return {
    show(root) {
      void call("targets.list", {}).then((r) => {
        if (!r.ok) return replace(root, errorBox(r.error.message, r.error.code));
        replace(
          root,
          section(
            "AWS IoT targets",
            r.result.length === 0 ? h("p", {}, "No targets yet (linesign target add).") : null,
            table(
              [
                "Target",
                "Region",
                "CA mode",
                "Devices",
                "Pending",
                "Uploaded",
                "Failed",
                "Last sync",
              ],
              r.result.map((t) => [
                t.name,
                t.region,
                t.caMode,
                t.deviceRegistration,
                t.pending,
                t.uploaded,
                t.failed,
                t.lastSync
                  ? `${when(t.lastSync.at)}: ${t.lastSync.outcome}${t.lastSync.via === "bundle" ? " (bundle)" : ""}`
                  : "never",
              ]),
              "AWS IoT targets",
            ),
          ),
        );
      });
    },
  };
}
