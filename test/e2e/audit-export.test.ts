/** The audit export, verified on a clean folder with no token and no station database. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { cleanEnv, linesign } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";

describe("audit export", () => {
  let st: TestStation;
  let bundle: string;
  let cert: string;
  const elsewhere = mkdtempSync(join(tmpdir(), "linesign-auditor-"));
  // The auditor's machine: no SoftHSM config, no station home.
  const verify = (file: string, extra: string[] = []) =>
    linesign(
      ["--json", "audit", "verify", "--bundle", file, ...extra],
      cleanEnv({ HOME: elsewhere }),
    );

  beforeAll(() => {
    st = devStation();
    for (const id of ["aud-1", "aud-2"]) {
      const csr = st.file(
        `${id}.csr`,
        csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] })),
      );
      const r = st.run(["issue", "--csr", csr, "--out", join(st.hsm.dir, `${id}.pem`), "--json"]);
      expect(r.code, r.stdout).toBe(0);
    }
    const junk = st.file("junk.csr", "not a request");
    expect(st.run(["issue", "--csr", junk]).code).toBe(1);
    const serial = (
      st.run(["audit", "log", "--device", "aud-1", "--json"]).json.rows as { serial: string }[]
    )[0]!.serial;
    expect(st.run(["revoke", "--serial", serial, "--reason", "keyCompromise"]).code).toBe(0);
    expect(st.run(["crl", "--ca", "dev-ica", "--out", join(st.hsm.dir, "crl.pem")]).code).toBe(0);
    cert = join(elsewhere, "station.pem");
    expect(st.run(["station-cert", "--out", cert]).code).toBe(0);
    bundle = join(elsewhere, "audit.json");
    expect(st.run(["audit", "export", "--out", bundle]).code).toBe(0);
  });

  it("verifies elsewhere and reports what happened", () => {
    const r = verify(bundle, ["--trust", cert]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, auditKeyPinned: true });
    const c = r.json.counts as Record<string, unknown>;
    expect(c).toMatchObject({
      issued: 2,
      confirmed: 0,
      unconfirmed: 1,
      revoked: 1,
      rejectedByReason: { CSR_MALFORMED: 1 },
    });
    expect(c.unconfirmedList).toMatchObject([{ deviceId: "aud-2", state: "DELIVERED" }]);
    const b = JSON.parse(readFileSync(bundle, "utf8")) as {
      events: unknown[];
      cas: unknown[];
      crls: unknown[];
    };
    expect(b.cas.length).toBeGreaterThanOrEqual(2);
    expect(b.crls).toHaveLength(1);
    const csv = linesign(
      ["audit", "verify", "--bundle", bundle, "--format", "csv"],
      cleanEnv({ HOME: elsewhere }),
    );
    const lines = csv.stdout.trim().split("\n");
    expect(lines[0]).toBe("seq,ts,actor,action,subject,outcome,code,message,details,hash");
    expect(lines).toHaveLength(b.events.length + 1);
    expect(csv.stdout).toContain("issuance.reject");
  });

  it("detects each kind of tampering and names the first bad entry", () => {
    const original = JSON.parse(readFileSync(bundle, "utf8")) as {
      events: { seq: number; actor: string }[];
      checkpoints: { signature: string; seq: number }[];
      auditPublicKey: string;
    };
    const write = (name: string, f: (b: typeof original) => void) => {
      const copy = JSON.parse(JSON.stringify(original)) as typeof original;
      f(copy);
      const p = join(elsewhere, name);
      writeFileSync(p, JSON.stringify(copy));
      return p;
    };
    const cases: [string, string, RegExp][] = [
      [
        write("edited.json", (b) => (b.events[2]!.actor = "someone-else")),
        "edited",
        /entry 3 was changed/,
      ],
      [
        write("removed.json", (b) => b.events.splice(4, 1)),
        "removed",
        /entry 6 stands where entry 5 should/,
      ],
      [write("tail.json", (b) => b.events.pop()), "tail", /closing checkpoint|not in the export/],
      [
        write("swapped.json", (b) => {
          const [x, y] = [b.checkpoints.at(-1)!, b.checkpoints.at(-2)!];
          [x.signature, y.signature] = [y.signature, x.signature];
        }),
        "swapped checkpoint",
        /signature of checkpoint \d+ \(entry \d+\) does not verify/,
      ],
      [
        write(
          "key.json",
          (b) => (b.auditPublicKey = Buffer.from("not the key").toString("base64")),
        ),
        "wrong audit key",
        /not the export's audit key/,
      ],
    ];
    for (const [file, what, why] of cases) {
      const r = verify(file);
      expect(r.code, what).toBe(1);
      expect(r.json.ok, what).toBe(false);
      expect(String(r.json.message), what).toMatch(why);
    }
    // Another station's certificate does not vouch for this export.
    const other = devStation();
    const otherCert = join(elsewhere, "other.pem");
    expect(other.run(["station-cert", "--out", otherCert]).code).toBe(0);
    const foreign = verify(bundle, ["--trust", otherCert]);
    expect(foreign.code).toBe(1);
    expect(String(foreign.json.message)).toContain("not the trusted station's audit key");
  });
});
