/**
 * The token contract: what the station needs of any PKCS#11 token, run
 * against each implementation (contract-*.test.ts), in process through the
 * adapter and end to end through the CLI's production path. What a token
 * cannot do (no EC on opencryptoki's software token) must be reported by the
 * probe and refused by name; everything else must work.
 */
import { spawnSync } from "node:child_process";
import Database from "better-sqlite3";
import { createPublicKey, verify } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { Pkcs11KeyStore } from "../../../src/adapters/pkcs11/key-store.js";
import { assessToken, renderAssessment } from "../../../src/app/token.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { KEY_TYPES, type KeyType } from "../../../src/domain/keys.js";
import type { KeyInfo, TokenProbe } from "../../../src/domain/ports.js";
import { cleanEnv, linesign, linesignOnTerminal, openssl } from "../../helpers/cli.js";
import { startImpl, type TokenImpl, type TokenImplName } from "../../helpers/tokens.js";

const HSM_DIR = fileURLToPath(new URL("../../../hsm/", import.meta.url));

/** What each implementation is known to lack; everything not listed must work. */
export interface ContractExpectations {
  /** Key types the probe must call unfit, with a word of the reason. */
  unfit: Partial<Record<KeyType, string>>;
  /** The mechanism each fit key type signs with (combined where offered, raw otherwise). */
  signWith: Partial<Record<KeyType, string>>;
  /** The key type the production path's CAs use here. */
  caKey: KeyType;
  /** The audit key type the production path's station is made with (`init --audit-key-type`). */
  auditKey: KeyType;
  /**
   * Whether openssl's pkcs11 engine can log in to this token. tpm2-pkcs11
   * cannot: the engine, made OpenSSL's default by `-engine`, takes over the
   * ECDH that tpm2-tss runs inside the login. The key's public twin (same
   * object and id, `type=public`) is resolved by the engine on every token.
   */
  engineLogin: boolean;
  /**
   * The token's own wrong-PIN limits where it reports its counters
   * (CKF_*_PIN_COUNT_LOW after a wrong PIN, FINAL_TRY one before the limit,
   * LOCKED at it); absent where it sets none of these flags (SoftHSM 2.6).
   */
  pinLimits?: { user: number; so: number };
  /**
   * True where a public data object made in the user session is known to be
   * read in a session without login (the auditor's copy of the log head);
   * unset: either, as long as the probe says which.
   */
  publicDataObjects?: true;
}

async function caught(p: Promise<unknown>): Promise<LinesignError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("expected a LinesignError");
}

function pemOfSpki(spki: Uint8Array): string {
  return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" })
    .export({ type: "spki", format: "pem" })
    .toString();
}

/** The public key p11tool (GnuTLS) finds at a URI, as PEM. */
function p11toolPublicKey(impl: TokenImpl, uri: string): string {
  const r = spawnSync("p11tool", ["--provider", impl.module, "--login", "--export-pubkey", uri], {
    encoding: "utf8",
    env: { ...process.env, ...impl.env, GNUTLS_PIN: impl.userPin },
  });
  if (r.status !== 0) throw new Error(`p11tool failed on ${uri}: ${r.stderr}${r.stdout}`);
  return r.stdout.slice(r.stdout.indexOf("-----BEGIN PUBLIC KEY-----"));
}

/**
 * The public key openssl's pkcs11 engine (libp11) finds at a URI, as PEM:
 * through the private key (a login) or, with `twin`, the public key of the
 * same object and id.
 */
function enginePublicKey(impl: TokenImpl, dir: string, uri: string, twin = false): string {
  const conf = join(dir, "openssl-pkcs11.cnf");
  writeFileSync(
    conf,
    `openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\n` +
      `engine_id = pkcs11\nMODULE_PATH = ${impl.module}\ninit = 0\n`,
  );
  const target = twin ? uri.replace(/;type=private$/, ";type=public") : uri;
  const r = spawnSync(
    "openssl",
    [
      "pkey",
      "-engine",
      "pkcs11",
      "-inform",
      "ENGINE",
      ...(twin ? ["-pubin"] : ["-passin", `pass:${impl.userPin}`]),
      "-in",
      target,
      "-pubout",
    ],
    { encoding: "utf8", env: { ...process.env, ...impl.env, OPENSSL_CONF: conf } },
  );
  if (r.status !== 0) throw new Error(`openssl's pkcs11 engine failed on ${target}: ${r.stderr}`);
  return r.stdout.slice(r.stdout.indexOf("-----BEGIN PUBLIC KEY-----"));
}

