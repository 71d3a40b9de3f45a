/**
 * Faults injected through the real files and the real token: no fault may
 * lose a record or hide a loss, and the station goes on when the fault goes.
 */
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";
import { stationRows } from "../../helpers/db-rows.js";

const require = createRequire(import.meta.url);
const csrFor = (id: string, key = deviceKey("ec-p256")) => makeCsr({ key, subject: [["CN", id]] });

async function refusal(p: Promise<unknown>): Promise<LinesignError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

const rows = <T>(es: EngineStation, sql: string): T[] => stationRows<T>(es.home, sql);

/** The token's object files (SoftHSM keeps one file per object). */
function tokenObjectFiles(es: EngineStation): string[] {
  const tokens = join(es.hsm.dir, "tokens");
  return readdirSync(tokens).flatMap((t) => [
    ...readdirSync(join(tokens, t))
      .filter((f) => f.endsWith(".object") && f !== "token.object")
      .map((f) => join(tokens, t, f)),
    // and the token's folder: no new object can be stored either
    join(tokens, t),
  ]);
}

const open: Station[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => undefined);
});
function station(es: EngineStation): Station {
  const s = es.open();
  open.push(s);
  return s;
}

describe("the token's log head binds the database", () => {
  it("refuses to sign or checkpoint over an older copy of the database, names the gap, and keeps it visible after an officer accepts it", async () => {
    const es = await engineStation();
    let s = station(es);
    await s.issuance.issue({ csr: csrFor("rb-1"), origin: "t" });
    await s.close();
    const old = mkdtempSync(join(tmpdir(), "linesign-old-"));
    cpSync(join(es.home, "station.db"), join(old, "station.db"));
    s = station(es);
    await s.issuance.issue({ csr: csrFor("rb-2"), origin: "t" });
    await s.issuance.issue({ csr: csrFor("rb-3"), origin: "t" });
    const tokenSeq = s.ctx.store.head()!.seq;
    await s.close();
    const oldSeq = rows<{ m: number }>(
      { ...es, home: old } as EngineStation,
      "SELECT max(seq) AS m FROM events",
    )[0]!.m;

    // The rollback: the older copy is put back.
    cpSync(join(old, "station.db"), join(es.home, "station.db"));
    s = station(es);
    const first = await s.audit.verify();
    expect(first.ok).toBe(false);
    expect(first.message).toMatch(/entries \d+ to \d+ are missing/);
    await s.close();
    // Verifying again still finds it: its closing checkpoint did not move the head back.
    s = station(es);
    const second = await s.audit.verify();
    expect(second.ok).toBe(false);
    // (Refusals recorded since may have grown the old log past the token's head: then it forks there.)
    const b = (second.firstBad as { binding: { state: string; tokenSeq: number } }).binding;
    expect(["gap", "fork"]).toContain(b.state);
    expect(b.tokenSeq).toBeGreaterThanOrEqual(tokenSeq);
    expect(tokenSeq).toBeGreaterThan(oldSeq);

    // Nothing signs: the same device cannot get a second certificate after the rollback.
    const refused = await refusal(s.issuance.issue({ csr: csrFor("rb-2"), origin: "t" }));
    expect(refused.code).toBe("AUDIT_HEAD_MISMATCH");
    expect(refused.message).toMatch(/are missing|forks at entry/);
    expect(await refusal(s.checkpointer.checkpoint())).toMatchObject({
      code: "AUDIT_HEAD_MISMATCH",
    });
    expect(await refusal(s.revocation.crl("dev-ica"))).toMatchObject({
      code: "AUDIT_HEAD_MISMATCH",
    });
    expect(s.ctx.store.queryIssuances({ deviceId: "rb-2" })).toEqual([]);

    // Only an officer's recorded act accepts the loss; the gap stays in every later verification.
    const loss = await s.checkpointer.acceptLoss(
      "older copy restored after disk failure, examined",
    );
    expect(loss.what).toMatch(/are missing|forks at entry/);
    await s.issuance.issue({ csr: csrFor("rb-4"), origin: "t" });
    await s.close();
    s = station(es);
    const after = await s.audit.verify();
    expect(after.ok).toBe(true);
    expect(after.losses).toHaveLength(1);
    expect(after.message).toContain("accepted");
    expect(after.message).toContain(loss.what);
    // With nothing to accept, the act is refused.
    expect(await refusal(s.checkpointer.acceptLoss("nothing to accept here"))).toMatchObject({
      code: "USAGE",
    });
  });

  it("names the missing range when the WAL is lost after a kill: every issued certificate was covered before it left", async () => {
    const es = await engineStation();
    let s = station(es);
    await s.issuance.issue({ csr: csrFor("wal-0"), origin: "t" });
    await s.close();
    // A child issues five certificates, prints each, and is killed without closing.
    const script = `
      import { openStation } from ${JSON.stringify(new URL("../../../dist/src/compose.js", import.meta.url).href)};
      import { readFileSync } from "node:fs";
      const s = openStation({ home: process.argv[2], officer: "test-officer" });
      for (const f of process.argv.slice(3)) {
        const r = await s.issuance.issue({ csr: new Uint8Array(readFileSync(f)), origin: "t" });
        process.stdout.write(r.issuance.serial + "\\n");
      }
      process.kill(process.pid, "SIGKILL");
    `;
    const files = [1, 2, 3, 4, 5].map((i) => {
      const f = join(es.hsm.dir, `wal-${i}.der`);
      writeFileSync(f, csrFor(`wal-${i}`));
      return f;
    });
    const child = join(es.hsm.dir, "issue-then-die.mjs");
    writeFileSync(child, script);
    const r = spawnSync(process.execPath, [child, es.home, ...files], {
      env: process.env,
      encoding: "utf8",
    });
    expect(r.signal, r.stderr).toBe("SIGKILL");
    const handedOut = r.stdout.trim().split("\n");
    expect(handedOut).toHaveLength(5);
    // The fault: the WAL is gone, and with it the five records.
    unlinkSync(join(es.home, "station.db-wal"));
    rmSync(join(es.home, "station.db-shm"), { force: true });
    s = station(es);
    expect(s.ctx.store.queryIssuances({}).map((i) => i.serial)).not.toContain(handedOut[0]);
    const v = await s.audit.verify();
    expect(v.ok).toBe(false);
    const b = (v.firstBad as { binding: { state: string; from: number; to: number } }).binding;
    expect(b.state).toBe("gap");
    expect(v.message).toContain(`entries ${b.from} to ${b.to} are missing`);
  });

  it("keeps one checkpoint per mark when 16 callers cross it at once", async () => {
    const es = await engineStation();
    const cfgPath = join(es.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { audit?: Record<string, unknown> };
    cfg.audit = { ...cfg.audit, checkpointEvery: 10 };
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const s = station(es);
    for (let round = 0; round < 4; round++)
      await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          s.issuance.issue({ csr: csrFor(`cp-${round}-${i}`), origin: "t" }),
        ),
      );
    const cps = s.ctx.store.checkpoints();
    expect(cps.length).toBeGreaterThan(2);
    // No two checkpoints within one interval of each other: one per mark.
    for (let i = 1; i < cps.length; i++)
      expect(cps[i]!.seq - cps[i - 1]!.seq).toBeGreaterThanOrEqual(10);
    expect(new Set(cps.map((c) => c.seq)).size).toBe(cps.length);
  });
});

