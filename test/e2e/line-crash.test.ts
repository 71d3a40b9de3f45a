/**
 * Crash safety of the line: the station is killed with SIGKILL at random
 * moments of a four-port run, 12 times in the suite (`npm run soak:crash`:
 * 100; LINESIGN_CRASH_KILLS sets any count), and restarted each time while
 * the simulated devices keep going. Afterwards nothing a device stored is
 * missing from the database, no serial repeats, the log verifies, and every
 * device caught mid-flight is either confirmed or shown as unconfirmed.
 *
 * Then the faults a kill leaves room for, each found by the token's log
 * head: the WAL deleted after a kill, an older copy of the database put
 * back, and the head deleted from the token. Each is named by `audit verify`
 * and stops `line run` before it signs; putting the right files back binds
 * again; a head deleted from the token is accepted only by an officer's
 * recorded act.
 */
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";
import { destroyStationData } from "../helpers/softhsm.js";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import {
  exportChain,
  ptyPair,
  setLineConfig,
  startLine,
  startSim,
  type Proc,
  type PtyPair,
} from "../helpers/serial.js";
import { prng } from "../../fixtures/frame-fuzz.js";

const KILLS = Number(process.env.LINESIGN_CRASH_KILLS ?? 12);
const PORTS = 4;
const DB_FILES = ["station.db", "station.db-wal", "station.db-shm"];

/** Copies the database and its WAL files as they lie (the station is not running). */
function saveDb(st: TestStation, to: string): void {
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to);
  for (const f of DB_FILES)
    if (existsSync(join(st.home, f))) copyFileSync(join(st.home, f), join(to, f));
}

function putDb(st: TestStation, from: string): void {
  for (const f of DB_FILES) {
    rmSync(join(st.home, f), { force: true });
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(st.home, f));
  }
}

interface Verdict {
  ok: boolean;
  message: string;
  firstBad?: { binding?: { state: string; from?: number; to?: number } };
  losses?: { kind: string; what: string }[];
}
const verify = (st: TestStation) =>
  st.run(["audit", "verify", "--json"]).json as unknown as Verdict;

