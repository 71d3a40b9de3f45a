import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, linesign, openssl } from "../helpers/cli.js";
import { devStation, makeOpensslRoot, type TestStation } from "../helpers/station.js";

let s: TestStation;
const WRONG_PIN = "wrong-987654";

function lastEvent(action: string) {
  const e = s.events().filter((x) => x.action === action);
  return e[e.length - 1];
}

/** `ca create` of a throwaway self-signed CA, with --json. */
const createArgs = (label: string): string[] => [
  "ca",
  "create",
  "--label",
  label,
  "--key",
  "ec-p256",
  "--subject",
  "CN=x",
  "--self-signed",
  "--json",
];

function caCount(): number {
  return (s.run(["ca", "list", "--json"]).json.cas as unknown[]).length;
}

/** Every file the station wrote, as text, for secret searches. */
function everythingWritten(): string {
  const logs = readdirSync(join(s.home, "logs")).map((f) =>
    readFileSync(join(s.home, "logs", f), "utf8"),
  );
  const db = new Database(join(s.home, "station.db"), { readonly: true });
  const rows =
    JSON.stringify(db.prepare("SELECT * FROM events").all()) +
    JSON.stringify(db.prepare("SELECT * FROM cas").all());
  db.close();
  return logs.join("\n") + rows + readFileSync(join(s.home, "station.json"), "utf8");
}

beforeAll(() => {
  s = devStation();
});

