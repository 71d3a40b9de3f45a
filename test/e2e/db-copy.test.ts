/**
 * The second copy of the database (backup.copy in station.json), through the
 * CLI on a real SoftHSM token and real files: it follows the issuances, opens
 * as a whole database with the station's head, and its lag is in status; a
 * copy folder that cannot be written is loud (status, one log entry) but
 * never stops issuing, and the copy catches up when the folder is fixed.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { devStation, type TestStation } from "../helpers/station.js";

let s: TestStation;
let dir: string;
let copyPath: string;
let n = 0;

const issue = () => {
  const csr = s.file(
    `dev-${++n}.csr`,
    csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `dev-${n}`]] })),
  );
  return s.run(["issue", "--csr", csr, "--out", join(s.hsm.dir, `dev-${n}.pem`), "--json"]);
};

interface CopyView {
  path: string;
  lastCopyAt: string | null;
  copiedSeq: number | null;
  entriesBehind: number;
  secondsBehind: number;
  lastError: { path: string; cause: string; code: string; message: string } | null;
  failures: number;
  problem: string | null;
}
const copyStatus = (): CopyView => {
  const r = s.run(["status", "--json"]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.json.copy as CopyView;
};

/** The copy's last entry, read from the copy alone (no -wal beside it). */
const copyHead = () => {
  const db = new Database(copyPath, { readonly: true, fileMustExist: true });
  try {
    expect(db.pragma("quick_check", { simple: true })).toBe("ok");
    expect(db.pragma("journal_mode", { simple: true })).toBe("delete");
    return db.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").get() as {
      seq: number;
      hash: string;
    };
  } finally {
    db.close();
  }
};
const stationHead = () => {
  const last = s.events().at(-1)!;
  const db = new Database(join(s.home, "station.db"), { readonly: true });
  try {
    return db.prepare("SELECT seq, hash FROM events WHERE seq = ?").get(last.seq);
  } finally {
    db.close();
  }
};
const copyEvents = () => s.events().filter((e) => e.action === "backup.copy");

/** The folder made unwritable, as root too (an immutable folder takes no new file). */
const lock = (on: boolean) => {
  if (process.getuid?.() === 0) {
    const r = spawnSync("chattr", [on ? "+i" : "-i", dir], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
  } else chmodSync(dir, on ? 0o500 : 0o700);
};

beforeAll(() => {
  s = devStation();
  dir = mkdtempSync(join(tmpdir(), "linesign-copy-"));
  copyPath = join(dir, "station-copy.db");
  const configPath = join(s.home, "station.json");
  const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  config.backup = { copy: { path: copyPath, everySeconds: 1 } };
  writeFileSync(configPath, JSON.stringify(config, null, 2));
}, 120_000);

describe("the second copy of the database", () => {
  it("follows issuances as a whole database with the station's head, its lag in status", () => {
    expect(issue().code).toBe(0);
    expect(issue().code).toBe(0);
    expect(copyHead()).toEqual(stationHead());
    // Written whole: nothing but the copy in its folder.
    expect(readdirSync(dir)).toEqual(["station-copy.db"]);
    const c = copyStatus();
    expect(c).toMatchObject({
      path: copyPath,
      entriesBehind: 0,
      secondsBehind: 0,
      lastError: null,
      copiedSeq: copyHead().seq,
    });
    expect(Date.parse(c.lastCopyAt!)).toBeGreaterThan(Date.now() - 120_000);
    expect(s.run(["status"]).stdout).toContain(`Second copy of the database: ${copyPath}: current`);
    // A copy inside the home is refused when the station opens, naming the field.
    const configPath = join(s.home, "station.json");
    const good = readFileSync(configPath, "utf8");
    writeFileSync(configPath, good.replace(copyPath, join(s.home, "copy.db")));
    const inside = s.run(["status", "--json"]);
    expect(inside.json.error?.code).toBe("CONFIG_INVALID");
    expect(inside.json.error?.message).toContain("backup.copy.path");
    writeFileSync(configPath, good);
  }, 120_000);

  it("a copy folder that cannot be written is shown and recorded once, never stops issuing, and recovers", () => {
    const before = copyHead();
    lock(true);
    try {
      expect(issue().code).toBe(0);
      let c = copyStatus();
      expect(c.lastError).toMatchObject({ path: copyPath, code: "DB_COPY_FAILED" });
      expect(["EPERM", "EACCES"]).toContain(c.lastError!.cause);
      expect(c.lastError!.message).toContain(copyPath);
      expect(c.entriesBehind).toBeGreaterThan(0);
      expect(c.copiedSeq).toBe(before.seq);
      expect(s.run(["status"]).stdout).toContain("COPY FAILING since");
      // The copy in place is the last whole one.
      expect(copyHead()).toEqual(before);
      lock(false);
      // The folder gone now: still failing, named by its new cause, and not recorded again.
      renameSync(dir, `${dir}.away`);
      expect(issue().code).toBe(0);
      c = copyStatus();
      expect(c.lastError!.cause).toBe("ENOENT");
      expect(c.failures).toBeGreaterThanOrEqual(2);
      const failed = copyEvents();
      expect(failed.map((e) => [e.outcome, e.code])).toEqual([["failed", "DB_COPY_FAILED"]]);
      expect(JSON.parse(failed[0]!.details)).toMatchObject({ path: copyPath });
    } finally {
      if (existsSync(`${dir}.away`)) renameSync(`${dir}.away`, dir);
      lock(false);
    }
    // Fixed: the next command's copy catches up and says so once.
    expect(issue().code).toBe(0);
    const events = copyEvents();
    expect(events.map((e) => e.outcome)).toEqual(["failed", "ok"]);
    expect(JSON.parse(events[1]!.details)).toMatchObject({ recovered: true, path: copyPath });
    expect(copyHead()).toEqual(stationHead());
    const c = copyStatus();
    expect(c).toMatchObject({ entriesBehind: 0, lastError: null, failures: 0, problem: null });
  }, 180_000);

  it("a copy deleted, or an older one put back, is not reported current; the next copy writes it again", () => {
    expect(issue().code).toBe(0);
    const older = readFileSync(copyPath);
    expect(issue().code).toBe(0);
    const head = stationHead() as { seq: number; hash: string };
    expect(copyStatus()).toMatchObject({ entriesBehind: 0, copiedSeq: head.seq });
    // An older copy put back at the path: the state file alone would still say current.
    writeFileSync(copyPath, older);
    let c = copyStatus();
    expect(c.entriesBehind).toBe(head.seq);
    expect(c.copiedSeq).toBeNull();
    expect(c.problem).toContain(copyPath);
    expect(s.run(["status"]).stdout).toContain("COPY NOT THERE AS WRITTEN");
    // Deleted.
    rmSync(copyPath);
    c = copyStatus();
    expect(c.problem).toContain("is not there");
    expect(c.entriesBehind).toBe(head.seq);
    // The next command that records something writes the copy again, whole and current.
    expect(issue().code).toBe(0);
    expect(copyHead()).toEqual(stationHead());
    expect(copyStatus()).toMatchObject({ entriesBehind: 0, problem: null });
  }, 180_000);
});
