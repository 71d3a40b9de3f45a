import { cpSync, mkdtempSync } from "node:fs";
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
});