describe("storage faults", () => {
  it("stops at once when the database is deleted under it, handing out nothing", async () => {
    const es = await engineStation();
    const s = station(es);
    await s.issuance.issue({ csr: csrFor("del-1"), origin: "t" });
    unlinkSync(join(es.home, "station.db"));
    const e = await refusal(s.issuance.issue({ csr: csrFor("del-2"), origin: "t" }));
    expect(e.code).toBe("DB_REPLACED");
    expect(e.message).toContain(join(es.home, "station.db"));
    expect(e.message).toContain("deleted");
    expect(s.ctx.health.current()?.code).toBe("DB_REPLACED");
  });

  it("refuses an empty or foreign station.db instead of migrating it into an empty log", async () => {
    const es = await engineStation();
    writeFileSync(join(es.home, "station.db"), "");
    rmSync(join(es.home, "station.db-wal"), { force: true });
    expect(() => es.open()).toThrow(/empty \(0 bytes\)/);
    writeFileSync(
      join(es.home, "station.db"),
      "this is not a database, it is a note\n".repeat(200),
    );
    let e: unknown;
    try {
      es.open();
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(LinesignError);
    expect((e as LinesignError).code).toBe("DB_NOT_A_STATION");
  });

  it("waits out another process's lock without blocking, says why, and commits when it goes", async () => {
    const es = await engineStation();
    const s = station(es);
    s.ctx.store.setLockWait(0);
    await s.issuance.issue({ csr: csrFor("lock-0"), origin: "t" });
    // A table of the other process's own, written under its lock.
    const pre = new Database(join(es.home, "station.db"));
    pre.exec("CREATE TABLE IF NOT EXISTS events_scratch (x)");
    pre.close();
    const holder = spawn(
      process.execPath,
      [
        "-e",
        `const D = require(${JSON.stringify(require.resolve("better-sqlite3"))});
         const db = new D(process.argv[1]); db.exec("BEGIN EXCLUSIVE"); db.exec("INSERT INTO events_scratch VALUES (1)");
         process.stdout.write("locked\\n");
         process.stdin.once("data", () => { db.exec("ROLLBACK"); db.close(); process.exit(0); });`,
        join(es.home, "station.db"),
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve) =>
      holder.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && resolve()),
    );
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const pending = s.issuance.issue({ csr: csrFor("lock-1"), origin: "t" });
    // The event loop runs while the commit waits: the station says why it waits.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (s.ctx.health.current()?.code === "DB_LOCKED") resolve();
        else setTimeout(check, 5);
      };
      check();
    });
    expect(ticks).toBeGreaterThan(0);
    expect(s.ctx.health.current()!.message).toContain("another process holds a lock");
    holder.stdin.write("go\n");
    const done = await pending;
    clearInterval(ticker);
    expect(done.issuance.deviceId).toBe("lock-1");
    expect(s.ctx.health.current()).toBeNull();
    expect(
      rows<{ state: string }>(es, "SELECT state FROM issuances WHERE device_id='lock-1'"),
    ).toEqual([{ state: "ISSUED" }]);
  });
});

