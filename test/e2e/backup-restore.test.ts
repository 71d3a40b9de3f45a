/**
 * Backup and restore through the CLI, on real SoftHSM tokens and real files:
 * a restore onto a fresh home with the same token is whole and goes on
 * issuing; a restore whose token is ahead is refused naming the missing
 * entries, until an officer accepts the loss.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { linesign } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";

let s: TestStation;
let n = 0;

const issue = (env: NodeJS.ProcessEnv = s.env) => {
  const csr = s.file(
    `dev-${++n}.csr`,
    csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `dev-${n}`]] })),
  );
  return linesign(["issue", "--csr", csr, "--out", join(s.hsm.dir, `dev-${n}.pem`), "--json"], env);
};

const rows = (home: string, sql: string) => {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return db.prepare(sql).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
};

const freshHome = () => join(mkdtempSync(join(tmpdir(), "linesign-restored-")), "home");

beforeAll(() => {
  s = devStation();
  expect(issue().code).toBe(0);
  expect(issue().code).toBe(0);
}, 120_000);

describe("linesign backup and restore", () => {
  it("refuses an altered backup before anything is written", () => {
    const file = join(s.hsm.dir, "b3.linesign-backup");
    expect(s.run(["backup", "--out", file]).code).toBe(0);
    const bytes = readFileSync(file);
    // Flip one byte inside station.db's content (after the manifest's entry).
    const at = bytes.indexOf(Buffer.from("SQLite format 3"));
    bytes[at + 4096] = (bytes[at + 4096]! + 1) & 0xff;
    const bad = join(s.hsm.dir, "b3-bad.linesign-backup");
    writeFileSync(bad, bytes);
    const home = freshHome();
    const r = linesign(["restore", bad, "--home", home, "--json"], s.env);
    expect(r.json.error!.code).toBe("BACKUP_INVALID");
    expect(r.json.error!.message).toContain('"station.db" does not match its manifest');
    expect(existsSync(home)).toBe(false);
  }, 120_000);

  it("restores onto a fresh home with the same token: whole, recorded, and issuing goes on", () => {
    const file = join(s.hsm.dir, "b1.linesign-backup");
    const b = s.run(["backup", "--out", file, "--json"]);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const head = b.json.head as { seq: number; hash: string };
    // The backup covers the log up to its own snapshot entry.
    const snap = s.events().findLast((e) => e.action === "backup.snapshot")!;
    expect(head.seq).toBe(snap.seq);

    // The disk fails: a new home on another folder, the same token.
    const home = freshHome();
    const r = linesign(["restore", file, "--home", home, "--json"], {
      ...s.env,
      LINESIGN_HOME: undefined,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.covered).toEqual(head);
    const env = { ...s.env, LINESIGN_HOME: home };
    const restored = rows(home, "SELECT seq, action, outcome, details FROM events ORDER BY seq");
    const entry = restored.find((e) => e.action === "station.restore")!;
    expect(entry.outcome).toBe("ok");
    expect(JSON.parse(entry.details as string)).toMatchObject({ covered: head });
    // Nothing of the staging is left; the restored log verifies and the station issues.
    expect(readdirSync(home).filter((f) => f.startsWith(".restore-"))).toEqual([]);
    const verify = linesign(["audit", "verify", "--json"], env);
    expect(verify.code, verify.stdout).toBe(0);
    expect(issue(env).code).toBe(0);
    // A second restore into a home that holds a station is refused, changing nothing.
    const again = linesign(["restore", file, "--home", home, "--json"], env);
    expect(again.json.error!.code).toBe("RESTORE_TARGET_EXISTS");
    // A backup inside the home is refused: it would be lost with it.
    const inside = linesign(["backup", "--out", join(home, "x.backup"), "--json"], env);
    expect(inside.json.error!.code).toBe("USAGE");
    expect(existsSync(join(home, "x.backup"))).toBe(false);
  }, 180_000);

  it("refuses a restore whose token is ahead, naming the missing entries, until the loss is accepted", () => {
    // The restore above bound the token to its own home: this station starts afresh.
    s = devStation();
    expect(issue().code).toBe(0);
    const file = join(s.hsm.dir, "b2.linesign-backup");
    const b = s.run(["backup", "--out", file, "--json"]);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const covered = (b.json.head as { seq: number }).seq;
    // The station goes on after the backup: the token's head moves past it.
    expect(issue().code).toBe(0);
    const tokenSeq = s.events().at(-1)!.seq;
    expect(tokenSeq).toBeGreaterThan(covered);

    const home = freshHome();
    const env = { ...s.env, LINESIGN_HOME: home };
    const r = linesign(["restore", file, "--json"], env);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("RESTORE_BEHIND_TOKEN");
    expect(r.json.error!.message).toContain(`entries ${covered + 1} to ${tokenSeq} are missing`);
    expect((r.json.error as { details?: unknown }).details).toMatchObject({
      missing: { from: covered + 1, to: tokenSeq },
      tokenSeq,
    });
    // The restored station is there for the officer, and signs nothing.
    const refused = rows(home, "SELECT outcome, code FROM events WHERE action = 'station.restore'");
    expect(refused).toEqual([{ outcome: "refused", code: "RESTORE_BEHIND_TOKEN" }]);
    expect(issue(env).json.error!.code).toBe("AUDIT_HEAD_MISMATCH");
    const accept = linesign(
      ["audit", "accept-loss", "--reason", "restored backup b2 after the disk failed", "--json"],
      env,
    );
    expect(accept.code, accept.stdout).toBe(0);
    expect(issue(env).code).toBe(0);
  }, 180_000);
});
