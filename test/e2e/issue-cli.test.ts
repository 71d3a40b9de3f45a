import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { openssl } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";

let s: TestStation;
const csrFile = (name: string, cn: string, key = deviceKey("ec-p256")) =>
  s.file(`${name}.csr`, csrPem(makeCsr({ key, subject: [["CN", cn]] })));

beforeAll(() => {
  s = devStation();
});

describe("linesign issue", () => {
  it("issues to a file with the chain, marks it delivered, and openssl verifies it", () => {
    const out = join(s.hsm.dir, "dev-1.pem");
    const r = s.run([
      "issue",
      "--csr",
      csrFile("dev-1", "cli-dev-1"),
      "--out",
      out,
      "--chain",
      "--json",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, deviceId: "cli-dev-1", state: "DELIVERED", out });
    const pem = readFileSync(out, "utf8");
    expect(pem.match(/BEGIN CERTIFICATE/g)).toHaveLength(3); // leaf, dev-ica, dev-root
    const root = s.file("root.pem", s.run(["ca", "export", "--label", "dev-root"]).stdout);
    expect(openssl(["verify", "-CAfile", root, "-untrusted", out, out]).out).toContain(": OK");
  });

  it("writes PEM to stdout without --out, and refuses a device id that disagrees with the CSR", () => {
    const r = s.run(["issue", "--csr", csrFile("dev-2", "cli-dev-2")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    const bad = s.run([
      "issue",
      "--csr",
      csrFile("dev-3", "cli-dev-3"),
      "--device-id",
      "someone-else",
      "--json",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.json.error!.code).toBe("DEVICE_ID_MISMATCH");
  });

  it("refuses a bad CSR with its reason, exit 1, and no output file", () => {
    const out = join(s.hsm.dir, "never.pem");
    const csr = s.file(
      "rsa1024.csr",
      csrPem(makeCsr({ key: deviceKey("rsa-1024"), subject: [["CN", "weak-1"]] })),
    );
    const r = s.run(["issue", "--csr", csr, "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("KEY_TYPE_NOT_ALLOWED");
    expect(() => readFileSync(out)).toThrow();
    const missing = s.run(["issue", "--csr", join(s.hsm.dir, "nope.csr"), "--json"]);
    expect(missing.code).toBe(1);
    expect(missing.json.error!.code).toBe("FILE_READ_FAILED");
  });
});

describe("linesign audit log", () => {
  it("filters by device, status and time, and writes CSV safe for spreadsheets", () => {
    s.run(["issue", "--csr", csrFile("f-1", "filter-1"), "--out", join(s.hsm.dir, "f1.pem")]);
    s.run([
      "issue",
      "--csr",
      s.file(
        "inj.csr",
        csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "=cmd|' /C calc'!A0"]] })),
      ),
    ]);
    const all = s.run(["audit", "log", "--format", "json"]).json.rows as {
      deviceId: string;
      status: string;
      reason: string;
    }[];
    expect(all.map((r) => r.status)).toEqual(expect.arrayContaining(["DELIVERED", "REJECTED"]));
    const one = s.run(["audit", "log", "--device", "filter-1", "--format", "json"]).json.rows as {
      deviceId: string;
    }[];
    expect(one.map((r) => r.deviceId)).toEqual(["filter-1"]);
    const rej = s.run(["audit", "log", "--status", "REJECTED", "--format", "json"]).json.rows as {
      status: string;
      reason: string;
    }[];
    expect(rej.length).toBeGreaterThanOrEqual(2);
    expect(rej.every((r) => r.status === "REJECTED")).toBe(true);
    expect(rej.map((r) => r.reason)).toEqual(
      expect.arrayContaining(["KEY_TYPE_NOT_ALLOWED", "DEVICE_ID_MISMATCH", "DEVICE_ID_INVALID"]),
    );
    expect(
      (s.run(["audit", "log", "--since", "2999-01-01", "--format", "json"]).json.rows as unknown[])
        .length,
    ).toBe(0);
    expect(
      (s.run(["audit", "log", "--until", "2000-01-01", "--format", "json"]).json.rows as unknown[])
        .length,
    ).toBe(0);

    const csv = s.run(["audit", "log", "--format", "csv"]).stdout;
    const lines = csv.trimEnd().split("\r\n");
    expect(lines[0]).toBe(
      "time,kind,deviceId,status,serial,keyType,reason,message,profile,ca,operator,origin,workOrder,fingerprint",
    );
    expect(lines.length).toBe(all.length + 1);
    expect(csv).not.toMatch(/(^|,)=cmd/m);
    const table = s.run(["audit", "log", "--device", "filter-1"]);
    expect(table.stdout).toContain("filter-1");
    expect(s.run(["audit", "log", "--since", "yesterday"]).code).toBe(2);
    expect(s.run(["audit", "log", "--status", "LOST"]).code).toBe(2);
  });

  it("audit verify reports the signed checkpoints and the token head", () => {
    const r = s.run(["audit", "verify", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json.token).toMatchObject({ checked: true });
    expect((r.json.checkpoints as { count: number; verified: number }).verified).toBeGreaterThan(0);
  });
});
