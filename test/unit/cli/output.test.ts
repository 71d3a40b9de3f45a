/**
 * What the CLI prints from the log: text from outsiders (a device id, a receipt's file name)
 * must be shown to the person at the terminal, never acted on by it, and a CSV cell must never
 * be run as a formula by the spreadsheet that opens it.
 */
import { describe, expect, it } from "vitest";
import { eventsCsv, formatAuditTable } from "../../../src/cli/output.js";
import type { AuditLogRow } from "../../../src/app/audit.js";
import type { EventRecord } from "../../../src/domain/event-log.js";

const HOSTILE = "x\u001b[2J\u001b[31mFAKE ENTRY\nline2\u202eevil\u0085";

function row(deviceId: string): AuditLogRow {
  return {
    time: "2026-12-02T01:00:00.000Z",
    kind: "rejection",
    deviceId,
    status: "REJECTED",
    serial: null,
    keyType: null,
    reason: "DEVICE_ID_INVALID",
    message: null,
    profile: "default",
    ca: null,
    operator: "op",
    origin: "s1",
    workOrder: null,
    fingerprint: null,
  };
}

function event(subject: string): EventRecord {
  return {
    seq: 1,
    ts: "2026-12-02T01:00:00.000Z",
    actor: "officer-1",
    action: "bundle.receipt",
    subject,
    outcome: "refused",
    code: "EXPORT_FILE_REFUSED",
    message: "-2+3",
    details: {},
    prevHash: "0".repeat(64),
    hash: "1".repeat(64),
  };
}

describe("the CLI's renderings of the log", () => {
  it("show control characters and bidirectional overrides in a table as escapes", () => {
    const text = formatAuditTable([row(HOSTILE)]);
    // eslint-disable-next-line no-control-regex -- no control character may be left
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
    expect(text.split("\n")).toHaveLength(2);
    expect(text).toContain("x\\u{1b}[2J\\u{1b}[31mFAKE ENTRY\\u{a}line2\\u{202e}evil\\u{85}");
  });

  it("quote every event cell a spreadsheet would run as a formula", () => {
    const csv = eventsCsv([event('=HYPERLINK("http://x")')]);
    const cells = csv.split("\n")[1]!;
    expect(cells).toContain(`"'=HYPERLINK(""http://x"")"`);
    expect(cells).toContain(",'-2+3,");
  });
});
