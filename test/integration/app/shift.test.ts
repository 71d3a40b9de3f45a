/**
 * A shift's figures computed from a known log in a real SQLite file: devices
 * confirmed per hour, first-pass yield (a device that failed once then
 * passed), failures by reason per hour (a summary of repeated refusals
 * counted with its repeats), per port, and work orders' progress; the
 * window's bounds.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import Database from "better-sqlite3";
import { LINE_SESSIONS, SqliteStationStore } from "../../../src/adapters/db/station-store.js";
import { sessionEntry, type Session } from "../../../src/app/line/line-session.js";
import { RefusalLog } from "../../../src/app/refusal-log.js";
import { buildShift } from "../../../src/app/shift.js";
import type { AppContext } from "../../../src/app/context.js";
import type { ErrorCode } from "../../../src/domain/errors.js";
import type { IssuanceState } from "../../../src/domain/ports.js";

let now = new Date("2026-12-02T05:00:00.000Z");
const clock = { now: () => now };
const dbFile = join(mkdtempSync(join(tmpdir(), "linesign-shift-")), "s.db");
const store = SqliteStationStore.open(dbFile, {
  create: true,
  hash: nodeChainHash,
  clock,
});
const silent = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };
const ctx = { store, clock, logger: silent } as unknown as AppContext;
const refusals = new RefusalLog(ctx, { timer: false, now: () => now.getTime() });

const session = (deviceId: string | null, serial: string | null = null): Session => ({
  id: 1,
  deviceId,
  startedAt: Date.now(),
  keyType: "ec-p256",
  issuanceId: serial ? 1 : null,
  serial,
  wireBytes: 900,
  badFrames: 0,
  resends: 0,
});
/** One exchange on a port at `at`, written as the line writes it. */
function exchange(
  at: string,
  port: string,
  deviceId: string | null,
  code: ErrorCode | null,
  serial: string | null = null,
) {
  now = new Date(at);
  const outcome = code === null ? "ok" : code === "CONFIRMATION_MISMATCH" ? "failed" : "refused";
  const entry = sessionEntry(
    "op-anna",
    port,
    "wo-1",
    session(deviceId, serial),
    outcome,
    code,
    code ? `${code} happened` : null,
    { stage: "signing" },
  );
  // Refused with no certificate: through the refusal log, as the line does.
  if (outcome !== "ok" && !serial)
    refusals.record({ source: port, reason: `${code}:signing`, entry });
  else store.appendEvent(entry);
}

let nextIssuance = 0;
function issuance(deviceId: string, state: IssuanceState, workOrder: string) {
  const n = ++nextIssuance;
  store.insertIssuance({
    serial: `0${n}`,
    deviceId,
    spkiSha256: `spki-${n}`,
    keyType: "ec-p256",
    profile: "default",
    caLabel: "ica",
    certDer: new Uint8Array([n]),
    fingerprint: `fp-${n}`,
    notBefore: "2026-12-01T00:00:00.000Z",
    notAfter: "2027-12-01T00:00:00.000Z",
    validityCut: false,
    state,
    stateReason: null,
    supersedes: null,
    operator: "op-anna",
    station: "st-1",
    origin: "serial:/dev/ttyS1",
    workOrder,
    csrSha256: `csr-${n}`,
    createdAt: "2026-12-02T05:00:00.000Z",
    updatedAt: "2026-12-02T05:00:00.000Z",
  });
}

