/** Human and JSON renderings of command results. */
import type { CaView } from "../app/ca.js";
import type { StationStatus } from "../app/station.js";
import type { CliIo } from "./main.js";

/** Writes `value` as one JSON line with --json, else `text`. */
export function writeOutput(
  io: CliIo,
  json: boolean,
  value: Record<string, unknown>,
  text: string,
): void {
  io.out(json ? JSON.stringify(value) + "\n" : text.endsWith("\n") ? text : text + "\n");
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatCaTable(cas: CaView[]): string {
  if (cas.length === 0)
    return 'No CAs yet. Create one with "linesign ca create" (or "linesign init --dev").';
  const rows = [["LABEL", "KIND", "STATUS", "KEY", "NOT AFTER", "SUBJECT"]];
  for (const c of cas) {
    rows.push([
      c.label,
      c.kind,
      c.status,
      c.development ? `${c.keyType} (software, DEVELOPMENT ONLY)` : `${c.keyType} (token)`,
      c.notAfter ? c.notAfter.slice(0, 10) : "-",
      c.subject,
    ]);
  }
  return table(rows);
}

export function formatStatus(s: StationStatus): string {
  return [
    `Station ${s.stationId}${s.development ? " (DEVELOPMENT station: not for production)" : ""}`,
    `Token "${s.token.label}": ${s.token.present ? "present" : "NOT PRESENT"}${s.token.others.length ? ` (also present: ${s.token.others.join(", ")})` : ""}`,
    `Event log: ${s.log.entries} entries${s.log.head ? `, head ${s.log.head.hash.slice(0, 16)}...` : ""}`,
    "",
    formatCaTable(s.cas),
  ].join("\n");
}