describe("the head that cannot be written", () => {
  it("records an issuance ISSUED and withholds it, never both ISSUED and REJECTED; signs nothing more until the head moves; then hands the same certificate over", async () => {
    const es = await engineStation({
      once: { ca: "dev-ica", validityDays: 30, allowReissue: false },
    });
    const s = station(es);
    await s.issuance.issue({ csr: csrFor("head-0"), origin: "t", profile: "once" });
    // The token can no longer store anything: its object files are made immutable.
    const files = tokenObjectFiles(es);
    expect(spawnSync("chattr", ["+i", ...files]).status).toBe(0);
    try {
      const key = deviceKey("ec-p256");
      const csr = csrFor("head-1", key);
      // As the line asks: handed straight over, its delivery recorded in the issuance's commit.
      const e = await refusal(
        s.issuance.issue({ csr, origin: "t", profile: "once", handOver: () => true }),
      );
      expect(e.code).toBe("AUDIT_HEAD_WRITE_FAILED");
      expect(e.message).toMatch(/no certificate leaves/);
      const recorded = rows<{ id: number; state: string }>(
        es,
        "SELECT id, state FROM issuances WHERE device_id='head-1'",
      );
      expect(recorded.map((r) => r.state)).toEqual(["ISSUED"]);
      // It never left: the delivery recorded with it is taken back, in the log too.
      expect(
        [...s.ctx.store.events()]
          .filter((x) => (x.details as { issuance?: unknown }).issuance === recorded[0]!.id)
          .map((x) => [x.action, (x.details as { to?: string }).to ?? null]),
      ).toEqual([
        ["issuance.issue", null],
        ["issuance.deliver", "DELIVERED"],
        ["issuance.withhold", "ISSUED"],
      ]);
      expect(rows(es, "SELECT * FROM rejections WHERE device_id='head-1'")).toEqual([]);
      // The next device is not signed and left ISSUED: the station waits.
      expect(s.ctx.health.current()?.code).toBe("AUDIT_HEAD_WRITE_FAILED");
      const next = await refusal(
        s.issuance.issue({ csr: csrFor("head-2"), origin: "t", profile: "once" }),
      );
      expect(next.code).toBe("AUDIT_HEAD_WRITE_FAILED");
      expect(rows(es, "SELECT * FROM issuances WHERE device_id='head-2'")).toEqual([]);
      // The fault goes: the station resumes by itself, and the same request gets the same certificate.
      spawnSync("chattr", ["-i", ...files]);
      expect(await s.ctx.health.recheck()).toBeNull();
      const again = await s.issuance.issue({ csr, origin: "t", profile: "once" });
      expect(again.redelivery).toBe(true);
      expect(again.issuance.deviceId).toBe("head-1");
    } finally {
      spawnSync("chattr", ["-i", ...files]);
    }
    // The previous head was never destroyed: verification raises no false alarm.
    await s.close();
    const s2 = station(es);
    expect((await s2.audit.verify()).ok).toBe(true);
  });

  it("takes back a delivery recorded for a certificate redelivered while the head cannot move: it was never handed over", async () => {
    const es = await engineStation();
    const s = station(es);
    // Issued, its device gone before the hand-over: ISSUED. The same request comes back later.
    const first = await s.issuance.issue({
      csr: csrFor("head-late"),
      origin: "t",
      handOver: () => false,
    });
    const id = first.issuance.id;
    const files = tokenObjectFiles(es);
    expect(spawnSync("chattr", ["+i", ...files]).status).toBe(0);
    try {
      // As the line records the hand-over of a redelivered certificate before CERTIFICATE goes.
      const e = await refusal(s.issuance.markDelivered(id));
      expect(e.code).toBe("AUDIT_HEAD_WRITE_FAILED");
      expect(s.ctx.store.getIssuance(id)!.state).toBe("ISSUED");
      expect(
        [...s.ctx.store.events()]
          .filter(
            (x) =>
              (x.details as { issuance?: unknown }).issuance === id || x.subject === String(id),
          )
          .map((x) => [x.action, x.outcome, (x.details as { to?: string }).to ?? null]),
      ).toEqual([
        ["issuance.issue", "ok", null],
        ["issuance.deliver", "ok", "DELIVERED"],
        ["issuance.withhold", "ok", "ISSUED"],
        ["issuance.deliver", "failed", null],
      ]);
      // The station waits for the head, as after an issuance withheld.
      expect(s.ctx.health.current()?.code).toBe("AUDIT_HEAD_WRITE_FAILED");
    } finally {
      spawnSync("chattr", ["-i", ...files]);
    }
    expect(await s.ctx.health.recheck()).toBeNull();
    expect((await s.issuance.markDelivered(id)).state).toBe("DELIVERED");
    await s.close();
  });
});
