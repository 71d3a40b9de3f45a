/** Human and JSON renderings of command results. */
import type { EventRecord } from "../domain/event-log.js";
import { AUDIT_LOG_COLUMNS, type AuditLogRow } from "../app/audit.js";
import type { CaView } from "../app/ca.js";
import { LinesignError } from "../domain/errors.js";
import type { StationStatus } from "../app/station.js";
import type { CopyStatus } from "../app/db-copy.js";
import { renderTokenFacts } from "../app/token.js";
import type { CliIo } from "./io.js";

/** Writes `value` as one JSON line with --json, else `text`. */
export function writeOutput(
  io: CliIo,
  json: boolean,
  value: Record<string, unknown>,
  text: string,
): void {
  io.out(json ? JSON.stringify(value) + "\n" : text.endsWith("\n") ? text : text + "\n");
}

/**
 * Control characters (C0, DEL, C1) and bidirectional overrides, which a terminal would act on
 * instead of showing: text from the log may hold what an outsider sent (a device id, a file name).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every character a terminal would act on written as \u{..}, so it is shown, not run. */
export function shown(s: string): string {
  return s.replace(UNSHOWABLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** An RFC 4180 CSV cell; one a spreadsheet would run as a formula is prefixed with a quote. */
function csvCell(v: unknown): string {
  let s = v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function table(rows: string[][]): string {
  rows = rows.map((r) => r.map(shown));
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
      c.keyMissing ? "KEY MISSING" : c.retiredAt ? "retired" : c.status,
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
    ...(s.headStore ? [`Log head kept in: ${s.headStore.where} (${s.headStore.kind})`] : []),
    ...(s.tokenFacts ? renderTokenFacts(s.tokenFacts) : []),
    ...(s.copy ? [formatCopy(s.copy)] : []),
    ...(s.versions
      ? [
          `Software: linesign ${s.versions.software}; database schema ${s.versions.schema} (this software writes ${s.versions.schemaSupported})`,
        ]
      : []),
    "",
    formatCaTable(s.cas),
  ].join("\n");
}

/** The second copy's line (and its error, while copying fails). */
function formatCopy(c: CopyStatus): string {
  const lag =
    c.entriesBehind === 0
      ? "current"
      : `${c.entriesBehind} entr${c.entriesBehind === 1 ? "y" : "ies"} (${c.secondsBehind} s) behind`;
  return [
    `Second copy of the database: ${c.path}: ${lag}; last copy ${c.lastCopyAt ?? "never"} (${c.trigger}, at most every ${c.everySeconds} s)`,
    ...(c.problem
      ? [`  COPY NOT THERE AS WRITTEN: ${c.problem}; the next copy writes it again`]
      : []),
    ...(c.lastError
      ? [`  COPY FAILING since ${c.failingSince} (${c.failures} tries): ${c.lastError.message}`]
      : []),
  ].join("\n");
}

/** PEM of one certificate. */
export function pemCertificate(der: Uint8Array): string {
  const b64 = Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** Normalises a --since/--until value to ISO 8601 UTC. Throws USAGE naming the option. */
export function isoTime(value: string | undefined, option: string): string | undefined {
  if (value === undefined) return undefined;
  const t = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(t.getTime())) {
    throw new LinesignError(
      "USAGE",
      `${option} "${value}" is not a time: write it as ISO 8601, e.g. 2026-11-23 or 2026-11-23T08:00:00Z.`,
    );
  }
  return t.toISOString();
}

/** RFC 4180 CSV; cells that a spreadsheet would run as formulas are prefixed with a quote. */
export function toCsv(rows: AuditLogRow[]): string {
  const lines = [AUDIT_LOG_COLUMNS.join(",")];
  for (const r of rows) lines.push(AUDIT_LOG_COLUMNS.map((c) => csvCell(r[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}

export function formatAuditTable(rows: AuditLogRow[]): string {
  if (rows.length === 0) return "Nothing matches.";
  const t = [["TIME", "DEVICE", "STATUS", "SERIAL / REASON", "PROFILE", "OPERATOR", "ORIGIN"]];
  for (const r of rows) {
    t.push([
      r.time.slice(0, 19).replace("T", " "),
      r.deviceId ?? "-",
      r.status,
      r.kind === "issuance" ? (r.serial ?? "") : (r.reason ?? ""),
      r.profile ?? "-",
      r.operator,
      r.origin,
    ]);
  }
  return table(t);
}

/**
 * The event log as CSV, one row per entry (details as JSON); a cell a spreadsheet would run as
 * a formula is prefixed with a quote, as in the audit log's CSV.
 */
export function eventsCsv(events: EventRecord[]): string {
  const cell = csvCell;
  const cols = [
    "seq",
    "ts",
    "actor",
    "action",
    "subject",
    "outcome",
    "code",
    "message",
    "details",
    "hash",
  ] as const;
  return (
    [cols.join(","), ...events.map((e) => cols.map((c) => cell(e[c])).join(","))].join("\n") + "\n"
  );
}
