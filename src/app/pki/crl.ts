/**
 * CRLs built from @peculiar/asn1-x509's structures (RFC 5280 5.1): v2, the
 * issuer's name as its certificate spells it, the issuer's own subject key
 * identifier as authority key identifier, a CRL number, and per entry a
 * reason code only when there is one to give (unspecified is left out, as
 * RFC 5280 5.3.1 asks), so no entry carries an empty extension list. Signed
 * through the Signer port, wherever the CA key lives.
 */
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import type { Signer } from "../../domain/ports.js";
import { isEc } from "../../domain/keys.js";
import { assertDer } from "./der.js";
import { issuerKeyIdentifier, signatureAlgorithmFor } from "./certificates.js";
import { keyAlgorithm } from "./signing-crypto.js";
import { x509 } from "./x509.js";

const ecFormatter = new x509.AsnEcSignatureFormatter();

export interface CrlEntry {
  serialHex: string;
  revokedAt: Date;
  /** RFC 5280 CRLReason code; 0 (unspecified) is written as no reason at all. */
  reason: number;
}

export interface CrlParams {
  issuer: x509.X509Certificate;
  signer: Signer;
  thisUpdate: Date;
  nextUpdate: Date;
  number: number;
  entries: CrlEntry[];
}

function extension(oid: string, value: unknown): asn1.Extension {
  return new asn1.Extension({
    extnID: oid,
    critical: false,
    extnValue: new OctetString(AsnConvert.serialize(value)),
  });
}

/** Builds and signs a CRL; returns its DER. */
export async function buildCrl(p: CrlParams): Promise<Uint8Array> {
  const issuerCert = AsnConvert.parse(p.issuer.rawData, asn1.Certificate);
  const algorithm = signatureAlgorithmFor(p.signer.key.keyType);
  const revoked = p.entries.map(
    (e) =>
      new asn1.RevokedCertificate({
        userCertificate: new Uint8Array(Buffer.from(e.serialHex, "hex")).buffer,
        revocationDate: new asn1.Time(e.revokedAt),
        ...(e.reason !== 0
          ? {
              crlEntryExtensions: new asn1.Extensions([
                extension(asn1.id_ce_cRLReasons, new asn1.CRLReason(e.reason)),
              ]),
            }
          : {}),
      }),
  );
  const tbs = new asn1.TBSCertList({
    version: asn1.Version.v2,
    signature: algorithm,
    issuer: issuerCert.tbsCertificate.subject,
    thisUpdate: new asn1.Time(p.thisUpdate),
    nextUpdate: new asn1.Time(p.nextUpdate),
    // RFC 5280: with nothing revoked the list is absent, not empty.
    ...(revoked.length > 0 ? { revokedCertificates: revoked } : {}),
    crlExtensions: new asn1.Extensions([
      extension(
        asn1.id_ce_authorityKeyIdentifier,
        new asn1.AuthorityKeyIdentifier({
          keyIdentifier: new asn1.KeyIdentifier(issuerKeyIdentifier(issuerCert)),
        }),
      ),
      extension(asn1.id_ce_cRLNumber, new asn1.CRLNumber(p.number)),
    ]),
  });
  const tbsDer = new Uint8Array(AsnConvert.serialize(tbs));
  const raw = await p.signer.sign(tbsDer);
  const signature = isEc(p.signer.key.keyType)
    ? ecFormatter.toAsnSignature(keyAlgorithm(p.signer), raw.slice().buffer)
    : raw.slice().buffer;
  if (!signature) throw new Error("the token returned an ECDSA signature of the wrong size");
  const der = new Uint8Array(
    AsnConvert.serialize(
      new asn1.CertificateList({ tbsCertList: tbs, signatureAlgorithm: algorithm, signature }),
    ),
  );
  assertDer(der, "a CRL");
  return der;
}
