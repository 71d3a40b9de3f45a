/**
 * A station's first year through the CLI: profiles as recorded configuration
 * (hand edits found at start), roots that never sign devices, the root-signed
 * station certificate, CA rotation with retire and deactivate kept apart,
 * unconfirmed certificates in the report and revoked after a grace period,
 * PIN and passphrase changes, the last officer, and the versions in status.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { openssl } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";
import { MIGRATIONS } from "../../src/adapters/db/migrations/index.js";

// Each step is a separate CLI process on a token; a shared machine makes some slow.
vi.setConfig({ testTimeout: 300_000 });

let s: TestStation;
let n = 0;
const csrFile = (cn: string) =>
  s.file(`${cn}-${++n}.csr`, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", cn]] })));
const cfgPath = () => join(s.home, "station.json");
const readCfg = () =>
  JSON.parse(readFileSync(cfgPath(), "utf8")) as {
    profiles: Record<string, Record<string, unknown>>;
    handEdits?: string;
  };
const lastEvent = (action: string) => {
  const e = s
    .events()
    .filter((x) => x.action === action)
    .at(-1);
  return e ? { ...e, details: JSON.parse(e.details) as Record<string, unknown> } : undefined;
};
const issuerOf = (pemFile: string) => openssl(["x509", "-in", pemFile, "-noout", "-issuer"]).out;

beforeAll(() => {
  s = devStation();
});

describe("profiles as recorded configuration", () => {
  it("refuses a profile whose CA is a root, and creates one under an intermediate", () => {
    const root = s.run(["profile", "create", "--name", "leafy", "--ca", "dev-root", "--json"]);
    expect(root.code).toBe(1);
    expect(root.json.error!.code).toBe("CA_NOT_FOR_DEVICES");
    expect(root.json.error!.message).toContain("roots never sign device certificates");
    expect(readCfg().profiles.leafy).toBeUndefined();

    const ok = s.run([
      "profile",
      "create",
      "--name",
      "sensor",
      "--ca",
      "dev-ica",
      "--field",
      "validityDays=365",
      "--json",
    ]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(readCfg().profiles.sensor).toMatchObject({ ca: "dev-ica", validityDays: 365 });
    const created = lastEvent("profile.create")!;
    expect(created.details).toMatchObject({ profile: "sensor", before: null });
    const listed = s.run(["profile", "list", "--json"]).json.profiles as {
      name: string;
      sha256: string;
    }[];
    expect(listed.map((p) => p.name).sort()).toEqual(["default", "sensor"]);
  });

  it("records each change with the before, the after and both hashes; issuances carry the hash", () => {
    const before = s.run(["profile", "show", "--name", "sensor", "--json"]).json.profile as {
      sha256: string;
    };
    const r = s.run([
      "profile",
      "set",
      "--name",
      "sensor",
      "--field",
      "validityDays=30",
      "--field",
      'subject.fixed.O="Example Sensors"',
      "--json",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const after = (r.json.profile as { sha256: string }).sha256;
    expect(after).not.toBe(before.sha256);
    const e = lastEvent("profile.set")!;
    expect(e.details).toMatchObject({
      beforeSha256: before.sha256,
      afterSha256: after,
      before: { validityDays: 365 },
      after: { validityDays: 30, subject: { fixed: { O: "Example Sensors" } } },
    });
    expect((e.details.changes as { path: string }[]).map((c) => c.path)).toEqual([
      "subject.fixed.O",
      "validityDays",
    ]);
    // A refused change leaves the file and the log's record as they were.
    const bad = s.run([
      "profile",
      "set",
      "--name",
      "sensor",
      "--field",
      "validityDays=0",
      "--json",
    ]);
    expect(bad.json.error!.code).toBe("CONFIG_INVALID");
    expect(bad.json.error!.message).toContain("profiles.sensor.validityDays");
    expect(readCfg().profiles.sensor!.validityDays).toBe(30);

    const out = join(s.hsm.dir, "sensor-1.pem");
    const issued = s.run([
      "issue",
      "--csr",
      csrFile("sensor-1"),
      "--profile",
      "sensor",
      "--out",
      out,
    ]);
    expect(issued.code, issued.stderr).toBe(0);
    expect(lastEvent("issuance.issue")!.details).toMatchObject({
      profile: "sensor",
      profileSha256: after,
    });
  });

  it("finds a hand edit of station.json at the next start and records it naming the field", () => {
    const cfg = readCfg();
    cfg.profiles.sensor!.validityDays = 7;
    writeFileSync(cfgPath(), JSON.stringify(cfg, null, 2));
    expect(s.run(["status"]).code).toBe(0);
    const e = lastEvent("config.hand-edit")!;
    expect(e.outcome).toBe("ok");
    expect(e.details.changes).toEqual([
      { path: "profiles.sensor.validityDays", before: 30, after: 7 },
    ]);
    // Recorded once: the next start finds nothing new.
    const count = s.events().length;
    expect(s.run(["status"]).code).toBe(0);
    expect(s.events().length).toBe(count);
  });

  it("with handEdits refuse, a hand edit stops the station until an officer accepts it", () => {
    expect(s.run(["profile", "set", "--name", "sensor", "--field", "validityDays=8"]).code).toBe(0);
    const cfg = readCfg();
    cfg.handEdits = "refuse";
    cfg.profiles.sensor!.allowReissue = true;
    writeFileSync(cfgPath(), JSON.stringify(cfg, null, 2));
    const refused = s.run(["status", "--json"]);
    expect(refused.code).toBe(1);
    expect(refused.json.error!.code).toBe("CONFIG_CHANGED");
    expect(refused.json.error!.message).toContain("profiles.sensor.allowReissue: false -> true");
    expect(refused.json.error!.message).toContain('"linesign config accept"');
    expect(lastEvent("config.hand-edit")!.outcome).toBe("refused");
    const accepted = s.run(["config", "accept", "--json"]);
    expect(accepted.code, accepted.stdout).toBe(0);
    expect(lastEvent("config.accept")!.details.changes).toEqual([
      { path: "handEdits", before: "record", after: "refuse" },
      { path: "profiles.sensor.allowReissue", before: false, after: true },
    ]);
    expect(s.run(["status"]).code).toBe(0);
  });
});

describe("roots, the station certificate and CA rotation", () => {
  it("the root signs the station certificate; an auditor checks an export through the root", () => {
    const station = join(s.hsm.dir, "station.pem");
    const rootPem = join(s.hsm.dir, "root.pem");
    expect(s.run(["station-cert", "--root", "dev-root", "--out", station]).code).toBe(0);
    expect(s.run(["ca", "export", "--label", "dev-root", "--out", rootPem]).code).toBe(0);
    expect(openssl(["verify", "-CAfile", rootPem, station]).out).toContain(": OK");
    const bundle = join(s.hsm.dir, "audit.json");
    expect(s.run(["audit", "export", "--out", bundle]).code).toBe(0);
    const v = s.run([
      "audit",
      "verify",
      "--bundle",
      bundle,
      "--trust",
      station,
      "--root",
      rootPem,
      "--json",
    ]);
    expect(v.code, v.stdout).toBe(0);
    expect(v.json).toMatchObject({ ok: true, auditKeyPinned: true });
    // A station certificate the root did not sign is refused.
    const selfSigned = join(s.hsm.dir, "self.pem");
    expect(s.run(["station-cert", "--out", selfSigned]).code).toBe(0);
    const bad = s.run([
      "audit",
      "verify",
      "--bundle",
      bundle,
      "--trust",
      selfSigned,
      "--root",
      rootPem,
      "--json",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.json.error!.code).toBe("CA_CHAIN_INVALID");
  });

  it("a profile moved to a root by hand is refused at issuance", () => {
    const set = s.run(["profile", "set", "--name", "sensor", "--field", "ca=dev-root", "--json"]);
    expect(set.json.error!.code).toBe("CA_NOT_FOR_DEVICES");
    const cfg = readCfg();
    cfg.profiles.sensor!.ca = "dev-root";
    writeFileSync(cfgPath(), JSON.stringify(cfg, null, 2));
    expect(s.run(["config", "accept"]).code).toBe(0);
    const r = s.run([
      "issue",
      "--csr",
      csrFile("rooted-1"),
      "--profile",
      "sensor",
      "--out",
      join(s.hsm.dir, "rooted-1.pem"),
      "--json",
    ]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("CA_NOT_FOR_DEVICES");
    expect(s.run(["profile", "set", "--name", "sensor", "--field", "ca=dev-ica"]).code).toBe(0);
  });

  it("rotates a profile to a new intermediate; retire and deactivate are refused while in use", () => {
    const made = s.run([
      "ca",
      "create",
      "--label",
      "ica-2027",
      "--key",
      "ec-p256",
      "--subject",
      "CN=Line Issuing CA 2027",
      "--root",
      "dev-root",
    ]);
    expect(made.code, made.stderr).toBe(0);
    for (const verb of ["deactivate", "retire"]) {
      const r = s.run(["ca", verb, "--label", "dev-ica", "--json"]);
      expect(r.code).toBe(1);
      expect(r.json.error!.code).toBe("CA_IN_USE");
      expect(r.json.error!.message).toContain("ca rotate --profile");
    }
    for (const p of ["default", "sensor"]) {
      const r = s.run(["ca", "rotate", "--profile", p, "--to", "ica-2027", "--json"]);
      expect(r.code, r.stdout).toBe(0);
      expect(lastEvent("ca.rotate")!.details).toMatchObject({
        profile: p,
        from: "dev-ica",
        to: "ica-2027",
      });
    }
    const out = join(s.hsm.dir, "rotated-1.pem");
    expect(s.run(["issue", "--csr", csrFile("rotated-1"), "--out", out]).code).toBe(0);
    expect(issuerOf(out)).toContain("Line Issuing CA 2027");
    // Stop issuing here, stay ACTIVE at AWS: retire. The old CA still signs its CRL.
    const retired = s.run(["ca", "retire", "--label", "dev-ica", "--json"]);
    expect(retired.code, retired.stdout).toBe(0);
    expect(s.run(["ca", "list"]).stdout).toMatch(/dev-ica\s+intermediate\s+retired/);
    expect(s.run(["crl", "--ca", "dev-ica"]).stdout).toContain("BEGIN X509 CRL");
    // A profile moved back to a retired CA is refused.
    const back = s.run(["ca", "rotate", "--profile", "sensor", "--to", "dev-ica", "--json"]);
    expect(back.json.error!.code).toBe("CA_INACTIVE");
  });
});

describe("certificates that left and were never confirmed", () => {
  it("the report lists DELIVERY_FAILED, logged under its own action; a grace period revokes them", () => {
    const r = s.run([
      "issue",
      "--csr",
      csrFile("lost-1"),
      "--profile",
      "sensor",
      "--out",
      join(s.hsm.dir, "no-such-dir", "lost-1.pem"),
    ]);
    expect(r.code).toBe(1);
    const failed = lastEvent("issuance.delivery-failed")!;
    expect(failed).toMatchObject({ subject: "lost-1", outcome: "ok" });
    const report = s.run(["audit", "report"]);
    expect(report.stdout).toContain("Left the station and never confirmed");
    expect(report.stdout).toMatch(/lost-1\s+serial \w+\s+DELIVERY_FAILED/);
    expect(report.stdout).not.toContain("Every certificate that left was confirmed");

    expect(
      s.run(["profile", "set", "--name", "sensor", "--field", "revokeUnconfirmedAfterHours=24"])
        .code,
    ).toBe(0);
    expect(s.run(["revoke", "--unconfirmed", "--json"]).json.revoked).toEqual([]);
    // Two days pass for that certificate (its row is aged; the grace period is the profile's).
    const db = new Database(join(s.home, "station.db"));
    db.prepare("UPDATE issuances SET created_at = ? WHERE device_id = 'lost-1'").run(
      new Date(Date.now() - 48 * 3_600_000).toISOString(),
    );
    db.close();
    const swept = s.run(["revoke", "--unconfirmed", "--json"]);
    expect(swept.code, swept.stdout).toBe(0);
    expect((swept.json.revoked as { deviceId: string }[]).map((x) => x.deviceId)).toEqual([
      "lost-1",
    ]);
    expect(lastEvent("issuance.revoke")!.details).toMatchObject({
      automatic: true,
      previousState: "DELIVERY_FAILED",
    });
  });
});

describe("people, PINs and versions", () => {
  it("the last officer cannot be disabled; passphrases and PINs change as recorded acts", () => {
    const dev = { LINESIGN_USER: "dev-officer", LINESIGN_PASSPHRASE: "linesign-dev-officer" };
    const last = s.run(["user", "disable", "--name", "dev-officer", "--json"], dev);
    expect(last.code).toBe(1);
    expect(last.json.error!.code).toBe("LAST_OFFICER");

    const changed = s.run(["user", "passphrase", "--json"], {
      ...dev,
      LINESIGN_NEW_PASSPHRASE: "a-longer-new-passphrase",
    });
    expect(changed.code, changed.stdout).toBe(0);
    expect(lastEvent("user.passphrase")).toMatchObject({ actor: "dev-officer", outcome: "ok" });
    const officer = {
      LINESIGN_USER: "dev-officer",
      LINESIGN_PASSPHRASE: "a-longer-new-passphrase",
    };
    expect(s.run(["user", "list"], officer).code).toBe(0);
    expect(s.run(["user", "list", "--json"], dev).json.error!.code).toBe("AUTH_FAILED");

    const pin = s.run(["token", "pin", "--json"], {
      ...officer,
      LINESIGN_USER_PIN: "246810",
      LINESIGN_NEW_USER_PIN: "135791113",
    });
    expect(pin.code, pin.stdout).toBe(0);
    const so = s.run(["token", "pin", "--so", "--json"], {
      ...officer,
      LINESIGN_SO_PIN: "13572468",
      LINESIGN_NEW_SO_PIN: "86421357",
    });
    expect(so.code, so.stdout).toBe(0);
    expect(
      s
        .events()
        .filter((e) => e.action === "token.pin")
        .map((e) => JSON.parse(e.details) as { pin: string })
        .map((d) => d.pin),
    ).toEqual(["user", "SO"]);
    // The old user PIN no longer opens the token; the new one does.
    const csr = csrFile("after-pin-1");
    const old = s.run(["issue", "--csr", csr, "--json"], {
      ...officer,
      LINESIGN_USER_PIN: "246810",
    });
    expect(old.json.error!.code).toBe("HSM_PIN_INCORRECT");
    const fresh = s.run(["issue", "--csr", csr, "--json"], {
      ...officer,
      LINESIGN_USER_PIN: "135791113",
    });
    expect(fresh.code, fresh.stdout).toBe(0);
    // No PIN or passphrase is in the log.
    const log = readFileSync(join(s.home, "station.db")).toString("latin1");
    for (const secret of ["135791113", "86421357", "a-longer-new-passphrase"])
      expect(log).not.toContain(secret);
  });

  it("status names the software and schema versions", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const r = s.run(["status", "--json"], {
      LINESIGN_USER: "dev-officer",
      LINESIGN_PASSPHRASE: "a-longer-new-passphrase",
    });
    const schema = MIGRATIONS.length;
    expect(r.json.versions).toMatchObject({
      software: pkg.version,
      schema,
      schemaSupported: schema,
    });
    expect(
      s.run(["status"], {
        LINESIGN_USER: "dev-officer",
        LINESIGN_PASSPHRASE: "a-longer-new-passphrase",
      }).stdout,
    ).toContain(`Software: linesign ${pkg.version}; database schema ${schema}`);
  });
});