describe("refusals: clear message, exit 1, a log entry, nothing changed", () => {
  it("a wrong PIN, then a locked PIN, then an officer's unlock; the PIN never appears anywhere", () => {
    const before = caCount();
    for (let i = 1; i <= 5; i++) {
      const r = s.run(createArgs(`x${i}`), { LINESIGN_USER_PIN: WRONG_PIN });
      expect(r.code).toBe(1);
      expect(r.json.error!.code).toBe("HSM_PIN_INCORRECT");
      expect(r.json.error!.message).toContain("LINESIGN_USER_PIN");
      expect(r.stdout + r.stderr).not.toContain(WRONG_PIN);
    }
    expect(lastEvent("ca.create")).toMatchObject({ outcome: "refused", code: "HSM_PIN_INCORRECT" });
    expect(lastEvent("token.pin-locked")).toMatchObject({
      outcome: "refused",
      subject: "linesign-dev",
    });
    // Locked: even the right PIN is not presented to the token any more.
    const locked = s.run(createArgs("x6"));
    expect(locked.code).toBe(1);
    expect(locked.json.error!.code).toBe("HSM_PIN_LOCKED");
    expect(locked.json.error!.message).toContain("linesign token unlock");
    expect(caCount()).toBe(before);

    const badSo = s.run(["token", "unlock", "--json"], { LINESIGN_SO_PIN: "not-the-so-pin" });
    expect(badSo.code).toBe(1);
    expect(badSo.json.error!.code).toBe("HSM_PIN_INCORRECT");
    expect(lastEvent("token.unlock")).toMatchObject({ outcome: "refused" });
    const ok = s.run(["token", "unlock"], { LINESIGN_SO_PIN: "13572468" });
    expect(ok.code, ok.stderr).toBe(0);
    expect(
      s.run([
        "ca",
        "create",
        "--label",
        "after-unlock",
        "--key",
        "ec-p256",
        "--subject",
        "CN=after",
        "--self-signed",
      ]).code,
    ).toBe(0);

    const written = everythingWritten();
    expect(written).not.toContain(WRONG_PIN);
    expect(written).not.toContain("not-the-so-pin");
    expect(written).not.toContain("13572468");
  });

  it("a module path that is missing, or not a PKCS#11 library", () => {
    const missing = s.run(createArgs("m1"), {
      LINESIGN_PKCS11_MODULE: "/opt/nowhere/libvendor.so",
    });
    expect(missing.code).toBe(1);
    expect(missing.json.error!.code).toBe("HSM_MODULE_NOT_FOUND");
    expect(missing.json.error!.message).toContain("/opt/nowhere/libvendor.so");
    expect(lastEvent("ca.create")).toMatchObject({
      outcome: "failed",
      code: "HSM_MODULE_NOT_FOUND",
    });
    const notLib = s.file("fake.so", "not a library");
    const invalid = s.run(["status", "--json"], { LINESIGN_PKCS11_MODULE: notLib });
    expect(invalid.code).toBe(1);
    expect(invalid.json.error!.code).toBe("HSM_MODULE_INVALID");
    expect(invalid.json.error!.message).toContain("is not a PKCS#11 library");
  });

  it("init with a module that cannot be loaded writes no home at all", () => {
    const home = join(mkdtempSync(join(tmpdir(), "linesign-init-")), "station");
    const env = cleanEnv({ LINESIGN_HOME: home, SOFTHSM2_CONF: s.hsm.conf });
    for (const [module, code] of [
      ["/opt/nowhere/libvendor.so", "HSM_MODULE_NOT_FOUND"],
      [s.file("not-a-module.so", "not a library"), "HSM_MODULE_INVALID"],
    ] as const) {
      const r = linesign(["--json", "init", "--module", module, "--token-label", "line-7"], env);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.json.error!.code).toBe(code);
      expect(r.json.error!.message).toContain(module);
      expect(existsSync(home), "a half-made home").toBe(false);
    }
  });

  it("a token label that is not present lists the labels that are", () => {
    const r = s.run(createArgs("t1"), { LINESIGN_TOKEN_LABEL: "line-7-hsm" });
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("HSM_TOKEN_NOT_FOUND");
    expect(r.json.error!.message).toContain('"line-7-hsm"');
    expect(r.json.error!.message).toContain('Tokens present: "linesign-dev"');
    expect(lastEvent("ca.create")).toMatchObject({ code: "HSM_TOKEN_NOT_FOUND" });
  });

  it("a CA label that exists is refused and its key is never overwritten", () => {
    const before = s.run(["ca", "export", "--label", "dev-ica"]).stdout;
    const r = s.run([
      "ca",
      "create",
      "--label",
      "dev-ica",
      "--key",
      "ec-p256",
      "--subject",
      "CN=again",
      "--self-signed",
      "--json",
    ]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("CA_LABEL_EXISTS");
    expect(s.run(["ca", "export", "--label", "dev-ica"]).stdout).toBe(before);
    // The token still signs as dev-ica with the original key.
    const v = s.file(
      "v.pem",
      s.run([
        "ca",
        "verification-cert",
        "--label",
        "dev-ica",
        "--registration-code",
        "ab".repeat(32),
      ]).stdout,
    );
    expect(
      openssl(["verify", "-partial_chain", "-CAfile", s.file("ica.pem", before), v]).out,
    ).toContain(": OK");
  });

  it("an unknown label names the CAs that exist", () => {
    const r = s.run(["ca", "activate", "--label", "no-such-ca", "--json"]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("CA_UNKNOWN");
    expect(r.json.error!.message).toContain("dev-ica");
    expect(lastEvent("ca.activate")).toMatchObject({
      outcome: "refused",
      code: "CA_UNKNOWN",
      subject: "no-such-ca",
    });
  });

  it("a malformed registration code", () => {
    const r = s.run([
      "ca",
      "verification-cert",
      "--label",
      "dev-ica",
      "--registration-code",
      "XXXXXSAMPLEREGISTRATIONCODEXXXXX",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("64 hexadecimal characters");
    expect(r.stderr).toContain("REGISTRATION_CODE_INVALID");
    expect(r.stdout).toBe("");
    expect(lastEvent("ca.verification-cert")).toMatchObject({
      outcome: "refused",
      code: "REGISTRATION_CODE_INVALID",
    });
  });

  it("imported certificates that do not fit: wrong key, not a CA, chain that does not verify", () => {
    const csr = join(s.hsm.dir, "p.csr");
    expect(
      s.run([
        "ca",
        "create",
        "--label",
        "pend",
        "--key",
        "ec-p256",
        "--subject",
        "CN=Pend",
        "--csr-out",
        csr,
      ]).code,
    ).toBe(0);
    const root = makeOpensslRoot(s, "good-root");
    const otherRoot = makeOpensslRoot(s, "good-root-twin"); // another key, same kind of root
    const caExt = s.file(
      "ca.ext",
      "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n",
    );
    const leafExt = s.file("leaf.ext", "basicConstraints=critical,CA:FALSE\n");
    const sign = (inCsr: string, ext: string, out: string, r = root) =>
      expect(
        openssl([
          "x509",
          "-req",
          "-in",
          inCsr,
          "-CA",
          r.cert,
          "-CAkey",
          r.key,
          "-CAcreateserial",
          "-days",
          "30",
          "-sha256",
          "-extfile",
          ext,
          "-out",
          out,
        ]).code,
      ).toBe(0);

    // A certificate for some other key.
    const otherKey = join(s.hsm.dir, "other.key");
    const otherCsr = join(s.hsm.dir, "other.csr");
    openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      otherKey,
      "-out",
      otherCsr,
      "-subj",
      "/CN=Pend",
    ]);
    const wrongKey = join(s.hsm.dir, "wrong-key.pem");
    sign(otherCsr, caExt, wrongKey);
    const notCa = join(s.hsm.dir, "not-ca.pem");
    sign(csr, leafExt, notCa);
    const good = join(s.hsm.dir, "good.pem");
    sign(csr, caExt, good);

    const cases: [string, string[], string][] = [
      ["CA_CERT_KEY_MISMATCH", ["--cert", wrongKey, "--chain", root.cert], "not the key of CA"],
      ["CA_CERT_NOT_CA", ["--cert", notCa, "--chain", root.cert], "CA:TRUE"],
      ["CA_CHAIN_INVALID", ["--cert", good, "--chain", otherRoot.cert], "issued by"],
      ["CA_CHAIN_INVALID", ["--cert", good], "does not know"],
      [
        "CA_CERT_UNREADABLE",
        [
          "--cert",
          s.file("junk.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"),
        ],
        "not a readable",
      ],
    ];
    for (const [code, args, words] of cases) {
      const r = s.run(["ca", "import", "--label", "pend", ...args, "--json"]);
      expect(r.code, code).toBe(1);
      expect(r.json.error!.code).toBe(code);
      expect(r.json.error!.message).toContain(words);
      expect(lastEvent("ca.import")).toMatchObject({ outcome: "refused", code });
      const pend = (
        s.run(["ca", "list", "--json"]).json.cas as { label: string; status: string }[]
      ).find((c) => c.label === "pend");
      expect(pend!.status).toBe("pending");
    }
    // A chain whose signature is forged: the twin root re-labelled with good-root's name.
    const forged = makeOpensslRoot(s, "good-root");
    void forged; // same subject as `root`, different key
    const forgedRun = s.run([
      "ca",
      "import",
      "--label",
      "pend",
      "--cert",
      good,
      "--chain",
      forged.cert,
      "--json",
    ]);
    expect(forgedRun.json.error!.code).toBe("CA_CHAIN_INVALID");
    expect(forgedRun.json.error!.message).toContain("does not verify");
  });

  it("usage errors exit 2", () => {
    expect(
      s.run(["ca", "create", "--label", "u", "--key", "ec-p256", "--subject", "CN=u"]).code,
    ).toBe(2);
    expect(
      s.run([
        "ca",
        "create",
        "--label",
        "u",
        "--key",
        "rsa-1024",
        "--subject",
        "CN=u",
        "--self-signed",
      ]).code,
    ).toBe(2);
    expect(s.run(["no-such-command"]).code).toBe(2);
    const r = s.run([
      "ca",
      "create",
      "--label",
      "u",
      "--key",
      "ec-p256",
      "--subject",
      "not a dn",
      "--self-signed",
      "--json",
    ]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("SUBJECT_INVALID");
  });

  it("a home that is not a station, and a database from a newer version", () => {
    const nowhere = s.run(["status", "--json"], { LINESIGN_HOME: join(s.hsm.dir, "empty-home") });
    expect(nowhere.code).toBe(1);
    expect(nowhere.json.error!.code).toBe("HOME_NOT_INITIALISED");
    expect(nowhere.json.error!.message).toContain("linesign init");

    const db = new Database(join(s.home, "station.db"));
    const version = db.pragma("user_version", { simple: true }) as number;
    db.pragma(`user_version = ${version + 1}`);
    db.close();
    const r = s.run(["ca", "list", "--json"]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("DB_NEWER_VERSION");
    expect(r.json.error!.message).toContain("Upgrade Linesign");
    const back = new Database(join(s.home, "station.db"));
    back.pragma(`user_version = ${version}`);
    back.close();
    expect(s.run(["ca", "list"]).code).toBe(0);
  });

  it("a production station with no PIN in the environment and no terminal asks for LINESIGN_USER_PIN", () => {
    const home = join(s.hsm.dir, "prod-home");
    const officer = { LINESIGN_USER: "alice", LINESIGN_PASSPHRASE: "correct horse battery" };
    const init = s.run(["init", "--token-label", "linesign-dev", "--station-id", "line-1"], {
      LINESIGN_HOME: home,
      ...officer,
    });
    expect(init.code, init.stderr).toBe(0);
    const r = s.run(
      [
        "ca",
        "create",
        "--label",
        "p1",
        "--key",
        "ec-p256",
        "--subject",
        "CN=p",
        "--self-signed",
        "--json",
      ],
      { LINESIGN_HOME: home, ...officer },
    );
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("HSM_PIN_REQUIRED");
    expect(r.json.error!.message).toContain("LINESIGN_USER_PIN");
  });
});
