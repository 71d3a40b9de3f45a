/**
 * Separation of duties: an auditor without the token's user PIN compares the
 * log head through the CLI, on a production station (no development PIN) on
 * a real SoftHSM token. The station writes a public copy of the head (a
 * public data object, signed by the audit key) with every signed command; the
 * auditor reads it in a session that never logs in, checks its signature
 * against the audit key the log trusts, and finds an older database put back
 * and a forged copy. `station-cert` shows the auditor the recorded
 * certificate with its root; making one stays an officer's.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { openssl } from "../helpers/cli.js";
import { SOFTHSM_MODULE, type TempHsm } from "../helpers/softhsm.js";
import { emptyStation, type TestStation } from "../helpers/station.js";

const USER_PIN = "31415926";
const SO_PIN = "27182818";
const TOKEN = "station-token";
const OFFICER = {
  LINESIGN_USER: "officer-1",
  LINESIGN_PASSPHRASE: "officer-one-passphrase",
  LINESIGN_USER_PIN: USER_PIN,
};
/** The auditor's environment: a name and passphrase, and no user PIN. */
const AUDITOR = { LINESIGN_USER: "auditor-1", LINESIGN_PASSPHRASE: "auditor-one-passphrase" };

let s: TestStation;
let n = 0;

const ok = (args: string[], env: Record<string, string>) => {
  const r = s.run([...args, "--json"], env);
  expect(r.code, `${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
  return r;
};
const issue = () => {
  const csr = s.file(
    `ah-${++n}.csr`,
    csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `ah-${n}`]] })),
  );
  return ok(
    ["issue", "--csr", csr, "--profile", "line", "--out", join(s.hsm.dir, `ah-${n}.pem`)],
    OFFICER,
  );
};
const auditorVerify = () => s.run(["audit", "verify", "--json"], AUDITOR);

/**
 * Rewrites the value of every public data object of the station (the public
 * head's slots) in a child process, the way anyone holding the token could:
 * `edit` gets the stored text and returns the new one.
 */
function rewritePublicHead(hsm: TempHsm, edit: string): string[] {
  const script = `
    const pkcs11js = require("pkcs11js");
    const lib = new pkcs11js.PKCS11();
    lib.load(${JSON.stringify(SOFTHSM_MODULE)});
    lib.C_Initialize();
    const edit = ${edit};
    const seen = [];
    for (const slot of lib.C_GetSlotList(true)) {
      if (!(lib.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED)) continue;
      // A read-write public session: no login, no PIN.
      const s = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      lib.C_FindObjectsInit(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: "linesign" },
        { type: pkcs11js.CKA_PRIVATE, value: false },
      ]);
      const found = lib.C_FindObjects(s, 64);
      lib.C_FindObjectsFinal(s);
      for (const h of found) {
        const [label] = lib.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }]);
        const text = label.value.toString("utf8");
        seen.push(text);
        if (text) lib.C_SetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL, value: edit(text) }]);
      }
      lib.C_CloseSession(s);
    }
    lib.C_Finalize();
    process.stdout.write(JSON.stringify(seen));
  `;
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: { PATH: process.env.PATH, SOFTHSM2_CONF: hsm.conf },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`rewriting the public head failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

/** A consistent copy of the station's database file. */
function snapshot(name: string): string {
  const out = join(s.hsm.dir, name);
  const db = new Database(join(s.home, "station.db"), { readonly: true });
  db.exec(`VACUUM INTO '${out}'`);
  db.close();
  return out;
}
/** Puts `db` back as the station's database (its WAL and shared-memory files gone with it). */
function putBack(db: string): void {
  rmSync(join(s.home, "station.db-wal"), { force: true });
  rmSync(join(s.home, "station.db-shm"), { force: true });
  copyFileSync(db, join(s.home, "station.db"));
}

