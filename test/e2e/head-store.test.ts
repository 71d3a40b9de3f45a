/**
 * The log head without a token data object (audit.headStore "signed-head"),
 * through the CLI on a real SoftHSM token: the head is signed by the audit key
 * and kept in a file outside the database, and still shows an older database
 * put back, a cut-off tail, a forged head and an older head file put back.
 */
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { destroyStationData } from "../helpers/softhsm.js";
import { emptyStation, type TestStation } from "../helpers/station.js";

let s: TestStation;
let n = 0;
const headFile = () => join(s.home, "log-head.json");

const issue = (env: Record<string, string | undefined> = {}) => {
  const csr = s.file(
    `hs-${++n}.csr`,
    csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `hs-${n}`]] })),
  );
  return s.run(["issue", "--csr", csr, "--out", join(s.hsm.dir, `hs-${n}.pem`), "--json"], env);
};

/** Puts `db` back as the station's database (its WAL and shared-memory files gone with it). */
const putBack = (home: string, db: string) => {
  rmSync(join(home, "station.db-wal"), { force: true });
  rmSync(join(home, "station.db-shm"), { force: true });
  copyFileSync(db, join(home, "station.db"));
};

/** A copy of the home, whole (the head file with it). */
const copyHome = () => {
  const home = mkdtempSync(join(tmpdir(), "linesign-headstore-"));
  cpSync(s.home, home, { recursive: true });
  return home;
};

