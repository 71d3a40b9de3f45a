/**
 * Canonical-DER checks for what the station produces: the strict reader
 * (X.690 DER rules), then an independent re-encoding by @peculiar/asn1-schema
 * from the decoded structure, which must give the same bytes, plus the RFC
 * 5280 rules a re-encoding cannot see (no empty extension lists).
 */
import "reflect-metadata";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { Certificate, CertificateList } from "@peculiar/asn1-x509";
import { expect } from "vitest";
import { readDer } from "../../src/app/pki/der.js";

function pemToDer(bytes: Uint8Array | string): Uint8Array {
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("latin1");
  if (!text.includes("-----BEGIN")) return bytes as Uint8Array;
  const body = text.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, "");
  return new Uint8Array(Buffer.from(body, "base64"));
}

/** Every certificate in a PEM bundle (or the one DER certificate). */
export function pemCertificates(text: string): Uint8Array[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map((m) =>
    pemToDer(m[0]),
  );
}

function reencodes(der: Uint8Array, schema: "certificate" | "crl"): void {
  const decoded =
    schema === "certificate"
      ? AsnConvert.parse(der, Certificate)
      : AsnConvert.parse(der, CertificateList);
  const again = new Uint8Array(AsnConvert.serialize(decoded));
  expect(Buffer.from(again).toString("hex")).toBe(Buffer.from(der).toString("hex"));
}

/** Asserts a certificate (PEM or DER) is canonical DER with no empty extension list. */
export function expectCanonicalCertificate(input: Uint8Array | string): Certificate {
  const der = pemToDer(input);
  expect(() => readDer(der)).not.toThrow();
  reencodes(der, "certificate");
  const cert = AsnConvert.parse(der, Certificate);
  const exts = cert.tbsCertificate.extensions;
  if (exts) expect(exts.length).toBeGreaterThan(0);
  return cert;
}

/** Asserts a CRL (PEM or DER) is canonical DER, with no empty extension list anywhere. */
export function expectCanonicalCrl(input: Uint8Array | string): CertificateList {
  const der = pemToDer(input);
  expect(() => readDer(der)).not.toThrow();
  reencodes(der, "crl");
  const crl = AsnConvert.parse(der, CertificateList);
  const exts = crl.tbsCertList.crlExtensions;
  if (exts) expect(exts.length).toBeGreaterThan(0);
  for (const entry of crl.tbsCertList.revokedCertificates ?? []) {
    if (entry.crlEntryExtensions) expect(entry.crlEntryExtensions.length).toBeGreaterThan(0);
  }
  return crl;
}

/** A request's DER from PEM or DER (for comparing SPKIs). */
export function csrInfo(input: Uint8Array): CertificationRequest {
  return AsnConvert.parse(pemToDer(input), CertificationRequest);
}
