import { cpSync, mkdtempSync } from "node:fs";
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

/** Verifies a copy of the station home whose database `edit` changed through raw SQL. */
async function verifyTampered(edit: (db: Database.Database) => void) {
  const home = mkdtempSync(join(tmpdir(), "linesign-audit-"));
  cpSync(es.home, home, { recursive: true });
  const db = new Database(join(home, "station.db"));
  db.exec("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;");
  edit(db);
  db.close();
  const s = openStation({ home, env: process.env, officer: "test-officer" });
  opened.push(s);
  return s.audit.verify();
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
    const v = await verifyTampered((db) => {
      // Older stations wrote details with JSON.stringify in insertion order; the values hashed were the same.
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
    });
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