beforeAll(() => {
  s = emptyStation();
  const r = s.run(["init", "--dev", "--head-store", "signed-head", "--json"]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}, 120_000);

describe("the signed log head (a token without data objects)", () => {
  it("is kept signed in a file outside the database, says so in status, and binds the database", () => {
    const st = s.run(["status", "--json"]);
    expect(st.code).toBe(0);
    expect(st.json.headStore).toMatchObject({ kind: "signed-head" });
    expect((st.json.headStore as { where: string }).where).toContain(headFile());
    expect(s.run(["status"]).stdout).toMatch(/Log head kept in: the file .*log-head\.json/);
    expect(issue().code).toBe(0);
    const head = JSON.parse(readFileSync(headFile(), "utf8")) as Record<string, unknown>;
    const last = s.events().at(-1)!;
    expect(head).toMatchObject({ format: "linesign-head/1", station: expect.any(String) });
    expect(head.seq as number).toBeGreaterThan(0);
    expect(head.seq as number).toBeLessThanOrEqual(last.seq);
    expect(head.signature).toMatch(/^[A-Za-z0-9+/]+=*$/);
    // The head does not live in a data object: removing every one changes nothing.
    destroyStationData(s.hsm, "246810");
    expect(issue().code).toBe(0);
    expect(s.run(["audit", "verify", "--json"]).code).toBe(0);
  }, 120_000);

  it("catches an older database put back, and a cut-off tail", () => {
    const old = join(s.hsm.dir, "older.db");
    const copy = new Database(join(s.home, "station.db"), { readonly: true });
    copy.exec(`VACUUM INTO '${old}'`);
    copy.close();
    expect(issue().code).toBe(0);
    const headSeq = (JSON.parse(readFileSync(headFile(), "utf8")) as { seq: number }).seq;

    // A cut-off tail, on a copy of the whole home (the head file with it), the checkpoints
    // past the cut gone too: only the head file still knows the log went further.
    const cut = copyHome();
    const db = new Database(join(cut, "station.db"));
    db.exec("DROP TRIGGER events_no_delete;");
    db.prepare("DELETE FROM events WHERE seq >= ?").run(headSeq - 1);
    db.prepare("DELETE FROM checkpoints WHERE seq >= ?").run(headSeq - 1);
    db.close();
    const v = s.run(["audit", "verify", "--json"], { LINESIGN_HOME: cut });
    expect(v.code, v.stdout).toBe(1);
    expect(v.json).toMatchObject({ ok: false, firstBad: { kind: "truncated" } });
    expect(v.json.message).toMatch(/are missing|is missing/);

    // The older database put back in the station's own home.
    const saved = join(s.hsm.dir, "newer.db");
    const cur = new Database(join(s.home, "station.db"), { readonly: true });
    cur.exec(`VACUUM INTO '${saved}'`);
    cur.close();
    putBack(s.home, old);
    const refused = issue();
    expect(refused.code).toBe(1);
    expect(refused.json.error!.code).toBe("AUDIT_HEAD_MISMATCH");
    expect(refused.json.error!.message).toMatch(/entr(y|ies) \d+( to \d+)? (is|are) missing/);
    const verify = s.run(["audit", "verify", "--json"]);
    expect(verify.code).toBe(1);
    expect(verify.json.firstBad).toMatchObject({ kind: "truncated" });
    putBack(s.home, saved);
    expect(issue().code).toBe(0);
  }, 180_000);

  it("refuses a head file not signed by the token's audit key, and an older head file put back", () => {
    const good = readFileSync(headFile(), "utf8");
    const forged = JSON.parse(good) as { seq: number };
    forged.seq += 5;
    writeFileSync(headFile(), JSON.stringify(forged));
    const r = issue();
    expect(r.json.error!.code).toBe("AUDIT_CHAIN_BROKEN");
    expect(r.json.error!.message).toContain("does not carry a valid signature");
    writeFileSync(headFile(), good);

    // The head file alone rolled back behind the database's signed checkpoints.
    const older = good;
    expect(s.run(["audit", "verify", "--json"]).code).toBe(0); // a closing checkpoint past it
    expect(issue().code).toBe(0);
    const current = readFileSync(headFile(), "utf8");
    writeFileSync(headFile(), older);
    const stale = s.run(["audit", "verify", "--json"]);
    expect(stale.code, stale.stdout).toBe(1);
    expect(stale.json.message).toContain("older head file was put back");
    writeFileSync(headFile(), current);
  }, 120_000);

  it("through backup and restore: the head on its own media binds a restore, refuses an older backup, and a lost head names the fix", () => {
    // The head on other media than the home, as hsm/README.md advises.
    const media = mkdtempSync(join(tmpdir(), "linesign-headmedia-"));
    const mediaHead = join(media, "log-head.json");
    copyFileSync(headFile(), mediaHead);
    const cfgPath = join(s.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { audit: Record<string, unknown> };
    cfg.audit.headFile = mediaHead;
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    rmSync(headFile());
    const b1 = join(s.hsm.dir, "hs-b1.linesign-backup");
    const b2 = join(s.hsm.dir, "hs-b2.linesign-backup");
    const first = s.run(["backup", "--out", b1, "--json"]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const covered1 = (first.json.head as { seq: number }).seq;
    expect(issue().code).toBe(0);
    const second = s.run(["backup", "--out", b2, "--json"]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const covered2 = (second.json.head as { seq: number }).seq;

    // The disk that held the home fails; the home is restored in its place. The head file survived on its media.
    rmSync(s.home, { recursive: true, force: true });
    const back = s.run(["restore", b2, "--json"]);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect((back.json.covered as { seq: number }).seq).toBe(covered2);
    expect(existsSync(headFile()), "the head stays on its own media").toBe(false);
    expect(issue().code).toBe(0);

    // An older backup restored over the newer head: refused, the missing entries named.
    const older = join(mkdtempSync(join(tmpdir(), "linesign-restored-")), "home");
    const o = s.run(["restore", b1, "--json"], { LINESIGN_HOME: older });
    expect(o.code).toBe(1);
    expect(o.json.error!.code, o.stdout).toBe("RESTORE_BEHIND_TOKEN");
    expect(o.json.error!.message).toMatch(/entries \d+ to \d+ are missing/);
    expect(
      (o.json.error as { details?: { missing?: { from: number } } }).details?.missing,
    ).toMatchObject({
      from: covered1 + 1,
    });
    expect(issue({ LINESIGN_HOME: older }).json.error!.code).toBe("AUDIT_HEAD_MISMATCH");

    // The head's media not at hand: the restore is refused, naming the file and the two ways on.
    const saved = readFileSync(mediaHead);
    rmSync(mediaHead);
    const lost = join(mkdtempSync(join(tmpdir(), "linesign-restored-")), "home");
    const l = s.run(["restore", b2, "--json"], { LINESIGN_HOME: lost });
    expect(l.code).toBe(1);
    expect(l.json.error!.code, l.stdout).toBe("RESTORE_HEAD_MISSING");
    expect(l.json.error!.message).toContain(mediaHead);
    expect(l.json.error!.message).toContain("put it back there");
    expect(l.json.error!.message).toContain("linesign audit accept-loss");
    expect(issue({ LINESIGN_HOME: lost }).json.error!.code).toBe("AUDIT_HEAD_MISMATCH");
    const accept = s.run(
      ["audit", "accept-loss", "--reason", "head file lost with the disk; restored b2", "--json"],
      { LINESIGN_HOME: lost },
    );
    expect(accept.code, accept.stdout).toBe(0);
    expect(issue({ LINESIGN_HOME: lost }).code).toBe(0);
    // The station's own head back on its media (the case above wrote the other home's there).
    writeFileSync(mediaHead, saved);
    expect(issue().code).toBe(0);
  }, 240_000);

  it("status carries the recorded probe; the probe's choice moves the head onto the token", () => {
    // SoftHSM keeps data objects: the recorded probe chooses the data object, and the head moves there.
    const r = s.run(["token", "probe", "--record", "--json"], { LINESIGN_USER_PIN: "246810" });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.recorded).toEqual({ headStore: "data-object", changed: true });
    const cfg = JSON.parse(readFileSync(join(s.home, "station.json"), "utf8")) as {
      audit: { headStore: string };
    };
    expect(cfg.audit.headStore).toBe("data-object");
    const st = s.run(["status", "--json"]);
    expect(st.code).toBe(0);
    expect(st.json.headStore).toMatchObject({ kind: "data-object" });
    const facts = st.json.tokenFacts as {
      now: { keyTypes: { keyType: string; signWith: string | null }[]; pin: object };
      recorded: { dataObjects: { kept: boolean }; template: { accepted: string }; seq: number };
    };
    expect(facts.now.keyTypes).toContainEqual({
      keyType: "ec-p256",
      signWith: "CKM_ECDSA",
      reason: null,
    });
    expect(facts.now.pin).toMatchObject({
      userLocked: false,
      soLocked: false,
      userFinalTry: false,
    });
    expect(facts.recorded).toMatchObject({
      dataObjects: { kept: true },
      template: { keyType: expect.any(String), accepted: "strict" },
      headStore: "data-object",
    });
    const text = s.run(["status"]).stdout;
    expect(text).toMatch(/Token probe recorded .*data objects kept; template strict/);
    expect(text).toMatch(/Token PINs: user ok; SO ok/);
    // The head is on the token now: removing the token's data objects is caught.
    expect(issue().code).toBe(0);
    expect(destroyStationData(s.hsm, "246810")).toBeGreaterThan(0);
    expect(issue().json.error!.code).toBe("AUDIT_HEAD_MISMATCH");
  }, 120_000);
});