describe("line crash safety", () => {
  const pairs: PtyPair[] = [];
  const sims: Proc[] = [];
  afterAll(async () => {
    for (const s of sims) s.proc.kill("SIGKILL");
    await Promise.all(pairs.map((p) => p.kill()));
  });

  it(`loses nothing when the station is SIGKILLed ${KILLS} times mid-run`, async () => {
    const st = devStation();
    const chain = exportChain(st);
    setLineConfig(st, {
      timeouts: { retryMs: 300, retries: 3, helloMs: 250, csrMs: 10000, storedMs: 10000 },
    });
    const dir = mkdtempSync(join(tmpdir(), "linesign-crash-"));
    for (let i = 0; i < PORTS; i++) pairs.push(await ptyPair(dir, `p${i}`));
    const stores = pairs.map((_, i) => join(dir, `store-${i}`));
    for (const [i, p] of pairs.entries()) {
      sims.push(
        startSim([
          "--port",
          p.device,
          "--device-id",
          `crash-p${i}`,
          "--count",
          "100000",
          "--baud",
          "921600",
          "--retry-ms",
          "300",
          "--answer-ms",
          "20000",
          "--root",
          chain.chain,
          "--store",
          stores[i]!,
          "--key",
          i % 2 ? "ec-p256" : "ec-p384",
        ]),
      );
    }
    const rnd = prng(Number(process.env.LINESIGN_CRASH_SEED ?? 4242));
    const stations = pairs.map((p) => p.station);
    let progress = 0;
    for (let k = 0; k < KILLS; k++) {
      const line = startLine(st, stations);
      // A random moment: after the n-th step of any device, give or take a few milliseconds.
      const n = 1 + Math.floor(rnd() * 30);
      const steps = () =>
        line.lines.all.filter((e) => String(e.event).startsWith("device.")).length;
      await line.lines.waitFor(() => steps() >= n, `step ${n} of run ${k}`, 60_000);
      const jitter = Math.floor(rnd() * 25);
      if (jitter) await new Promise((r) => setTimeout(r, jitter));
      line.proc.kill("SIGKILL");
      const { signal } = await line.exited;
      expect(signal).toBe("SIGKILL");
      progress += line.lines.all.filter((e) => e.event === "device.confirmed").length;
      if (k === Math.floor(KILLS / 2)) saveDb(st, join(dir, "older"));
    }

    // The WAL deleted after a kill: the records of the last commits go with it, and the token's
    // head, moved before any of their certificates left, names them.
    {
      const line = startLine(st, stations);
      await line.lines.waitFor((e) => e.event === "device.confirmed", "a device before the kill");
      line.proc.kill("SIGKILL");
      await line.exited;
      saveDb(st, join(dir, "current"));
      expect(existsSync(join(st.home, "station.db-wal"))).toBe(true);
      rmSync(join(st.home, "station.db-wal"));
      rmSync(join(st.home, "station.db-shm"), { force: true });
      const v = verify(st);
      expect(v.ok, v.message).toBe(false);
      expect(v.firstBad?.binding?.state).toBe("gap");
      const { from, to } = v.firstBad!.binding!;
      expect(v.message).toContain(`entries ${from} to ${to} are missing`);
      // Nothing signs over the gap: the line refuses before it greets a device.
      const refused = startLine(st, stations);
      const end = await refused.exited;
      expect(end.code).not.toBe(0);
      expect(refused.lines.all.some((e) => e.event === "device.issued")).toBe(false);
      expect(JSON.stringify(refused.lines.all)).toContain("AUDIT_HEAD_MISMATCH");
      // The WAL put back: the log is whole and bound again.
      putDb(st, join(dir, "current"));
      expect(verify(st).ok).toBe(true);
    }
    // A last, orderly run: every port confirms a device, then Ctrl-C finishes what is in flight.
    const last = startLine(st, stations);
    for (const s of stations)
      await last.lines.waitFor(
        (e) => e.event === "device.confirmed" && e.port === s,
        `a device on ${s}`,
        60_000,
      );
    last.proc.kill("SIGINT");
    expect((await last.exited).code).toBeLessThanOrEqual(1);
    expect(last.lines.all.find((e) => e.event === "summary")).toBeDefined();
    for (const s of sims) s.proc.kill("SIGKILL");
    await Promise.all(sims.map((s) => s.exited));
    expect(progress).toBeGreaterThan(0);

    const db = new Database(join(st.home, "station.db"), { readonly: true });
    const rows = db
      .prepare("SELECT serial, device_id AS deviceId, fingerprint, state FROM issuances")
      .all() as { serial: string; deviceId: string; fingerprint: string; state: string }[];
    const dupSerials = db
      .prepare("SELECT serial FROM issuances GROUP BY serial HAVING COUNT(*) > 1")
      .all();
    const live = db
      .prepare(
        "SELECT device_id FROM issuances WHERE state NOT IN ('SUPERSEDED','REVOKED') GROUP BY device_id HAVING COUNT(*) > 1",
      )
      .all();
    db.close();
    expect(dupSerials).toEqual([]);
    expect(live).toEqual([]);
    const byFingerprint = new Map(rows.map((r) => [r.fingerprint, r]));

    // Every certificate a device stored is in the database, for that device.
    let stored = 0;
    for (const store of stores) {
      if (!existsSync(store)) continue;
      for (const f of readdirSync(store).filter((n) => n.endsWith(".der"))) {
        const der = readFileSync(join(store, f));
        const row = byFingerprint.get(createHash("sha256").update(der).digest("hex"));
        expect(row, `${f} is not in the database`).toBeDefined();
        expect(row!.deviceId).toBe(f.replace(/\.der$/, ""));
        // Stored means it left the station: confirmed, or shown as delivered but unconfirmed.
        expect(["CONFIRMED", "DELIVERED"]).toContain(row!.state);
        stored++;
      }
    }
    expect(stored).toBeGreaterThan(PORTS);

    // What each device reported as provisioned is confirmed at the station.
    for (const s of sims) {
      for (const r of s.lines.all.filter((e) => e.event === "device.done" && e.ok)) {
        expect(rows.find((x) => x.serial === r.serial)?.state).toBe("CONFIRMED");
      }
    }
    // Nothing is silently lost: every issuance not confirmed is listed for the officers.
    const open = rows.filter((r) => r.state !== "CONFIRMED" && r.state !== "SUPERSEDED");
    const listed = new Set<string>();
    for (const status of ["ISSUED", "DELIVERED", "DELIVERY_FAILED"]) {
      const r = st.run(["audit", "log", "--status", status, "--json"]);
      for (const row of r.json.rows as { serial: string }[]) listed.add(row.serial);
    }
    for (const r of open) expect(listed.has(r.serial), `${r.deviceId} ${r.state}`).toBe(true);

    // Devices caught mid-flight came back and were answered with the certificate already made.
    const redelivered = st.events().filter((e) => e.action === "issuance.redeliver").length;
    expect(redelivered).toBeGreaterThan(0);
    const whole = verify(st);
    expect(whole.ok, whole.message).toBe(true);

    // An older copy of the database put back: the token's head is past its end.
    saveDb(st, join(dir, "current"));
    putDb(st, join(dir, "older"));
    const older = verify(st);
    expect(older.ok).toBe(false);
    expect(older.firstBad?.binding?.state).toBe("gap");
    const late = st.file(
      "late.csr",
      csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "after-the-copy"]] })),
    );
    const issue = st.run(["issue", "--csr", late, "--json"]);
    expect(issue.code).not.toBe(0);
    expect(issue.stdout + issue.stderr).toContain("AUDIT_HEAD_MISMATCH");
    putDb(st, join(dir, "current"));
    expect(verify(st).ok).toBe(true);

    // The head deleted from the token: the log has certificates the token no longer vouches for.
    expect(destroyStationData(st.hsm, "246810")).toBeGreaterThan(0);
    const headless = verify(st);
    expect(headless.ok).toBe(false);
    expect(headless.firstBad?.binding?.state).toBe("missing");
    const accept = st.run(["audit", "accept-loss", "--reason", "token head deleted in a test"]);
    expect(accept.code, accept.stdout + accept.stderr).toBe(0);
    const accepted = verify(st);
    expect(accepted.ok, accepted.message).toBe(true);
    expect(accepted.losses?.map((l) => l.kind)).toEqual(["missing"]);
  }, 1_800_000);
});
