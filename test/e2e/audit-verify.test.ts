import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";

let s: TestStation;

/** A copy of the station home, tampered with by `edit` through raw SQL (triggers dropped first). */
function tampered(edit: (db: Database.Database) => void): string {
  const home = mkdtempSync(join(tmpdir(), "linesign-tampered-"));
  cpSync(s.home, home, { recursive: true });
  const db = new Database(join(home, "station.db"));
  db.exec("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;");
  edit(db);
  db.close();
  return home;
}

beforeAll(() => {
  s = devStation();
  for (let i = 0; i < 3; i++) {
    s.run(["ca", "deactivate", "--label", "dev-ica"]);
    s.run(["ca", "activate", "--label", "dev-ica"]);
  }
  s.run(["ca", "activate", "--label", "missing"]); // a refusal in the log too
});

describe("linesign audit verify", () => {
  it("passes an intact log and records that it checked", () => {
    const n = s.events().length;
    const r = s.run(["audit", "verify", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ ok: true, checked: n });
    // The officer's command is its own signing session (it reads the audit key in the token).
    expect(
      s
        .events()
        .slice(n)
        .map((e) => `${e.action}:${e.outcome}`),
    ).toEqual(["signing.open:ok", "audit.verify:ok", "signing.close:ok"]);
  });

  it("names an edited entry", () => {
    const home = tampered((db) =>
      db.prepare("UPDATE events SET actor = 'intruder' WHERE seq = 9").run(),
    );
    const r = s.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 9 } });
    expect(r.json.message).toContain("entry 9 was changed");
    const text = s.run(["audit", "verify"], { LINESIGN_HOME: home });
    expect(text.code).toBe(1);
    expect(text.stdout).toContain("entry 9");
  });

  it("names the place of a deleted entry", () => {
    const home = tampered((db) => db.prepare("DELETE FROM events WHERE seq = 5").run());
    const r = s.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(r.code).toBe(1);
    expect(r.json.firstBad).toMatchObject({ kind: "sequence", seq: 6, expected: 5 });
  });

  it("catches a reordered pair, even with the sequence numbers swapped back", () => {
    const home = tampered((db) => {
      db.exec(
        "UPDATE events SET seq = -1 WHERE seq = 4; UPDATE events SET seq = 4 WHERE seq = 5; UPDATE events SET seq = 5 WHERE seq = -1;",
      );
    });
    const r = s.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(r.code).toBe(1);
    expect((r.json.firstBad as { seq: number }).seq).toBe(4);
  });

  it("catches an entry whose stored hash was replaced", () => {
    const home = tampered((db) => {
      db.prepare("UPDATE events SET hash = ? WHERE seq = 3").run("0".repeat(64));
    });
    const r = s.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(r.code).toBe(1);
    expect((r.json.firstBad as { seq: number }).seq).toBe(3);
  });

  it("fails when entries past the checkpoint interval have no signed checkpoint, and says why", () => {
    // A station of its own (copies of the shared one move the shared token's head past it).
    const own = devStation();
    const home = own.home;
    // Checkpoints every 2 entries; then the checkpoints vanish (as when none could be made).
    const raw = new Database(join(home, "station.db"));
    raw.prepare("DELETE FROM checkpoints").run();
    raw.close();
    const cfgPath = join(home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { audit?: Record<string, unknown> };
    cfg.audit = { ...cfg.audit, checkpointEvery: 2 };
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = own.run(["audit", "verify", "--json"]);
    expect(r.code, r.stdout).toBe(1);
    expect(r.json).toMatchObject({ ok: false, firstBad: { kind: "uncovered", seq: 1 } });
    expect(r.json.message).toContain("could not be fully verified");
    expect(r.json.message).toMatch(/entries 1 to \d+ are covered by no signed checkpoint/);
    const db = new Database(join(home, "station.db"), { readonly: true });
    const last = db
      .prepare("SELECT outcome, code FROM events WHERE action = 'audit.verify' ORDER BY seq DESC")
      .get();
    db.close();
    expect(last).toEqual({ outcome: "refused", code: "AUDIT_INCOMPLETE" });
  });

  it("fails when the token's head cannot be compared, unless told the token is not expected", () => {
    // The token is not there: its store is empty.
    const elsewhere = mkdtempSync(join(tmpdir(), "linesign-no-token-"));
    mkdirSync(join(elsewhere, "tokens"));
    writeFileSync(
      join(elsewhere, "softhsm2.conf"),
      `directories.tokendir = ${join(elsewhere, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`,
    );
    const env = { SOFTHSM2_CONF: join(elsewhere, "softhsm2.conf") };
    const r = s.run(["audit", "verify", "--json"], env);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ ok: false, firstBad: { kind: "token" } });
    expect(r.json.message).toContain("--without-token");
    const told = s.run(["audit", "verify", "--without-token", "--json"], env);
    expect(told.code, told.stdout + told.stderr).toBe(0);
    expect(told.json).toMatchObject({ ok: true, token: { checked: false } });
    expect(told.json.message).toContain("the token's log head was not compared");
  });
});
