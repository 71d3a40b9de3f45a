import { closeSync, cpSync, mkdtempSync, openSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStation, type Station } from "../../../src/compose.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";

// A log long enough that the walk reads it in several pages, with checkpoints in each.
const EVENTS = 10_000;
let es: EngineStation;
let total = 0;

beforeAll(async () => {
  es = await engineStation();
  const s = es.open();
  await s.openToken();
  for (let b = 0; b < EVENTS; b += 1000) {
    s.ctx.store.transaction(() => {
      for (let i = b; i < b + 1000; i++)
        s.ctx.store.appendEvent({
          actor: "operator-1",
          action: "issuance.issue",
          subject: `device-${i}`,
          outcome: "ok",
          details: { issuance: i, serial: i.toString(16), origin: `serial:/dev/ttyUSB${i % 16}` },
        });
    });
    if (b % 3000 === 0) await s.checkpointer.checkpoint();
  }
  await s.close();
  const db = new Database(join(es.home, "station.db"), { readonly: true });
  total = (db.prepare("SELECT count(*) AS n FROM events").get() as { n: number }).n;
  db.close();
}, 180_000);

const opened: Station[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});

/** Opens a copy of the station home whose database `edit` changed through raw SQL. */
function tamperedStation(edit: (db: Database.Database) => void, file?: (path: string) => void) {
  const home = mkdtempSync(join(tmpdir(), "linesign-audit-"));
  cpSync(es.home, home, { recursive: true });
  const db = new Database(join(home, "station.db"));
  db.exec("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;");
  edit(db);
  db.close();
  file?.(join(home, "station.db"));
  const s = openStation({ home, env: process.env, officer: "test-officer" });
  opened.push(s);
  return s;
}

/** Verifies a copy of the station home whose database `edit` changed through raw SQL. */
async function verifyTampered(edit: (db: Database.Database) => void) {
  return tamperedStation(edit).audit.verify();
}

/**
 * Rewrites every entry's details as older stations stored them: JSON.stringify in insertion order
 * (here reversed, or indented), not canonical; the values hashed are the same.
 */
function storeDetailsAsOlderStations(db: Database.Database): void {
  const rows = db.prepare("SELECT seq, details FROM events").all() as {
    seq: number;
    details: string;
  }[];
  const set = db.prepare("UPDATE events SET details = ? WHERE seq = ?");
  db.transaction(() => {
    for (const r of rows) {
      const d = JSON.parse(r.details) as Record<string, unknown>;
      const reversed = Object.fromEntries(Object.entries(d).reverse());
      set.run(r.seq % 2 ? JSON.stringify(reversed) : JSON.stringify(d, null, 1), r.seq);
    }
  })();
}

describe("audit verify over a long log", () => {
  it("passes the intact log, every entry and checkpoint", async () => {
    const v = await verifyTampered(() => {});
    expect(v).toMatchObject({ ok: true, checked: total, firstBad: null });
    expect(v.checkpoints.count).toBeGreaterThanOrEqual(4);
    expect(v.checkpoints.verified).toBe(v.checkpoints.count);
    expect(v.token.checked).toBe(true);
  });

  it("names an entry changed in a later page", async () => {
    const v = await verifyTampered((db) =>
      db.prepare("UPDATE events SET subject = 'forged' WHERE seq = 6000").run(),
    );
    expect(v).toMatchObject({ ok: false, checked: 5999, firstBad: { kind: "hash", seq: 6000 } });
  });

  it("names an entry whose details are no longer JSON, instead of failing", async () => {
    const v = await verifyTampered((db) =>
      db.prepare("UPDATE events SET details = 'not json {' WHERE seq = 4500").run(),
    );
    expect(v).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 4500 } });
    expect(v.message).toContain("entry 4500 was changed");
  });

  it("names the entry where a page boundary falls on a deleted entry", async () => {
    const v = await verifyTampered((db) => db.prepare("DELETE FROM events WHERE seq = 4097").run());
    expect(v.firstBad).toEqual({ kind: "sequence", seq: 4098, expected: 4097 });
  });

  it("still passes a log whose details were stored in another form (older stations)", async () => {
    const v = await verifyTampered(storeDetailsAsOlderStations);
    expect(v).toMatchObject({ ok: true, checked: total });
  });

  it("names a checkpoint whose signature was changed", async () => {
    const v = await verifyTampered((db) => {
      const cp = db
        .prepare("SELECT id, signature FROM checkpoints ORDER BY id LIMIT 1 OFFSET 2")
        .get() as {
        id: number;
        signature: Buffer;
      };
      cp.signature[10] ^= 1;
      db.prepare("UPDATE checkpoints SET signature = ? WHERE id = ?").run(cp.signature, cp.id);
    });
    expect(v.ok).toBe(false);
    expect(v.firstBad).toMatchObject({ kind: "checkpoint" });
    expect(v.message).toMatch(/the signature of checkpoint \d+ \(entry \d+\) does not verify/);
    expect(v.checkpoints.verified).toBe(2);
  });

  it("names a checkpoint that signed another entry than the log holds", async () => {
    const v = await verifyTampered((db) =>
      db
        .prepare("UPDATE checkpoints SET hash = ? WHERE id = (SELECT min(id) + 1 FROM checkpoints)")
        .run("ab".repeat(32)),
    );
    expect(v.ok).toBe(false);
    expect(v.message).toMatch(/entry \d+ differs from what checkpoint \d+ signed/);
  });
});

