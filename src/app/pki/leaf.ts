/**
 * Building device certificates fast: the to-be-signed certificate is assembled
 * with @peculiar/asn1-x509 from parts computed once per CA and profile (issuer
 * name, authority key identifier, signature algorithm, constant extensions),
 * signed through the Signer port, and wrapped.
 */
import { createHash } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import type { SubjectEntry } from "../../domain/csr-policy.js";
import { isEc } from "../../domain/keys.js";
import type { Signer } from "../../domain/ports.js";
import { keyAlgorithm } from "./signing-crypto.js";
import { x509 } from "./x509.js";

/** Turns WebCrypto r||s into the DER ECDSA-Sig-Value a certificate carries. */
const ecFormatter = new x509.AsnEcSignatureFormatter();

const ATTRIBUTE_OIDS: Record<string, string> = {
  CN: "2.5.4.3",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  C: "2.5.4.6",
  L: "2.5.4.7",
  ST: "2.5.4.8",
  serialNumber: "2.5.4.5",
  emailAddress: "1.2.840.113549.1.9.1",
  DC: "0.9.2342.19200300.100.1.25",
  UID: "0.9.2342.19200300.100.1.1",
};

const SIGNATURE_OIDS = {
  "ec-p256": "1.2.840.10045.4.3.2",
  "ec-p384": "1.2.840.10045.4.3.3",
  "rsa-2048": "1.2.840.113549.1.1.11",
  "rsa-3072": "1.2.840.113549.1.1.11",
} as const;

function extension(oid: string, critical: boolean, value: unknown): asn1.Extension {
  return new asn1.Extension({
    extnID: oid,
    critical,
    extnValue: new OctetString(AsnConvert.serialize(value)),
  });
}

/** What is computed once per issuing CA. */
export interface IssuerParts {
  signer: Signer;
  name: asn1.Name;
  algorithm: asn1.AlgorithmIdentifier;
  aki: asn1.Extension;
  ec: boolean;
  /** The signer's WebCrypto algorithm (ECDSA: curve and hash), for the signature formatter. */
  ecParams: ReturnType<typeof keyAlgorithm> | null;
}

/** Prepares a CA's fixed parts from its certificate DER and signer. */
export function issuerParts(caCertDer: Uint8Array, signer: Signer): IssuerParts {
  const ca = AsnConvert.parse(caCertDer, asn1.Certificate);
  const skiExt = ca.tbsCertificate.extensions?.find(
    (e) => e.extnID === asn1.id_ce_subjectKeyIdentifier,
  );
  const keyId = skiExt
    ? AsnConvert.parse(skiExt.extnValue.buffer, asn1.SubjectKeyIdentifier).buffer
    : createHash("sha1")
        .update(new Uint8Array(ca.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey))
        .digest().buffer;
  const ec = isEc(signer.key.keyType);
  return {
    signer,
    name: ca.tbsCertificate.subject,
    // ECDSA algorithm identifiers have absent parameters; RSA ones carry NULL.
    algorithm: new asn1.AlgorithmIdentifier({
      algorithm: SIGNATURE_OIDS[signer.key.keyType],
      parameters: ec ? undefined : null,
    }),
    aki: extension(
      asn1.id_ce_authorityKeyIdentifier,
      false,
      new asn1.AuthorityKeyIdentifier({ keyIdentifier: new asn1.KeyIdentifier(keyId) }),
    ),
    ec,
    ecParams: ec ? keyAlgorithm(signer) : null,
  };
}

const BASIC_CONSTRAINTS = extension(
  asn1.id_ce_basicConstraints,
  true,
  new asn1.BasicConstraints({ cA: false }),
);
const EKU_CLIENT_AUTH = extension(
  asn1.id_ce_extKeyUsage,
  false,
  new asn1.ExtendedKeyUsage([asn1.id_kp_clientAuth]),
);
const KU_EC = extension(
  asn1.id_ce_keyUsage,
  true,
  new asn1.KeyUsage(asn1.KeyUsageFlags.digitalSignature),
);
const KU_RSA = extension(
  asn1.id_ce_keyUsage,
  true,
  new asn1.KeyUsage(asn1.KeyUsageFlags.digitalSignature | asn1.KeyUsageFlags.keyEncipherment),
);