beforeAll(() => {
  s = emptyStation();
  ok(
    ["init", "--module", SOFTHSM_MODULE, "--token-label", TOKEN, "--station-id", "auditor-line"],
    OFFICER,
  );
  ok(["token", "init", "--label", TOKEN], { ...OFFICER, LINESIGN_SO_PIN: SO_PIN });
  ok(["user", "add", "--name", "auditor-1", "--role", "auditor"], {
    ...OFFICER,
    LINESIGN_NEW_PASSPHRASE: AUDITOR.LINESIGN_PASSPHRASE,
  });
  ok(
    [
      "ca",
      "create",
      "--label",
      "root",
      "--key",
      "ec-p256",
      "--subject",
      "CN=Auditor Root",
      "--self-signed",
    ],
    OFFICER,
  );
  ok(
    [
      "ca",
      "create",
      "--label",
      "ica",
      "--key",
      "ec-p256",
      "--subject",
      "CN=Auditor ICA",
      "--root",
      "root",
    ],
    OFFICER,
  );
  ok(["profile", "create", "--name", "line", "--ca", "ica"], OFFICER);
  issue();
}, 240_000);

describe("an auditor without the user PIN", () => {
  it("compares the token's public head: bound, read without login, with its entry and age", () => {
    const v = auditorVerify();
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const token = v.json.token as {
      checked: boolean;
      source: string;
      headSeq: number;
      public: { seq: number; ts: string; tsSigned: boolean; ageSeconds: number; where: string };
    };
    expect(token).toMatchObject({ checked: true, source: "public-object" });
    expect(token.public.where).toContain("linesign-log-head-public");
    expect(token.public.tsSigned).toBe(true);
    expect(token.public.ageSeconds).toBeGreaterThanOrEqual(0);
    // The public copy is the head the officer's command left: its last entry.
    const officerLast = s
      .events()
      .filter((e) => e.actor === "officer-1")
      .at(-1)!;
    expect(token.public.seq).toBe(officerLast.seq);
    expect(v.json.message).toContain("read without the user PIN");
    expect(v.json.message).toMatch(/entry \d+, written \d{4}-\d\d-\d\dT/);
    // The auditor's run presented no PIN: no login was counted, no checkpoint was made.
    const mine = s.events().filter((e) => e.actor === "auditor-1");
    expect(mine.map((e) => e.action)).toContain("audit.verify");
    expect(mine.some((e) => e.action === "audit.checkpoint" || e.code === "HSM_PIN_REQUIRED")).toBe(
      false,
    );
    // Text output says where the head was read.
    const text = s.run(["audit", "verify"], AUDITOR);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("public data object");
  });

  it("finds an older database put back (entries missing), and the station's own database again", () => {
    const older = snapshot("older.db");
    issue();
    issue();
    const current = snapshot("current.db");
    putBack(older);
    const v = auditorVerify();
    expect(v.code, v.stdout).toBe(1);
    expect(v.json.ok).toBe(false);
    expect(v.json.firstBad).toMatchObject({ kind: "truncated", binding: { state: "gap" } });
    expect(v.json.message).toMatch(/entr(y|ies) \d+( to \d+)? (is|are) missing/);
    expect(v.json.message).toContain("read without the user PIN");
    putBack(current);
    expect(auditorVerify().code).toBe(0);
  });

  it("refuses a public head whose signature is not the audit key's, and one that is gone", () => {
    // Anyone with the token can rewrite a public object: a later entry, the old signature.
    const seen = rewritePublicHead(
      s.hsm,
      `(t) => { const h = JSON.parse(t); h.seq += 1000; return JSON.stringify(h); }`,
    );
    expect(seen.filter(Boolean).length).toBeGreaterThan(0);
    const forged = auditorVerify();
    expect(forged.code, forged.stdout).toBe(1);
    expect(forged.json.firstBad).toMatchObject({ kind: "public-head" });
    expect(forged.json.message).toContain("not genuine");
    expect(forged.json.message).toContain("does not carry a valid signature");
    // The verdict is recorded as a broken chain, never INTERNAL.
    expect(s.events().findLast((e) => e.action === "audit.verify")).toMatchObject({
      actor: "auditor-1",
      code: "AUDIT_CHAIN_BROKEN",
    });

    // Emptied (as good as removed): the head cannot be compared, said as such.
    rewritePublicHead(s.hsm, `() => ""`);
    const gone = auditorVerify();
    expect(gone.code, gone.stdout).toBe(1);
    expect(gone.json.firstBad).toMatchObject({ kind: "token" });
    expect(gone.json.message).toContain("could not be fully verified");
    expect(gone.json.message).toContain("linesign-log-head-public");

    // The officer's next signed command writes it again.
    issue();
    expect(auditorVerify().code).toBe(0);

    // A genuine but older copy put back (older than the log's last signed checkpoint): it proves
    // nothing either way, so the log could not be fully checked; it is not called tampered with.
    const older = rewritePublicHead(s.hsm, `(t) => t`);
    issue();
    rewritePublicHead(
      s.hsm,
      `(() => { const old = ${JSON.stringify(older)}; let i = 0; return () => old[i++]; })()`,
    );
    const stale = auditorVerify();
    expect(stale.code, stale.stdout).toBe(1);
    expect(stale.json.firstBad).toMatchObject({ kind: "token" });
    expect(stale.json.message).toContain("could not be fully verified");
    expect(stale.json.message).toContain("older than the database's signed checkpoint");
    expect(stale.json.message).not.toContain("tampered");
    issue();
    expect(auditorVerify().code).toBe(0);
  });

  it("station-cert: the auditor reads the recorded certificate with its root; the ceremony stays an officer's", () => {
    const none = s.run(["station-cert", "--json"], AUDITOR);
    expect(none.code).toBe(1);
    expect(none.json.error).toMatchObject({ code: "CA_NO_CERTIFICATE" });
    expect(none.json.error!.message).toContain("linesign station-cert --root");

    const made = ok(["station-cert", "--root", "root"], OFFICER);
    const keysBefore = s.events().filter((e) => e.action === "audit.key-create").length;
    const shown = ok(["station-cert"], AUDITOR);
    expect(shown.json).toMatchObject({ root: "root", pem: made.json.pem });
    const chain = shown.json.chain as string[];
    expect(chain).toHaveLength(1);
    const stationPem = s.file("station.pem", shown.json.pem as string);
    const rootPem = s.file("root.pem", chain[0]!);
    expect(openssl(["verify", "-CAfile", rootPem, stationPem]).out).toContain(": OK");
    // Text output: the station certificate, then the root's.
    const text = s.run(["station-cert"], AUDITOR);
    expect(text.code).toBe(0);
    expect(text.stdout.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(text.stdout.startsWith(made.json.pem as string)).toBe(true);

    // Making one is refused for the auditor, naming the role; nothing is made or signed.
    const ceremony = s.run(["station-cert", "--root", "root", "--json"], AUDITOR);
    expect(ceremony.code).toBe(1);
    expect(ceremony.json.error).toMatchObject({ code: "ROLE_FORBIDDEN" });
    expect(ceremony.json.error!.message).toContain("needs the officer role");
    expect(s.events().filter((e) => e.action === "audit.key-create").length).toBe(keysBefore);
    expect(s.events().filter((e) => e.action === "station.cert").length).toBe(1);
  });

  it("on a signed-head station reads the head file, checked against the log's audit key", () => {
    // The station told to keep its head in a signed file (as for a token without data objects);
    // the officer binds the new store by recording that it starts empty.
    const cfgPath = join(s.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { audit: Record<string, unknown> };
    cfg.audit.headStore = "signed-head";
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    ok(["audit", "accept-loss", "--reason", "head kept in a signed file from now on"], OFFICER);
    issue();
    const v = auditorVerify();
    expect(v.code, v.stdout).toBe(0);
    expect(v.json.token).toMatchObject({ checked: true, source: "head-file" });
    expect(v.json.message).toContain("log-head.json");
    expect(v.json.message).toContain("by the file's own account");
    // A head file edited by hand carries no valid signature of the log's audit key.
    const headFile = join(s.home, "log-head.json");
    const good = readFileSync(headFile, "utf8");
    const forged = JSON.parse(good) as { seq: number };
    forged.seq += 1000;
    writeFileSync(headFile, JSON.stringify(forged));
    const bad = auditorVerify();
    expect(bad.code, bad.stdout).toBe(1);
    expect(bad.json.firstBad).toMatchObject({ kind: "public-head" });
    expect(bad.json.message).toContain("the audit key this station's log trusts");
    writeFileSync(headFile, good);
  });
});