export function tokenContract(name: TokenImplName, expected: ContractExpectations): void {
  let impl: TokenImpl;
  let store: Pkcs11KeyStore;
  let probe: TokenProbe;
  const dir = mkdtempSync(join(tmpdir(), `linesign-contract-${name}-`));
  const label = "contract ü-token";
  const keys = new Map<KeyType, KeyInfo>();

  beforeAll(async () => {
    impl = await startImpl(name);
    // The modules read their environment when they initialise: set it before the first load.
    Object.assign(process.env, impl.env);
    store = new Pkcs11KeyStore(impl.module, async () => impl.userPin);
    store.initToken(label, impl.soPin, impl.userPin);
    probe = await store.probe(label, { login: true });
  });

  afterAll(async () => {
    store?.close();
    await impl?.stop();
  });

  describe(`token contract on ${name}`, () => {
    it("writes the label as 32 bytes padded with blanks, found again by its exact text", async () => {
      expect(store.listTokens().map((t) => t.label)).toContain(label);
      const { lib } = await store.rawSession(label);
      const labels = lib.C_GetSlotList(true).map((s) => lib.C_GetTokenInfo(s).label);
      const raw = labels.find((l) => l.startsWith("contract"));
      expect(raw).toBeDefined();
      const bytes = Buffer.from(raw!, "utf8");
      expect(bytes.length).toBe(32);
      expect(bytes.includes(0)).toBe(false);
      expect(bytes.toString("utf8")).toBe(
        label.padEnd(32 - (Buffer.byteLength(label) - label.length), " "),
      );
    });

    it("refuses a label longer than 32 bytes, counted in bytes, before touching a slot", async () => {
      const long = "ü".repeat(17); // 17 characters, 34 bytes
      const e = await caught(
        Promise.resolve().then(() => store.initToken(long, impl.soPin, impl.userPin)),
      );
      expect(e.code).toBe("USAGE");
      expect(e.message).toContain("34 bytes");
      expect(store.listTokens().map((t) => t.label)).not.toContain(long);
    });

    it("the capability table in hsm/ is what the probe finds", () => {
      const table =
        `# ${name}: capabilities found by \`linesign token probe\`\n\n` +
        "Generated by the token contract (`LINESIGN_WRITE_HSM_TABLES=1 npx vitest run " +
        `test/integration/pkcs11/contract-${name === "tpm2-pkcs11" ? "tpm2" : name}.test.ts\`); ` +
        "the contract fails when the probe finds anything else.\n\n```\n" +
        renderAssessment(assessToken(probe, expected.caKey))
          .replaceAll(probe.token.serial, "<serial>")
          .replaceAll(encodeURIComponent(label), "<label>")
          .replaceAll(label, "<label>") +
        "```\n";
      const file = join(HSM_DIR, `${name}.md`);
      if (process.env.LINESIGN_WRITE_HSM_TABLES === "1") writeFileSync(file, table);
      expect(readFileSync(file, "utf8")).toBe(table);
    });

    it("probe reports mechanisms, PIN counters and which key types the token can hold", () => {
      expect(probe.mechanisms.length).toBeGreaterThan(0);
      expect(probe.pin.userLocked).toBe(false);
      for (const kt of probe.keyTypes) {
        const unfit = expected.unfit[kt.keyType];
        if (unfit) {
          expect(kt.fit, kt.keyType).toBe(false);
          if (!kt.fit) expect(kt.reason).toContain(unfit);
        } else {
          expect(kt, kt.keyType).toMatchObject({
            fit: true,
            signWith: expected.signWith[kt.keyType],
          });
        }
      }
      expect(probe.template?.accepted).toBeTruthy();
      expect(probe.dataObjects).not.toBeNull();
    });

    it.each(KEY_TYPES)(
      "generates a %s key with custody read back, or refuses it by mechanism",
      async (kt) => {
        if (expected.unfit[kt]) {
          const e = await caught(store.generateKeyPair(label, `ca-${kt}`, kt));
          expect(e.code).toBe("HSM_MECHANISM_UNSUPPORTED");
          expect(e.message).toContain(expected.unfit[kt]!);
          expect(
            await store.findKey(`pkcs11:token=${encodeURIComponent(label)};object=ca-${kt}`),
          ).toBeNull();
          return;
        }
        const key = await store.generateKeyPair(label, `ca-${kt}`, kt);
        keys.set(kt, key);
        const c = key.custody!;
        expect(c.faults).toEqual([]);
        expect(c).toMatchObject({
          sensitive: true,
          neverExtractable: true,
          extractable: false,
          sign: true,
        });
        expect(c.decrypt).not.toBe(true);
        expect(c.unwrap).not.toBe(true);
        expect(c.derive).not.toBe(true);
        // Where the token accepted the strict template, the key cannot be changed later.
        if (c.template === "strict" || c.template === "no-v2.40") expect(c.modifiable).toBe(false);
      },
    );

    it.each(KEY_TYPES)("signs with the %s key in the token; node verifies it", async (kt) => {
      const key = keys.get(kt);
      if (!key) {
        expect(expected.unfit[kt]).toBeDefined();
        return;
      }
      const signer = await store.signer(key.uri);
      const message = Buffer.from(`contract message for ${kt}`);
      const sig = await signer.sign(message);
      const pub = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
      const hash = kt === "ec-p384" ? "sha384" : "sha256";
      const opts = kt.startsWith("ec") ? { key: pub, dsaEncoding: "ieee-p1363" as const } : pub;
      expect(verify(hash, message, opts, sig)).toBe(true);
    });

    it("keeps the log head in a private data object, or the probe says it cannot", async () => {
      if (probe.dataObjects?.kept) {
        await store.writeData(label, "linesign-log-head", Buffer.from("head-1"));
        await store.writeData(label, "linesign-log-head", Buffer.from("head-2"));
        const values = await store.readData(label, "linesign-log-head");
        expect(values.map((v) => Buffer.from(v).toString())).toEqual(["head-2"]);
      } else {
        expect(probe.dataObjects?.reason).toBeTruthy();
      }
    });

    it("keeps a public copy of the log head that a session without login reads, or the probe says it cannot", async () => {
      const pub = probe.publicDataObjects;
      expect(pub).toBeDefined();
      if (expected.publicDataObjects) expect(pub).toEqual({ kept: true, reason: null });
      if (!pub?.kept) {
        expect(pub?.reason).toBeTruthy();
        return;
      }
      // Written in the user session, as the station writes it after the private head.
      await store.writeRegister(label, "linesign-log-head-public", "public-1", { public: true });
      await store.writeRegister(label, "linesign-log-head-public", "public-2", { public: true });
      await store.writeRegister(label, "linesign-log-head", "private-1");
      store.logout(label);
      // Read by a reader that has no PIN to give: it never logs in.
      let asked = 0;
      const auditor = new Pkcs11KeyStore(impl.module, async () => {
        asked++;
        throw new Error("no PIN here");
      });
      try {
        const values = await auditor.readPublicRegister(label, "linesign-log-head-public");
        expect([...values].sort()).toEqual(["public-1", "public-2"]);
        // The private register is not among what a public session sees.
        expect(await auditor.readPublicRegister(label, "linesign-log-head")).toEqual([]);
      } finally {
        auditor.close();
      }
      expect(asked).toBe(0);
    });

    it("signs several messages at once on its signing sessions; every signature verifies", async () => {
      const kt = expected.caKey;
      const signer = await store.signer(keys.get(kt)!.uri);
      const messages = Array.from({ length: 8 }, (_, i) => Buffer.from(`at once ${i}`));
      const sigs = await Promise.all(messages.map((m) => signer.sign(m)));
      const pub = createPublicKey({
        key: Buffer.from(signer.key.spki),
        format: "der",
        type: "spki",
      });
      const opts = kt.startsWith("ec") ? { key: pub, dsaEncoding: "ieee-p1363" as const } : pub;
      const hash = kt === "ec-p384" ? "sha384" : "sha256";
      messages.forEach((m, i) => expect(verify(hash, m, opts, sigs[i]!), `${i}`).toBe(true));
    });

    it("reopens a lost session and logs in again once, then signs", async () => {
      const kt = expected.caKey;
      const key = keys.get(kt)!;
      const signer = await store.signer(key.uri);
      const { lib } = await store.rawSession(label);
      const slot = lib
        .C_GetSlotList(true)
        .find((s) => lib.C_GetTokenInfo(s).label.startsWith("contract"))!;
      // Every session of the process ends behind the store's back (what a network HSM's restart does).
      lib.C_CloseAllSessions(slot);
      const message = Buffer.from("after the session was lost");
      const sig = await signer.sign(message);
      const pub = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
      const opts = kt.startsWith("ec") ? { key: pub, dsaEncoding: "ieee-p1363" as const } : pub;
      expect(verify(kt === "ec-p384" ? "sha384" : "sha256", message, opts, sig)).toBe(true);
    });

    it("a vendor-made key is adopted by URI after its attributes are read back", async () => {
      const key = keys.get(expected.caKey)!;
      const adopted = await store.adoptKey(key.uri);
      expect(adopted.custody?.template).toBe("adopted");
      expect(adopted.custody?.faults).toEqual([]);
      expect(Buffer.from(adopted.spki)).toEqual(Buffer.from(key.spki));
    });

    it("the printed pkcs11: URI names the same key in p11tool and in openssl's pkcs11 engine", () => {
      const key = keys.get(expected.caKey)!;
      const pem = pemOfSpki(key.spki);
      expect(p11toolPublicKey(impl, key.uri)).toBe(pem);
      expect(enginePublicKey(impl, dir, key.uri, true)).toBe(pem);
      if (expected.engineLogin) expect(enginePublicKey(impl, dir, key.uri)).toBe(pem);
    });
  });

  const station: ProductionStation = {};
  productionPath(name, expected, () => impl, station);
  if (expected.pinLimits) pinCounters(name, expected.pinLimits, station, () => store);
}