describe("a shift's figures from the log", () => {
  store.insertCa({
    label: "ica",
    kind: "intermediate",
    status: "active",
    keyType: "ec-p256",
    keyUri: "pkcs11:object=ica",
    development: true,
    subject: "CN=ica",
    certDer: null,
    chainDer: [],
    parentLabel: null,
    notBefore: null,
    notAfter: null,
    fingerprint: null,
    createdAt: "2026-12-01T00:00:00.000Z",
  } as Parameters<typeof store.insertCa>[0]);
  const wo = (id: string, status: "open" | "closed", quantity: number, createdAt: string) =>
    store.insertWorkOrder({
      id,
      profile: "default",
      quantity,
      pattern: null,
      devices: null,
      notBefore: null,
      notAfter: null,
      status,
      createdBy: "officer",
      createdAt,
    });
  wo("wo-1", "open", 10, "2026-12-01T01:00:00.000Z");
  wo("wo-2", "closed", 5, "2026-12-01T02:00:00.000Z");
  wo("wo-3", "open", 7, "2026-12-01T03:00:00.000Z");
  for (const [d, state] of [
    ["dev-old", "CONFIRMED"],
    ["dev-a", "CONFIRMED"],
    ["dev-b", "DELIVERY_FAILED"],
    ["dev-b", "CONFIRMED"],
    ["dev-d", "CONFIRMED"],
    ["dev-x", "ISSUED"],
  ] as const)
    issuance(d, state, "wo-1");

  exchange("2026-12-02T05:50:00.000Z", "/dev/p1", "dev-old", null); // before the window
  exchange("2026-12-02T06:10:00.000Z", "/dev/p1", "dev-a", null);
  exchange("2026-12-02T06:20:00.000Z", "/dev/p1", "dev-b", "CONFIRMATION_MISMATCH", "0aa");
  exchange("2026-12-02T06:40:00.000Z", "/dev/p2", "dev-b", null); // re-tried on another port: passed
  // Three refusals within one interval: one entry at once, one summary of the two repeats.
  exchange("2026-12-02T07:05:00.000Z", "/dev/p2", "dev-c", "CSR_SIGNATURE_INVALID");
  exchange("2026-12-02T07:05:10.000Z", "/dev/p2", "dev-c", "CSR_SIGNATURE_INVALID");
  exchange("2026-12-02T07:05:20.000Z", "/dev/p2", "dev-c", "CSR_SIGNATURE_INVALID");
  refusals.flush();
  exchange("2026-12-02T07:30:00.000Z", "/dev/p1", null, "SERIAL_TIMEOUT"); // never named itself
  refusals.flush();
  exchange("2026-12-02T08:15:00.000Z", "/dev/p1", "dev-d", null);
  exchange("2026-12-02T09:00:00.000Z", "/dev/p1", "dev-e", null); // the window's end is not in it
  store.appendEvent({
    actor: "x",
    action: "line.start",
    subject: null,
    outcome: "ok",
    details: { port: "/dev/p1" },
  });

  it("counts per hour, first-pass yield, failures by reason, per port, and work-order progress", () => {
    // The log holds the repeats as one summary entry.
    expect(
      store.queryEvents({ action: "line.session" }).filter((e) => e.details.repeated === 2),
    ).toHaveLength(1);
    const f = buildShift(ctx, { from: "2026-12-02T06:00:00Z", to: "2026-12-02T09:00:00Z" });
    expect(f.hours).toEqual([
      "2026-12-02T06:00:00.000Z",
      "2026-12-02T07:00:00.000Z",
      "2026-12-02T08:00:00.000Z",
    ]);
    expect(f.confirmed).toEqual([2, 0, 1]);
    expect(f.failed).toEqual([1, 4, 0]);
    expect(f.totals).toEqual({ confirmed: 3, failed: 5 });
    // dev-a and dev-d at the first try; dev-b failed then passed; dev-c never; the unnamed one is no device.
    expect(f.firstPass).toEqual({ tried: 4, firstPass: 2, passed: 3, yield: 0.5 });
    expect(f.reasons).toEqual([
      { code: "CSR_SIGNATURE_INVALID", total: 3, perHour: [0, 3, 0] },
      { code: "CONFIRMATION_MISMATCH", total: 1, perHour: [1, 0, 0] },
      { code: "SERIAL_TIMEOUT", total: 1, perHour: [0, 1, 0] },
    ]);
    expect(f.ports).toEqual([
      {
        port: "/dev/p1",
        confirmed: 2,
        failed: 2,
        reasons: { CONFIRMATION_MISMATCH: 1, SERIAL_TIMEOUT: 1 },
        tried: 3,
        firstPass: 2,
        passed: 3,
        yield: 2 / 3,
      },
      {
        port: "/dev/p2",
        confirmed: 1,
        failed: 3,
        reasons: { CSR_SIGNATURE_INVALID: 3 },
        tried: 1,
        firstPass: 0,
        passed: 0,
        yield: 0,
      },
    ]);
    // Open work orders and those the line ran; issued and confirmed devices ever, confirmed in the window.
    expect(f.workOrders).toEqual([
      { id: "wo-1", status: "open", quantity: 10, issued: 5, confirmed: 4, shiftConfirmed: 3 },
      { id: "wo-3", status: "open", quantity: 7, issued: 0, confirmed: 0, shiftConfirmed: 0 },
    ]);
  });

  it("covers the last 12 hours by default, clock hours the window touches, zeros included", () => {
    now = new Date("2026-12-02T10:30:00.000Z");
    const f = buildShift(ctx);
    expect([f.from, f.to]).toEqual(["2026-12-01T22:30:00.000Z", "2026-12-02T10:30:00.000Z"]);
    expect(f.hours).toHaveLength(13);
    expect(f.hours[0]).toBe("2026-12-01T22:00:00.000Z");
    expect(f.confirmed).toEqual([0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 1, 1, 0]);
    const two = buildShift(ctx, { hours: 2, to: "2026-12-02T08:00:00Z" });
    expect(two.totals).toEqual({ confirmed: 2, failed: 5 });
  });

  it("refuses a window that is not a time, backwards, both a start and hours, or longer than a week", () => {
    const code = (input: Parameters<typeof buildShift>[1]) => {
      try {
        buildShift(ctx, input);
        return "answered";
      } catch (e) {
        return `${(e as { code: string }).code}: ${(e as Error).message}`;
      }
    };
    expect(code({ from: "yesterday" })).toMatch(
      /^USAGE: The shift's start "yesterday" is not a time/,
    );
    expect(code({ from: "2026-12-02T09:00:00Z", to: "2026-12-02T08:00:00Z" })).toMatch(
      /start must be before its end/,
    );
    expect(code({ from: "2026-12-01T00:00:00Z", hours: 3 })).toMatch(/not both/);
    expect(code({ hours: 0 })).toMatch(/from 1 to 168/);
    expect(code({ hours: 2.5 })).toMatch(/from 1 to 168/);
    expect(code({ from: "2026-11-01T00:00:00Z", to: "2026-12-02T00:00:00Z" })).toMatch(
      /at most 168 hours/,
    );
    expect(code({ from: "2026-11-25T00:00:00Z", to: "2026-12-02T00:00:00Z" })).toBe("answered");
  });

  it("finds the window's entries by an index, not by reading the whole log", () => {
    const db = new Database(dbFile, { readonly: true });
    try {
      const plan = (
        db
          .prepare(`EXPLAIN QUERY PLAN ${LINE_SESSIONS} SELECT count(*) FROM s`)
          .all({ from: "2026-12-02T00:00:00.000Z", to: "2026-12-02T05:00:00.000Z" }) as {
          detail: string;
        }[]
      ).map((r) => r.detail);
      expect(plan.join("\n")).toMatch(/SEARCH events USING (COVERING )?INDEX events_action_ts/);
      expect(plan.join("\n")).not.toMatch(/SCAN events/);
    } finally {
      db.close();
    }
  });
});