function name(entries: SubjectEntry[]): asn1.Name {
  return new asn1.Name(
    entries.map((e) => {
      const oid = ATTRIBUTE_OIDS[e.type] ?? e.type;
      // C is a PrintableString by X.520; emailAddress an IA5String; the rest UTF8String.
      const value =
        e.type === "C"
          ? new asn1.AttributeValue({ printableString: e.value })
          : e.type === "emailAddress" || e.type === "DC"
            ? new asn1.AttributeValue({ ia5String: e.value })
            : new asn1.AttributeValue({ utf8String: e.value });
      return new asn1.RelativeDistinguishedName([
        new asn1.AttributeTypeAndValue({ type: oid, value }),
      ]);
    }),
  );
}

export interface LeafParams {
  serialHex: string;
  subject: SubjectEntry[];
  /** DER SubjectPublicKeyInfo from the request. */
  spki: Uint8Array;
  /** True when the device key is RSA (adds keyEncipherment). */
  rsaKey: boolean;
  notBefore: Date;
  notAfter: Date;
  sans: { type: "uri" | "dns"; value: string }[];
}

/** Timings of the build and sign stages, in nanoseconds, when asked for. */
export interface LeafTimings {
  build: bigint;
  sign: bigint;
}

/** Builds and signs a device certificate; returns its DER. */
export async function buildLeaf(
  issuer: IssuerParts,
  p: LeafParams,
  timings?: LeafTimings,
): Promise<Uint8Array> {
  const t0 = timings ? process.hrtime.bigint() : 0n;
  const spki = AsnConvert.parse(p.spki, asn1.SubjectPublicKeyInfo);
  const ski = createHash("sha1").update(new Uint8Array(spki.subjectPublicKey)).digest();
  const extensions = [
    BASIC_CONSTRAINTS,
    p.rsaKey ? KU_RSA : KU_EC,
    EKU_CLIENT_AUTH,
    extension(asn1.id_ce_subjectKeyIdentifier, false, new asn1.SubjectKeyIdentifier(ski)),
    issuer.aki,
  ];
  if (p.sans.length > 0) {
    extensions.push(
      extension(
        asn1.id_ce_subjectAltName,
        false,
        new asn1.SubjectAlternativeName(
          p.sans.map(
            (s) =>
              new asn1.GeneralName(
                s.type === "uri" ? { uniformResourceIdentifier: s.value } : { dNSName: s.value },
              ),
          ),
        ),
      ),
    );
  }
  const tbs = new asn1.TBSCertificate({
    version: asn1.Version.v3,
    serialNumber: new Uint8Array(Buffer.from(p.serialHex, "hex")).buffer,
    signature: issuer.algorithm,
    issuer: issuer.name,
    validity: new asn1.Validity({ notBefore: p.notBefore, notAfter: p.notAfter }),
    subject: name(p.subject),
    subjectPublicKeyInfo: spki,
    extensions: new asn1.Extensions(extensions),
  });
  const tbsDer = new Uint8Array(AsnConvert.serialize(tbs));
  const t1 = timings ? process.hrtime.bigint() : 0n;
  const raw = await issuer.signer.sign(tbsDer);
  const t2 = timings ? process.hrtime.bigint() : 0n;
  const signatureValue = issuer.ec
    ? ecFormatter.toAsnSignature(issuer.ecParams!, raw.slice().buffer)
    : raw.slice().buffer;
  if (!signatureValue) throw new Error("the token returned an ECDSA signature of the wrong size");
  const cert = new asn1.Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm: issuer.algorithm,
    signatureValue,
  });
  const der = new Uint8Array(AsnConvert.serialize(cert));
  if (timings) {
    const t3 = process.hrtime.bigint();
    timings.build += t1 - t0 + (t3 - t2);
    timings.sign += t2 - t1;
  }
  return der;
}