/** The production path's station, for the cases that go on with it. */
interface ProductionStation {
  home?: string;
  env?: NodeJS.ProcessEnv;
  tokenLabel?: string;
  impl?: TokenImpl;
  /** station.json's audit section before the path made the audit key unfit. */
  audit?: Record<string, unknown> | undefined;
}

/** The station's production path end to end through the CLI, on a fresh token of `impl`. */
function productionPath(
  name: TokenImplName,
  expected: ContractExpectations,
  implOf: () => TokenImpl,
  station: ProductionStation,
): void {
  describe(`production path on ${name}`, () => {
    it("init --module, ca create, verification-cert, issue, crl, audit verify", () => {
      const impl = implOf();
      const home = mkdtempSync(join(tmpdir(), `linesign-prod-${name}-`));
      const tokenLabel = "station-token";
      const env = cleanEnv({
        ...impl.env,
        LINESIGN_HOME: home,
        LINESIGN_USER: "officer-1",
        LINESIGN_PASSPHRASE: "officer-one-passphrase",
        LINESIGN_USER_PIN: impl.userPin,
        LINESIGN_SO_PIN: impl.soPin,
      });
      Object.assign(station, { home, env, tokenLabel, impl });
      const cli = (args: string[]) => {
        const r = linesign([...args, "--json"], env);
        expect(r.code, `${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        return r.json;
      };
      cli([
        "init",
        "--module",
        impl.module,
        "--token-label",
        tokenLabel,
        "--station-id",
        `contract-${name}`,
        "--audit-key-type",
        expected.auditKey,
      ]);
      cli(["token", "init", "--label", tokenLabel]);
      // What the officer checks first: the token can hold the CA keys and the audit key.
      const probe = cli(["token", "probe"]);
      expect(probe.caKey).toMatchObject({ fit: true });
      expect(probe.auditKey).toMatchObject({ fit: true });
      expect(probe.headStore).toBe("data-object");
      const kt = expected.caKey;
      cli([
        "ca",
        "create",
        "--label",
        "root",
        "--key",
        kt,
        "--subject",
        "CN=Contract Root",
        "--self-signed",
      ]);
      const ica = cli([
        "ca",
        "create",
        "--label",
        "ica",
        "--key",
        kt,
        "--subject",
        "CN=Contract ICA",
        "--root",
        "root",
      ]);
      const keyUri = (ica.ca as { keyUri: string }).keyUri;
      const unfitKey = Object.keys(expected.unfit)[0] as KeyType | undefined;
      if (unfitKey) {
        const r = linesign(
          [
            "ca",
            "create",
            "--label",
            "nope",
            "--key",
            unfitKey,
            "--subject",
            "CN=Nope",
            "--self-signed",
            "--json",
          ],
          env,
        );
        expect(r.code).toBe(1);
        expect(r.json.error?.code).toBe("HSM_MECHANISM_UNSUPPORTED");
        expect(r.json.error?.message).toContain(expected.unfit[unfitKey]!);
      }
      const cfgPath = join(home, "station.json");
      const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
      cfg.profiles = { default: { ca: "ica", validityDays: 365 } };
      writeFileSync(cfgPath, JSON.stringify(cfg));
      const code = "a".repeat(64);
      const vout = join(home, "verification.pem");
      cli([
        "ca",
        "verification-cert",
        "--label",
        "ica",
        "--registration-code",
        code,
        "--out",
        vout,
      ]);
      const rootPem = join(home, "root.pem");
      const icaPem = join(home, "ica.pem");
      cli(["ca", "export", "--label", "root", "--out", rootPem]);
      cli(["ca", "export", "--label", "ica", "--out", icaPem]);
      expect(openssl(["verify", "-CAfile", rootPem, "-untrusted", icaPem, icaPem]).out).toContain(
        ": OK",
      );
      const csrKey = join(home, "device.key");
      const csr = join(home, "device.csr");
      const made = openssl([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        csrKey,
        "-out",
        csr,
        "-subj",
        "/CN=device-0001",
      ]);
      expect(made.code, made.out).toBe(0);
      const certOut = join(home, "device.pem");
      cli(["issue", "--csr", csr, "--out", certOut]);
      const chainFile = join(home, "chain.pem");
      writeFileSync(chainFile, readFileSync(icaPem, "utf8") + readFileSync(rootPem, "utf8"));
      expect(openssl(["verify", "-CAfile", rootPem, "-untrusted", icaPem, certOut]).out).toContain(
        ": OK",
      );
      expect(openssl(["x509", "-in", vout, "-noout", "-subject"]).out).toContain(code);
      const crl = join(home, "ica.crl");
      cli(["crl", "--ca", "ica", "--out", crl]);
      expect(openssl(["crl", "-in", crl, "-noout", "-CAfile", chainFile]).out).toContain(
        "verify OK",
      );
      const verified = cli(["audit", "verify"]);
      expect(verified.ok).toBe(true);
      expect((verified.checkpoints as { verified: number }).verified).toBeGreaterThan(0);
      expect(verified.token).toMatchObject({ checked: true });
      // The key the station printed is the key p11tool and the engine find there.
      const pub = readFileSync(icaPem, "utf8");
      const spkiPem = createPublicKey(pub).export({ type: "spki", format: "pem" }).toString();
      expect(p11toolPublicKey(impl, keyUri)).toBe(spkiPem);
      expect(enginePublicKey(impl, home, keyUri, true)).toBe(spkiPem);
      if (expected.engineLogin) expect(enginePublicKey(impl, home, keyUri)).toBe(spkiPem);

      // An audit key the token cannot make: the command's closing checkpoint fails loudly
      // (stderr, exit 1, an event) instead of into the log file alone.
      const unfitAudit = unfitKey ?? null;
      if (unfitAudit) {
        const c = JSON.parse(readFileSync(cfgPath, "utf8")) as { audit?: Record<string, unknown> };
        station.audit = c.audit;
        c.audit = { ...c.audit, keyLabel: "audit-unfit", keyType: unfitAudit };
        writeFileSync(cfgPath, JSON.stringify(c));
        const r = linesign(
          ["issue", "--csr", csr, "--out", join(home, "again.pem"), "--json"],
          env,
        );
        expect(r.code, r.stdout + r.stderr).toBe(1);
        expect(r.json.ok, "the certificate itself was issued").toBe(true);
        expect(r.stderr).toContain("AUDIT_CHECKPOINT_FAILED");
        expect(r.stderr).toContain("audit.keyType");
        const db = new Database(join(home, "station.db"), { readonly: true });
        const ev = db
          .prepare("SELECT outcome, code FROM events WHERE action = 'audit.checkpoint'")
          .all();
        db.close();
        expect(ev).toContainEqual({ outcome: "failed", code: "AUDIT_CHECKPOINT_FAILED" });
      }
    }, 300_000);
  });
}

/** The six CKF_*_PIN_* flags the token reports for the token labelled `label`, read by the module itself. */
async function pinFlags(store: Pkcs11KeyStore, label: string): Promise<string[]> {
  const { lib } = await store.rawSession("contract ü-token");
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === label);
  if (slot === undefined) throw new Error(`no token ${label}`);
  const f = lib.C_GetTokenInfo(slot).flags;
  const names = {
    USER_PIN_COUNT_LOW: 0x10000,
    USER_PIN_FINAL_TRY: 0x20000,
    USER_PIN_LOCKED: 0x40000,
    SO_PIN_COUNT_LOW: 0x100000,
    SO_PIN_FINAL_TRY: 0x200000,
    SO_PIN_LOCKED: 0x400000,
  };
  return Object.entries(names)
    .filter(([, bit]) => (f & bit) !== 0)
    .map(([n]) => n);
}

/**
 * On a token that counts wrong PINs itself, the station reads its counters and
 * stops at FINAL_TRY, before the token locks, even with its own guard set above
 * the token's limit; the officer's procedure then brings the right PIN back.
 * Goes on with the production path's station.
 */
function pinCounters(
  name: TokenImplName,
  limits: { user: number; so: number },
  station: ProductionStation,
  storeOf: () => Pkcs11KeyStore,
): void {
  describe(`the token's own PIN counters on ${name}`, () => {
    it("wrong user and SO PINs stop at the token's FINAL_TRY; the token never locks", async () => {
      const { home, env, tokenLabel, impl } = station;
      if (!home || !env || !tokenLabel || !impl)
        throw new Error("the production path's station was not made");
      const store = storeOf();
      const run = (args: string[], extra: Record<string, string> = {}) =>
        linesign([...args, "--json"], { ...env, ...extra });
      const ok = (args: string[], extra: Record<string, string> = {}) => {
        const r = run(args, extra);
        expect(r.code, `${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        return r;
      };
      // The station's own guard is set above the token's limits: only the token's counters can stop it in time.
      const cfgPath = join(home, "station.json");
      const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as {
        pkcs11: Record<string, unknown>;
        audit?: Record<string, unknown>;
      };
      // The audit key the station made, again (the production path ended on an unfit one).
      if (station.audit) cfg.audit = station.audit;
      cfg.pkcs11.maxPinAttempts = limits.user + 5;
      cfg.pkcs11.maxSoPinAttempts = limits.so + 5;
      writeFileSync(cfgPath, JSON.stringify(cfg));
      expect(await pinFlags(store, tokenLabel)).toEqual([]);

      const wrongUser = { LINESIGN_USER_PIN: "135790" };
      // A CRL is signed in the token: the user PIN is presented.
      const signCrl = ["crl", "--ca", "ica", "--out", join(home, "pins.crl")];
      for (let i = 1; i < limits.user; i++) {
        const r = run(signCrl, wrongUser);
        expect(r.json.error?.code, r.stdout + r.stderr).toBe("HSM_PIN_INCORRECT");
        expect(await pinFlags(store, tokenLabel)).toEqual([
          i === limits.user - 1 ? "USER_PIN_FINAL_TRY" : "USER_PIN_COUNT_LOW",
        ]);
      }
      // The station's guard has counted fewer than its limit: the token's FINAL_TRY stops the next PIN.
      const stopped = run(signCrl, wrongUser);
      expect(stopped.code).toBe(1);
      expect(stopped.json.error?.code, stopped.stdout).toBe("HSM_PIN_LOCKED");
      expect(stopped.json.error?.message).toContain("CKF_USER_PIN_FINAL_TRY");
      expect(stopped.json.error?.message).toContain("the token's own counter");
      expect(stopped.json.error?.message).toContain("linesign token unlock");
      expect(await pinFlags(store, tokenLabel), "the token is not locked").toEqual([
        "USER_PIN_FINAL_TRY",
      ]);

      // The officer's procedure: the SO PIN resets the counter (the user PIN set again), the right PIN works.
      ok(["token", "unlock"], { LINESIGN_NEW_USER_PIN: impl.userPin });
      expect(await pinFlags(store, tokenLabel)).toEqual([]);
      ok(signCrl);

      // The SO PIN the same way, through both commands that present it.
      const wrongSo = { LINESIGN_SO_PIN: "11223344" };
      // Another process of the station is presenting a PIN (it holds the station's lock, a write
      // transaction on station.db) while the officer types one: the officer's PIN waits, and is
      // refused when the wait is too long, so the two never both spend an attempt the token allows.
      const holder = new Database(join(home, "station.db"));
      const withoutSoPin = { ...env };
      delete withoutSoPin.LINESIGN_SO_PIN;
      let asked: { code: number; screen: string };
      try {
        asked = await linesignOnTerminal(
          ["token", "unlock", "--json"],
          withoutSoPin,
          `SO PIN for token "${tokenLabel}"`,
          wrongSo.LINESIGN_SO_PIN,
          () => holder.exec("BEGIN IMMEDIATE"),
        );
      } finally {
        if (holder.inTransaction) holder.exec("ROLLBACK");
        holder.close();
      }
      expect(asked.code, asked.screen).toBe(1);
      expect(asked.screen).toContain('"code":"DB_LOCKED"');
      expect(await pinFlags(store, tokenLabel), "no SO PIN was presented").toEqual([]);
      for (let i = 1; i < limits.so; i++) {
        const r =
          i % 2 === 1
            ? run(["token", "unlock"], wrongSo)
            : run(["token", "pin", "--so"], { ...wrongSo, LINESIGN_NEW_SO_PIN: "55667788" });
        expect(r.json.error?.code, r.stdout + r.stderr).toBe("HSM_PIN_INCORRECT");
        const last = i === limits.so - 1;
        expect(await pinFlags(store, tokenLabel)).toEqual([
          last ? "SO_PIN_FINAL_TRY" : "SO_PIN_COUNT_LOW",
        ]);
        expect(r.json.error?.message).toContain(
          last ? "CKF_SO_PIN_FINAL_TRY" : "CKF_SO_PIN_COUNT_LOW",
        );
      }
      // Not even the right SO PIN is presented at the token's last attempt ...
      const soStopped = run(["token", "unlock"]);
      expect(soStopped.json.error?.code, soStopped.stdout).toBe("HSM_PIN_LOCKED");
      expect(soStopped.json.error?.message).toContain("CKF_SO_PIN_FINAL_TRY");
      expect(soStopped.json.error?.message).toContain("--final-try");
      expect(await pinFlags(store, tokenLabel), "the SO PIN is not locked").toEqual([
        "SO_PIN_FINAL_TRY",
      ]);
      // ... until an officer, sure of it, presents it once on purpose (recorded); the counter is reset.
      ok(["token", "unlock", "--final-try"]);
      expect(await pinFlags(store, tokenLabel)).toEqual([]);
      const db = new Database(join(home, "station.db"), { readonly: true });
      const unlocks = db
        .prepare("SELECT details FROM events WHERE action = 'token.unlock' AND outcome = 'ok'")
        .all() as { details: string }[];
      db.close();
      expect(unlocks.map((u) => JSON.parse(u.details) as unknown)).toEqual([
        { userPinChanged: true },
        { userPinChanged: false, finalTry: true },
      ]);
    }, 300_000);
  });
}