describe("audit verify over a long log on two threads", () => {
  // Just above the threshold, so the log is walked in two ranges of positions (= sequences here).
  const threaded = () => ({ parallelFrom: total - 100, threads: 2 });
  /** The first entry of the second range. */
  const join2 = () => Math.floor(total / 2) + 1;

  /** The verdict on two threads, checked against the walk in one thread over the same log. */
  async function bothWays(edit: (db: Database.Database) => void) {
    const s = tamperedStation(edit);
    const one = await s.audit.verify({ parallelFrom: Infinity });
    const two = await s.audit.verify(threaded());
    expect(one.threads).toBe(1);
    expect(two.threads).toBe(2);
    expect(two.ok).toBe(false);
    expect({ ...two, threads: 1 }).toEqual(one);
    return two;
  }

  const changed = (seq: () => number) => (db: Database.Database) =>
    db.prepare("UPDATE events SET subject = 'forged' WHERE seq = ?").run(seq());
  const deleted = (seq: () => number) => (db: Database.Database) =>
    db.prepare("DELETE FROM events WHERE seq = ?").run(seq());
  const relinked = (seq: () => number) => (db: Database.Database) =>
    db.prepare("UPDATE events SET prev_hash = ? WHERE seq = ?").run("ab".repeat(32), seq());

  it("passes the intact log as the walk in one thread does", async () => {
    const s = tamperedStation(() => {});
    const one = await s.audit.verify({ parallelFrom: Infinity });
    const head = s.ctx.store.head()!; // the first verify recorded itself
    const two = await s.audit.verify(threaded());
    expect(two).toMatchObject({ ok: true, threads: 2, firstBad: null, checked: head.seq });
    expect(one).toMatchObject({ ok: true, threads: 1, checked: total });
    expect(two.checkpoints).toEqual(one.checkpoints);
    expect(two.checkpoints.verified).toBeGreaterThanOrEqual(4);
  });

  for (const [where, seq] of [
    ["in the first range", () => 2000],
    ["in the second range", () => 8000],
    ["at the join", join2],
  ] as const) {
    it(`names a changed entry ${where}`, async () => {
      const v = await bothWays(changed(seq));
      expect(v).toMatchObject({ checked: seq() - 1, firstBad: { kind: "hash", seq: seq() } });
      expect(v.message).toContain(`entry ${seq()} was changed after it was written`);
    });

    it(`names a deleted entry ${where}`, async () => {
      const v = await bothWays(deleted(seq));
      expect(v).toMatchObject({
        checked: seq() - 1,
        firstBad: { kind: "sequence", seq: seq() + 1, expected: seq() },
      });
      expect(v.message).toContain(`entry ${seq() + 1} stands where entry ${seq()} should`);
    });

    it(`names a changed prevHash ${where}`, async () => {
      const v = await bothWays(relinked(seq));
      expect(v).toMatchObject({ checked: seq() - 1, firstBad: { kind: "link", seq: seq() } });
      expect(v.message).toContain(`entry ${seq()} does not link to the entry before it`);
    });
  }

  it("names the last entry of the first range deleted (the second range starts one late)", async () => {
    const last = () => join2() - 1;
    const v = await bothWays(deleted(last));
    expect(v.firstBad).toEqual({ kind: "sequence", seq: join2(), expected: last() });
  });

  it("passes details stored in another form in both ranges, and names a change among them", async () => {
    const older = storeDetailsAsOlderStations;
    const s = tamperedStation(older);
    const v = await s.audit.verify(threaded());
    expect(v).toMatchObject({ ok: true, threads: 2, checked: total });
    const bad = await bothWays((db) => {
      older(db);
      changed(() => 7000)(db);
    });
    expect(bad.firstBad).toEqual({ kind: "hash", seq: 7000 });
  });

  it("fails with the store's error, not a hang, when a thread cannot read its range", async () => {
    let page = 0;
    let size = 0;
    const s = tamperedStation(
      (db) => {
        size = db.pragma("page_size", { simple: true }) as number;
        // A leaf of the log's table in the second range.
        const leaves = db
          .prepare(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY path",
          )
          .pluck()
          .all() as number[];
        page = leaves[Math.floor((leaves.length * 3) / 4)]!;
        db.pragma("wal_checkpoint(TRUNCATE)");
      },
      (path) => {
        const fd = openSync(path, "r+");
        writeSync(fd, Buffer.alloc(size, 0xa5), 0, size, (page - 1) * size);
        closeSync(fd);
      },
    );
    await expect(s.audit.verify({ parallelFrom: Infinity })).rejects.toMatchObject({
      code: "DB_CORRUPT",
    });
    await expect(s.audit.verify(threaded())).rejects.toMatchObject({ code: "DB_CORRUPT" });
  });
});
