/** Revocation and CRLs through the CLI; CRLs checked with openssl. */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { openssl } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";
import { exportChain } from "../helpers/serial.js";

describe("revocation and CRL", () => {
  let st: TestStation;
  let chain: ReturnType<typeof exportChain>;
  const leaf: Record<string, { serial: string; pem: string }> = {};

  const issue = (id: string) => {
    const csr = st.file(
      `${id}.csr`,
      csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] })),
    );
    const out = join(st.hsm.dir, `${id}.pem`);
    const r = st.run(["issue", "--csr", csr, "--out", out, "--json"]);
    expect(r.code, r.stdout).toBe(0);
    leaf[id] = { serial: r.json.serial as string, pem: out };
  };

  beforeAll(() => {
    st = devStation();
    chain = exportChain(st);
    for (const id of ["rev-a", "rev-b", "keep-c"]) issue(id);
    issue("rev-b"); // the device is re-issued: two certificates, the first superseded
  });

  it("revokes by serial and by device id, records who and why, and refuses what makes no sense", () => {
    expect(
      st.run(["user", "add", "--name", "officer-1", "--role", "officer"], {
        LINESIGN_NEW_PASSPHRASE: "officer-one-passphrase",
      }).code,
    ).toBe(0);
    const a = st.run(
      ["revoke", "--serial", leaf["rev-a"]!.serial, "--reason", "keyCompromise", "--json"],
      { LINESIGN_USER: "officer-1", LINESIGN_PASSPHRASE: "officer-one-passphrase" },
    );
    expect(a.code, a.stdout).toBe(0);
    expect(a.json.revoked).toEqual([
      { serial: leaf["rev-a"]!.serial, deviceId: "rev-a", ca: "dev-ica" },
    ]);
    const b = st.run([
      "revoke",
      "--device-id",
      "rev-b",
      "--reason",
      "cessationOfOperation",
      "--json",
    ]);
    expect(b.code).toBe(0);
    expect((b.json.revoked as unknown[]).length).toBe(2);
    const log = st.run(["audit", "log", "--status", "REVOKED", "--json"]).json.rows as {
      deviceId: string;
      reason: string;
    }[];
    expect(log.map((r) => r.deviceId).sort()).toEqual(["rev-a", "rev-b", "rev-b"]);
    const ev = st.events().filter((e) => e.action === "issuance.revoke" && e.outcome === "ok");
    expect(ev).toHaveLength(3);
    expect(JSON.parse(ev[0]!.details)).toMatchObject({ reason: "keyCompromise" });
    // Refusals: named clearly, nothing changed.
    expect(
      st.run(["revoke", "--serial", leaf["rev-a"]!.serial, "--reason", "keyCompromise", "--json"])
        .json.error,
    ).toMatchObject({ code: "ISSUANCE_STATE" });
    expect(
      st.run(["revoke", "--serial", "00ff", "--reason", "keyCompromise", "--json"]).json.error,
    ).toMatchObject({ code: "ISSUANCE_UNKNOWN" });
    const bad = st.run([
      "revoke",
      "--serial",
      leaf["keep-c"]!.serial,
      "--reason",
      "certificateHold",
      "--json",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.json.error!.message).toContain("keyCompromise");
    expect(st.run(["revoke", "--reason", "keyCompromise"]).code).toBe(2);
  });

  it("signs CRLs in the token with reason codes and a growing number; openssl refuses the revoked leaf", () => {
    const one = join(st.hsm.dir, "crl1.pem");
    const two = join(st.hsm.dir, "crl2.pem");
    // A file that cannot be written is refused before the CRL is signed: no number is spent.
    const nowhere = join(st.hsm.dir, "no-such-folder", "crl0.pem");
    const refused = st.run(["crl", "--ca", "dev-ica", "--out", nowhere, "--json"]);
    expect(refused.code).toBe(1);
    expect(refused.json.error).toMatchObject({ code: "FILE_WRITE_FAILED" });
    expect(refused.json.error!.message).toContain(nowhere);
    expect(refused.json.error!.message).toContain("the folder does not exist");
    expect(st.events().filter((e) => e.action === "ca.crl")).toEqual([]);
    expect(st.run(["crl", "--ca", "dev-ica", "--out", one, "--json"]).json).toMatchObject({
      number: 1,
      entries: 3,
    });
    expect(st.run(["crl", "--ca", "dev-ica", "--out", two, "--json"]).json).toMatchObject({
      number: 2,
      entries: 3,
    });
    const text = openssl(["crl", "-in", two, "-noout", "-text", "-CAfile", chain.ca]);
    expect(text.out).toContain("verify OK");
    expect(text.out).toMatch(/X509v3 CRL Number: \s*\n\s*2/);
    expect(text.out).toContain(leaf["rev-a"]!.serial.toUpperCase());
    expect(text.out).toContain("Key Compromise");
    expect(text.out).toContain("Cessation Of Operation");
    expect(text.out).toContain("X509v3 Authority Key Identifier");
    const check = (id: string) =>
      openssl([
        "verify",
        "-crl_check",
        "-CRLfile",
        two,
        "-CAfile",
        chain.root,
        "-untrusted",
        chain.ca,
        leaf[id]!.pem,
      ]);
    const revoked = check("rev-a");
    expect(revoked.code).not.toBe(0);
    expect(revoked.out).toContain("certificate revoked");
    expect(check("keep-c").code).toBe(0);
    expect(st.run(["crl", "--ca", "nope", "--json"]).json.error).toMatchObject({
      code: "CA_UNKNOWN",
    });
    expect(st.run(["audit", "verify", "--json"]).json.ok).toBe(true);
  });
});
