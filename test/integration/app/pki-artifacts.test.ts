/**
 * Device certificates and CRLs as strict readers see them, and issuer
 * validity: nothing is signed under an issuer outside its validity (`ca
 * create --root` and the verification certificate are refused with
 * CA_EXPIRED, recorded, and leave no CA behind; the station's clock is moved
 * past the issuer's end).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { REVOCATION_REASONS } from "../../../src/domain/revocation.js";
import { pemOfDer } from "../../../src/app/pki/certificates.js";
import { deviceKey, makeCsr, type DeviceKeyType } from "../../../fixtures/csr-factory.js";
import { openssl } from "../../helpers/cli.js";
import { expectCanonicalCertificate, expectCanonicalCrl } from "../../helpers/der.js";
import { engineStation } from "../../helpers/engine.js";

const dir = mkdtempSync(join(tmpdir(), "pki-artifacts-"));
const write = (name: string, text: string): string => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};
const keyId = (list: asn1.Extension[] | undefined, oid: string): string => {
  const v = list!.find((e) => e.extnID === oid)!.extnValue.buffer;
  const id =
    oid === asn1.id_ce_subjectKeyIdentifier
      ? AsnConvert.parse(v, asn1.SubjectKeyIdentifier).buffer
      : AsnConvert.parse(v, asn1.AuthorityKeyIdentifier).keyIdentifier!.buffer;
  return Buffer.from(id).toString("hex");
};

let s: Station;

async function refusal(p: Promise<unknown>): Promise<LinesignError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

beforeAll(async () => {
  s = (await engineStation()).open();
});
afterAll(async () => s?.close());

describe("device certificates and CRLs", () => {
  it("are canonical DER for each device key type, and a CRL with every reason decodes strictly", async () => {
    const root = write("root.pem", await s.ca.export("dev-root", false));
    const ica = write("ica.pem", await s.ca.export("dev-ica", false));
    const icaCert = expectCanonicalCertificate(await s.ca.export("dev-ica", false));
    const keys: DeviceKeyType[] = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"];
    for (const k of keys) {
      const out = await s.issuance.issue({
        csr: makeCsr({ key: deviceKey(k), subject: [["CN", `artifact-${k}`]] }),
        origin: "test",
      });
      const cert = expectCanonicalCertificate(out.issuance.certDer);
      expect(keyId(cert.tbsCertificate.extensions, asn1.id_ce_authorityKeyIdentifier)).toBe(
        keyId(icaCert.tbsCertificate.extensions, asn1.id_ce_subjectKeyIdentifier),
      );
      const leaf = write(`${k}.pem`, pemOfDer(out.issuance.certDer));
      expect(openssl(["verify", "-CAfile", root, "-untrusted", ica, leaf]).out, k).toContain(
        ": OK",
      );
    }
    const revoked = new Map<string, number>();
    for (const [name, code] of Object.entries(REVOCATION_REASONS)) {
      const out = await s.issuance.issue({
        csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `revoked-${name}`]] }),
        origin: "test",
      });
      await s.revocation.revoke(
        { serial: out.issuance.serial },
        name as keyof typeof REVOCATION_REASONS,
      );
      revoked.set(out.issuance.serial, code);
    }
    const result = await s.revocation.crl("dev-ica");
    const crl = expectCanonicalCrl(result.pem);
    expect(keyId(crl.tbsCertList.crlExtensions, asn1.id_ce_authorityKeyIdentifier)).toBe(
      keyId(icaCert.tbsCertificate.extensions, asn1.id_ce_subjectKeyIdentifier),
    );
    const entries = crl.tbsCertList.revokedCertificates ?? [];
    expect(entries).toHaveLength(revoked.size);
    for (const e of entries) {
      const want = revoked.get(Buffer.from(e.userCertificate).toString("hex"));
      expect(want).toBeDefined();
      if (want === 0) {
        // RFC 5280 5.3.1: unspecified is written as no reason code, and never as an empty list.
        expect(e.crlEntryExtensions).toBeUndefined();
      } else {
        const r = e.crlEntryExtensions!.find((x) => x.extnID === asn1.id_ce_cRLReasons)!;
        expect(AsnConvert.parse(r.extnValue.buffer, asn1.CRLReason).reason).toBe(want);
      }
    }
    const crlFile = write("every-reason.crl.pem", result.pem);
    expect(openssl(["crl", "-in", crlFile, "-noout", "-CAfile", ica]).out).toContain("verify OK");
    const kept = await s.issuance.issue({
      csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "artifact-kept"]] }),
      origin: "test",
    });
    const leaf = write("check.pem", pemOfDer(kept.issuance.certDer));
    expect(
      openssl([
        "verify",
        "-crl_check",
        "-CRLfile",
        crlFile,
        "-CAfile",
        root,
        "-untrusted",
        ica,
        leaf,
      ]).out,
    ).toContain(": OK");
  });
});

describe("an expired issuer", () => {
  it("signs no CA and no verification certificate, and says so in the log", async () => {
    await s.ca.create({
      label: "short-root",
      keyType: "ec-p256",
      subject: "CN=Short Root",
      signing: { mode: "self-signed" },
      days: 1,
    });
    const real = s.ctx.clock.now;
    const later = new Date(Date.now() + 2 * 86_400_000);
    s.ctx.clock.now = () => later;
    try {
      const e = await refusal(
        s.ca.create({
          label: "late-ica",
          keyType: "ec-p256",
          subject: "CN=Late ICA",
          signing: { mode: "root", rootLabel: "short-root" },
        }),
      );
      expect(e.code).toBe("CA_EXPIRED");
      expect(e.message).toContain('CA "short-root" is outside its validity');
      expect(s.ctx.store.getCa("late-ica")).toBeNull();
      const ev = [...s.ctx.store.events()].at(-1)!;
      expect(ev).toMatchObject({ action: "ca.create", outcome: "refused", code: "CA_EXPIRED" });
      const v = await refusal(
        s.ca.verificationCertificate(
          "short-root",
          "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
      );
      expect(v.code).toBe("CA_EXPIRED");
      expect([...s.ctx.store.events()].at(-1)!).toMatchObject({
        action: "ca.verification-cert",
        outcome: "refused",
        code: "CA_EXPIRED",
      });
    } finally {
      s.ctx.clock.now = real;
    }
    // Within its validity the same root signs.
    const ok = await s.ca.create({
      label: "timely-ica",
      keyType: "ec-p256",
      subject: "CN=Timely ICA",
      signing: { mode: "root", rootLabel: "short-root" },
    });
    expect(new Date(ok.ca.notBefore!) < new Date(ok.ca.notAfter!)).toBe(true);
  });
});
