/**
 * AWS IoT targets with their upload queues and last sync; and, for an
 * officer, the offline round trip through the station's export folder: a
 * target's bundle written there, a receipt chosen from the files there (by
 * name: the page never sends a path) and imported with every check of
 * `linesign import-receipt`. The screen says where each file went or came from.
 */
import { field, form, h, replace, when } from "../dom.js";
import { act, section, session, table, type Screen } from "../kiosk.js";

const size = (n: number) =>
  n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`;

export function targetsScreen(): Screen {
  return {
    show(root) {
      const officer = session.user?.role === "officer";
      const listBox = h("div", {});
      const msg = h("div", { class: "messages", "aria-live": "polite" });
      const exportBox = h("div", {});
      const importBox = h("div", {});
      const folderBox = h("p", { class: "folder" });

      const load = () =>
        void act(listBox, "targets.list", {}, (targets) => {
          listBox.replaceChildren(
            targets.length === 0 ? h("p", {}, "No targets yet (linesign target add).") : "",
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
              targets.map((t) => [
                t.name,
                t.region,
                t.caMode,
                t.deviceRegistration,
                t.pending,
                t.uploaded,
                t.failed,
                h(
                  "span",
                  { "data-last-sync": t.name },
                  t.lastSync
                    ? `${when(t.lastSync.at)}: ${t.lastSync.outcome}${t.lastSync.via === "bundle" ? " (bundle)" : ""}`
                    : "never",
                ),
              ]),
              "AWS IoT targets",
            ),
          );
          if (officer) exportForm(targets.map((t) => ({ name: t.name, caMode: t.caMode })));
        });

      const exportForm = (targets: { name: string; caMode: string }[]) =>
        replace(
          exportBox,
          form(
            { class: "grid-form", id: "bundle-form" },
            [
              ...field(
                "Target",
                h(
                  "select",
                  { id: "bx-target", name: "target", required: true },
                  ...targets.map((t) => h("option", { value: t.name }, `${t.name} (${t.caMode})`)),
                ),
              ),
              ...field(
                "Registration code (DEFAULT mode only)",
                h("input", { id: "bx-code", name: "registrationCode", maxlength: 128 }),
              ),
              h(
                "button",
                { type: "submit", class: "primary", disabled: targets.length === 0 },
                "Export bundle",
              ),
            ],
            (v) =>
              void act(
                msg,
                "targets.exportBundle",
                {
                  target: v.target ?? "",
                  ...(v.registrationCode ? { registrationCode: v.registrationCode } : {}),
                },
                (b) => {
                  msg.replaceChildren(
                    h(
                      "div",
                      { class: "banner ok", "data-bundle-out": b.out },
                      h("p", {}, `Bundle ${b.bundle} written to ${b.out}.`),
                      h(
                        "p",
                        {},
                        `${b.devices} device certificate(s), ${b.cas} CA(s), ${b.revocations} revocation(s). Carry it to the online machine and upload it there; bring its receipt back into this folder.`,
                      ),
                      b.verificationExpiry
                        ? h(
                            "p",
                            {},
                            `Its verification certificates expire at ${when(b.verificationExpiry)}: upload it before then.`,
                          )
                        : "",
                    ),
                  );
                  loadFolder();
                },
              ),
          ),
        );

      const loadFolder = () =>
        void act(importBox, "exports.list", {}, (f) => {
          folderBox.replaceChildren(
            h("strong", {}, "Export folder: "),
            h("span", { "data-export-dir": f.dir }, f.dir),
            f.configured ? " (removable media, set in the configuration)" : " (the station's own)",
          );
          const receipts = f.files.filter((x) => x.name.endsWith(".json"));
          importBox.replaceChildren(
            form(
              { class: "grid-form", id: "receipt-form" },
              [
                ...field(
                  "Receipt",
                  h(
                    "select",
                    { id: "rc-name", name: "name", required: true },
                    h(
                      "option",
                      { value: "" },
                      receipts.length ? "Choose the receipt file…" : "No files in the folder",
                    ),
                    ...receipts.map((x) =>
                      h(
                        "option",
                        { value: x.name },
                        `${x.name} (${size(x.size)}, ${when(x.modifiedAt)})`,
                      ),
                    ),
                  ),
                ),
                h("button", { type: "submit", class: "primary" }, "Import receipt"),
                h(
                  "button",
                  { type: "button", class: "secondary", onclick: () => loadFolder() },
                  "Look again",
                ),
              ],
              (v) =>
                void act(msg, "targets.importReceipt", { name: v.name ?? "" }, (r) => {
                  msg.replaceChildren(
                    h(
                      "div",
                      { class: "banner ok", "data-receipt": r.receiptId },
                      h("p", {}, `Receipt imported from ${r.file}.`),
                      h(
                        "p",
                        {},
                        `Bundle ${r.bundleId}, uploaded by "${r.uploader}": ${r.done} registered, ${r.failed} failed${r.failed ? " (still queued: upload the same bundle again, or export a new one)" : ""}, ${r.cas} CA registration(s).`,
                      ),
                    ),
                  );
                  load();
                  loadFolder();
                }),
            ),
          );
        });

      replace(
        root,
        section("AWS IoT targets", listBox),
        officer
          ? section(
              "Offline round trip (export folder)",
              folderBox,
              msg,
              h("h3", {}, "Export a bundle"),
              exportBox,
              h("h3", {}, "Import a receipt"),
              importBox,
            )
          : null,
      );
      load();
      if (officer) loadFolder();
    },
  };
}
