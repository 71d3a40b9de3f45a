/**
 * A token dies: the station's token is replaced by a fresh one (a new audit
 * key), through the CLI on real SoftHSM tokens. The new key is never made
 * silently; an officer's ceremony introduces it (the root signs its station
 * certificate), `audit verify` and an export verified elsewhere follow the
 * chain of audit keys across the rollover, a forged rollover fails, and the
 * CA whose key went with the old token is shown as such and refused.
 */
import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { chainEvent, type EventRecord } from "../../src/domain/event-log.js";
import { nodeChainHash } from "../../src/adapters/crypto/chain-hash.js";
import { checkpointMessage } from "../../src/app/checkpoint.js";
import { rolloverMessage } from "../../src/app/audit-keys.js";
import { cleanEnv, linesign } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";

let s: TestStation;
let n = 0;
const elsewhere = mkdtempSync(join(tmpdir(), "linesign-auditor-"));
const oldCert = join(elsewhere, "station-old.pem");
const newCert = join(elsewhere, "station-new.pem");
const bundle = join(elsewhere, "audit.json");
let rolloverSeq = 0;

const issue = () => {
  const csr = s.file(
    `dev-${++n}.csr`,
    csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `dev-${n}`]] })),
  );
  return s.run(["issue", "--csr", csr, "--out", join(s.hsm.dir, `dev-${n}.pem`), "--json"]);
};
// The auditor's machine: no SoftHSM config, no station home.
const verifyElsewhere = (file: string, extra: string[] = []) =>
  linesign(
    ["--json", "audit", "verify", "--bundle", file, ...extra],
    cleanEnv({ HOME: elsewhere }),
  );

beforeAll(() => {
  s = devStation();
  expect(issue().code).toBe(0);
  expect(issue().code).toBe(0);
  expect(s.run(["station-cert", "--out", oldCert]).code).toBe(0);
  // The token dies; a fresh one takes its label.
  const tokens = join(s.hsm.dir, "tokens");
  for (const t of readdirSync(tokens)) rmSync(join(tokens, t), { recursive: true });
  const init = s.run(["token", "init", "--label", "linesign-dev", "--json"], {
    LINESIGN_SO_PIN: "13572468",
    LINESIGN_USER_PIN: "246810",
  });
  expect(init.json.ok, init.stdout + init.stderr).toBe(true);
}, 180_000);

describe("audit-key rollover after a token replacement", () => {
  it("makes no new audit key silently, then the officer's ceremony introduces it and verification follows the chain", () => {
    // Before the ceremony: refused, naming it, and no key made.
    const keysMade = () => s.events().filter((e) => e.action === "audit.key-create").length;
    const before = keysMade();
    const refused = s.run(["station-cert", "--json"]);
    expect(refused.json.error?.code).toBe("AUDIT_KEY_ROLLOVER_REQUIRED");
    expect(refused.json.error?.message).toContain("linesign audit rollover");
    expect(keysMade()).toBe(before);

    const r = s.run([
      "audit",
      "rollover",
      "--root",
      "dev-root",
      "--reason",
      "token linesign-dev died; replaced by a fresh token",
      "--out",
      newCert,
      "--json",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.keysMissing).toEqual(["dev-ica"]);
    rolloverSeq = r.json.seq as number;
    const entry = s.events().find((e) => e.seq === rolloverSeq)!;
    expect(entry.action).toBe("audit.key.rollover");
    expect(entry.actor).toBe("dev-officer");
    expect(JSON.parse(entry.details)).toMatchObject({
      endorsement: { by: "ceremony", root: "dev-root", officer: "dev-officer" },
    });

    const v = s.run(["audit", "verify", "--json"]);
    expect(v.code, v.stdout).toBe(0);
    expect(v.json.auditKeys as unknown[]).toHaveLength(2);
    expect(String(v.json.message)).toContain("across 1 audit-key rollover");

    // Exported and checked on another machine, pinned by either station certificate.
    expect(s.run(["audit", "export", "--out", bundle]).code).toBe(0);
    for (const trust of [newCert, oldCert]) {
      const e = verifyElsewhere(bundle, ["--trust", trust]);
      expect(e.code, e.stdout + e.stderr).toBe(0);
      expect(e.json).toMatchObject({ ok: true, auditKeyPinned: true });
    }
  }, 120_000);

  it("shows the CA whose key went with the old token as key missing and refuses to issue under it", () => {
    const list = s.run(["ca", "list", "--json"]);
    const cas = list.json.cas as { label: string; keyMissing: boolean; status: string }[];
    expect(cas.find((c) => c.label === "dev-ica")).toMatchObject({ keyMissing: true });
    expect(cas.find((c) => c.label === "dev-root")).toMatchObject({ keyMissing: false });
    expect(s.run(["ca", "list"]).stdout).toMatch(/dev-ica\s+intermediate\s+KEY MISSING/);
    expect(s.run(["status"]).stdout).toMatch(/dev-ica\s+intermediate\s+KEY MISSING/);
    const refused = issue();
    expect(refused.code).toBe(1);
    expect(refused.json.error?.code).toBe("CA_KEY_MISSING");
    // Nor is it made to sign again by activating it.
    const activate = s.run(["ca", "activate", "--label", "dev-ica", "--json"]);
    expect(activate.json.error?.code).toBe("CA_KEY_MISSING");
  }, 60_000);

  it("fails a forged rollover: a key introduced without the old key's or the ceremony's signature", () => {
    const b = JSON.parse(readFileSync(bundle, "utf8")) as {
      station: string;
      auditPublicKey: string;
      events: EventRecord[];
      checkpoints: { seq: number; hash: string; ts: string; spki: string; signature: string }[];
    };
    const forger = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = (k: KeyObject) => new Uint8Array(k.export({ type: "spki", format: "der" }));
    const fSpki = spki(forger.publicKey);
    const signF = (m: Uint8Array) =>
      sign("sha256", m, { key: forger.privateKey, dsaEncoding: "ieee-p1363" }).toString("base64");
    const real = b.events.find((e) => e.seq === rolloverSeq)!;
    const d = real.details as { previousSpki: string; endorsement: { stationCert: string } };
    const prior = b.events.filter((e) => e.seq < rolloverSeq);
    const after = prior.at(-1)!;
    const message = rolloverMessage(
      b.station,
      after,
      new Uint8Array(Buffer.from(d.previousSpki, "base64")),
      fSpki,
    );
    const forged = (endorsement: Record<string, unknown>) => {
      const entry = chainEvent(
        {
          actor: "dev-officer",
          action: "audit.key.rollover",
          subject: "linesign-audit",
          outcome: "ok",
          details: {
            previousSpki: d.previousSpki,
            newSpki: Buffer.from(fSpki).toString("base64"),
            after: { seq: after.seq, hash: after.hash },
            newKeySignature: signF(message),
            endorsement,
          },
        },
        after,
        new Date().toISOString(),
        nodeChainHash,
      );
      const cp = {
        seq: entry.seq,
        hash: entry.hash,
        ts: entry.ts,
        spki: Buffer.from(fSpki).toString("base64"),
        signature: signF(checkpointMessage(b.station, entry.seq, entry.hash)),
      };
      return {
        ...b,
        auditPublicKey: cp.spki,
        events: [...prior, entry],
        checkpoints: [...b.checkpoints.filter((c) => c.seq < rolloverSeq), cp],
      };
    };
    const cases: [string, Record<string, unknown>, RegExp][] = [
      // The forger signs "as the previous key" with its own key.
      [
        "previous",
        { by: "previous-key", signature: signF(message) },
        /not signed by the previous audit key/,
      ],
      // A ceremony whose station certificate the root never signed (the real one is for another key).
      [
        "ceremony",
        {
          by: "ceremony",
          officer: "dev-officer",
          root: "dev-root",
          rootFingerprint: (real.details as { endorsement: { rootFingerprint: string } })
            .endorsement.rootFingerprint,
          stationCert: d.endorsement.stationCert,
        },
        /station certificate for another key/,
      ],
    ];
    for (const [name, endorsement, why] of cases) {
      const file = join(elsewhere, `forged-${name}.json`);
      writeFileSync(file, JSON.stringify(forged(endorsement)));
      const r = verifyElsewhere(file);
      expect(r.code, name).toBe(1);
      expect(String(r.json.message), name).toMatch(why);
      expect(String(r.json.message), name).toContain(`rollover at entry ${rolloverSeq}`);
    }
  }, 60_000);
});

describe("audit-key rollover endorsed by the old token, while it still works", () => {
  it("moves the station to a new token; the old audit key signs the rollover and verification follows it", () => {
    const t = devStation();
    const issueOn = (i: number) => {
      const csr = t.file(
        `old-${i}.csr`,
        csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `old-${i}`]] })),
      );
      return t.run(["issue", "--csr", csr, "--out", join(t.hsm.dir, `old-${i}.pem`), "--json"]);
    };
    expect(issueOn(1).code).toBe(0);
    expect(t.run(["station-cert", "--json"]).code).toBe(0);
    // A new token beside the old one; the station is pointed at it.
    const newToken = "linesign-new";
    const made = t.run(["token", "init", "--label", newToken, "--json"], {
      LINESIGN_SO_PIN: "13572468",
      LINESIGN_ROOT_PIN: "135246",
    });
    expect(made.json.ok, made.stdout + made.stderr).toBe(true);
    const cfgPath = join(t.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { pkcs11: { tokenLabel: string } };
    cfg.pkcs11.tokenLabel = newToken;
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    // The new token's PIN is the station's user PIN now; the old token's is asked as another token's.
    const pins = { LINESIGN_USER_PIN: "135246", LINESIGN_ROOT_PIN: "246810" };
    const refused = t.run(["station-cert", "--json"], pins);
    expect(refused.json.error?.code, refused.stdout).toBe("AUDIT_KEY_ROLLOVER_REQUIRED");

    // A token that holds no audit key is not the old one.
    const wrong = t.run(
      ["audit", "rollover", "--old-token", newToken, "--reason", "moved to a new token", "--json"],
      { ...pins, LINESIGN_ROOT_PIN: "135246" },
    );
    expect(wrong.json.error?.code, wrong.stdout).toBe("USAGE");
    expect(wrong.json.error?.message).toContain("it is not the station's old token");

    const r = t.run(
      [
        "audit",
        "rollover",
        "--old-token",
        "linesign-dev",
        "--reason",
        "moved to a new token",
        "--json",
      ],
      pins,
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const entry = t.events().find((e) => e.seq === (r.json.seq as number))!;
    expect(entry.action).toBe("audit.key.rollover");
    const details = JSON.parse(entry.details) as {
      previousSpki: string;
      newSpki: string;
      after: { seq: number; hash: string };
      endorsement: { by: string; signature: string };
    };
    expect(details.endorsement.by).toBe("previous-key");
    // The endorsement is the old key's signature over the rollover message, checked here with node.
    const station = (JSON.parse(readFileSync(cfgPath, "utf8")) as { station: { id: string } })
      .station.id;
    const message = rolloverMessage(
      station,
      details.after,
      new Uint8Array(Buffer.from(details.previousSpki, "base64")),
      new Uint8Array(Buffer.from(details.newSpki, "base64")),
    );
    expect(
      verify(
        "sha256",
        message,
        {
          key: createPublicKey({
            key: Buffer.from(details.previousSpki, "base64"),
            format: "der",
            type: "spki",
          }),
          dsaEncoding: "ieee-p1363",
        },
        Buffer.from(details.endorsement.signature, "base64"),
      ),
    ).toBe(true);

    const v = t.run(["audit", "verify", "--json"], pins);
    expect(v.code, v.stdout).toBe(0);
    expect(v.json.auditKeys as unknown[]).toHaveLength(2);
    expect(String(v.json.message)).toContain("across 1 audit-key rollover");
  }, 180_000);
});
