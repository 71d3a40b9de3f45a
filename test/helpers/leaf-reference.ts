/**
 * The device-certificate builder as it was before templates (the whole
 * to-be-signed tree built with asn1js for each device, and built again around
 * the signature), kept only as the reference the template's bytes are compared
 * with (test/unit/app/leaf-template.test.ts).
 */
import { createHash } from "node:crypto";
import * as asn1js from "asn1js";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import type { SubjectEntry } from "../../src/domain/csr-policy.js";
import { ATTRIBUTE_OIDS } from "../../src/domain/x500.js";
import { isEc, type KeyType } from "../../src/domain/keys.js";
import { keyAlgorithmFor } from "../../src/app/pki/signing-crypto.js";
import { x509 } from "../../src/app/pki/x509.js";
import { assertDer } from "../../src/app/pki/der.js";

/** Turns WebCrypto r||s into the DER ECDSA-Sig-Value a certificate carries. */
const ecFormatter = new x509.AsnEcSignatureFormatter();

const SIGNATURE_OIDS = {
  "ec-p256": "1.2.840.10045.4.3.2",
  "ec-p384": "1.2.840.10045.4.3.3",
  "rsa-2048": "1.2.840.113549.1.1.11",
  "rsa-3072": "1.2.840.113549.1.1.11",
} as const;

/** An asn1js block from DER (parts encoded once, or taken from the request as they are). */
function block(der: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(der.slice().buffer);
  if (parsed.offset === -1) throw new Error(`cannot re-read DER: ${parsed.result.error}`);
  return parsed.result;
}

function extension(oid: string, critical: boolean, value: unknown): asn1.Extension {
  return new asn1.Extension({
    extnID: oid,
    critical,
    extnValue: new OctetString(AsnConvert.serialize(value)),
  });
}

/** A CA's parts of every certificate it signs, encoded once and reused. */
export interface IssuerEncoding {
  name: asn1js.AsnType;
  algorithm: asn1js.AsnType;
  aki: asn1js.AsnType;
  ec: boolean;
  /** The CA key's WebCrypto algorithm (ECDSA: curve and hash), for the signature formatter. */
  ecParams: ReturnType<typeof keyAlgorithmFor> | null;
}

/** Encodes a CA's fixed parts from its certificate DER and key type. */
export function encodeIssuer(caCertDer: Uint8Array, keyType: KeyType): IssuerEncoding {
  const ca = AsnConvert.parse(caCertDer, asn1.Certificate);
  const skiExt = ca.tbsCertificate.extensions?.find(
    (e) => e.extnID === asn1.id_ce_subjectKeyIdentifier,
  );
  const keyId = skiExt
    ? AsnConvert.parse(skiExt.extnValue.buffer, asn1.SubjectKeyIdentifier).buffer
    : createHash("sha1")
        .update(new Uint8Array(ca.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey))
        .digest().buffer;
  const ec = isEc(keyType);
  const der = (v: unknown): Uint8Array => new Uint8Array(AsnConvert.serialize(v));
  return {
    name: block(der(ca.tbsCertificate.subject)),
    // ECDSA algorithm identifiers have absent parameters; RSA ones carry NULL.
    algorithm: block(
      der(
        new asn1.AlgorithmIdentifier({
          algorithm: SIGNATURE_OIDS[keyType],
          parameters: ec ? undefined : null,
        }),
      ),
    ),
    aki: block(
      der(
        extension(
          asn1.id_ce_authorityKeyIdentifier,
          false,
          new asn1.AuthorityKeyIdentifier({ keyIdentifier: new asn1.KeyIdentifier(keyId) }),
        ),
      ),
    ),
    ec,
    ecParams: ec ? keyAlgorithmFor(keyType) : null,
  };
}

const constant = (e: asn1.Extension): asn1js.AsnType =>
  block(new Uint8Array(AsnConvert.serialize(e)));
const BASIC_CONSTRAINTS = constant(
  extension(asn1.id_ce_basicConstraints, true, new asn1.BasicConstraints({ cA: false })),
);
const EKU_CLIENT_AUTH = constant(
  extension(asn1.id_ce_extKeyUsage, false, new asn1.ExtendedKeyUsage([asn1.id_kp_clientAuth])),
);
const KU_EC = constant(
  extension(asn1.id_ce_keyUsage, true, new asn1.KeyUsage(asn1.KeyUsageFlags.digitalSignature)),
);
const KU_RSA = constant(
  extension(
    asn1.id_ce_keyUsage,
    true,
    new asn1.KeyUsage(asn1.KeyUsageFlags.digitalSignature | asn1.KeyUsageFlags.keyEncipherment),
  ),
);

/** The subject name: one attribute per RDN, in order. */
function nameAsn(entries: SubjectEntry[]): asn1js.Sequence {
  return new asn1js.Sequence({
    value: entries.map((e) => {
      // C is a PrintableString by X.520; emailAddress and DC IA5Strings; the rest UTF8String.
      const value =
        e.type === "C"
          ? new asn1js.PrintableString({ value: e.value })
          : e.type === "emailAddress" || e.type === "DC"
            ? new asn1js.IA5String({ value: e.value })
            : new asn1js.Utf8String({ value: e.value });
      const oid = new asn1js.ObjectIdentifier({ value: ATTRIBUTE_OIDS[e.type] ?? e.type });
      return new asn1js.Set({ value: [new asn1js.Sequence({ value: [oid, value] })] });
    }),
  });
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050; whole seconds. */
function timeAsn(d: Date): asn1js.UTCTime | asn1js.GeneralizedTime {
  const whole = new Date(Math.floor(d.getTime() / 1000) * 1000);
  return whole.getUTCFullYear() < 2050
    ? new asn1js.UTCTime({ valueDate: whole })
    : new asn1js.GeneralizedTime({ valueDate: whole });
}

function simpleExtension(oid: string, valueDer: ArrayBuffer): asn1js.Sequence {
  return new asn1js.Sequence({
    value: [
      new asn1js.ObjectIdentifier({ value: oid }),
      new asn1js.OctetString({ valueHex: valueDer }),
    ],
  });
}

export interface LeafParams {
  serialHex: string;
  subject: SubjectEntry[];
  /** The device key's SubjectPublicKeyInfo as the station encoded it (public-key.ts). */
  spki: Uint8Array;
  /** The subjectPublicKey bits inside it (the subject key identifier is their SHA-1). */
  publicKeyBits: Uint8Array;
  /** True when the device key is RSA (adds keyEncipherment). */
  rsaKey: boolean;
  notBefore: Date;
  notAfter: Date;
  sans: { type: "uri" | "dns"; value: string }[];
}

/**
 * Builds the to-be-signed certificate. Parts encoded once per CA (issuer
 * name, algorithm, AKI) and the constant extensions are reused; the SPKI is
 * the station's own encoding of the device's key, never the request's bytes.
 */
export function buildTbs(
  issuer: IssuerEncoding,
  p: LeafParams,
): { tbs: asn1js.Sequence; der: Uint8Array } {
  const ski = createHash("sha1").update(p.publicKeyBits).digest();
  const extensions: asn1js.AsnType[] = [
    BASIC_CONSTRAINTS,
    p.rsaKey ? KU_RSA : KU_EC,
    EKU_CLIENT_AUTH,
    simpleExtension(
      asn1.id_ce_subjectKeyIdentifier,
      new asn1js.OctetString({ valueHex: ski }).toBER(),
    ),
    issuer.aki,
  ];
  if (p.sans.length > 0) {
    const san = new asn1.SubjectAlternativeName(
      p.sans.map(
        (s) =>
          new asn1.GeneralName(
            s.type === "uri" ? { uniformResourceIdentifier: s.value } : { dNSName: s.value },
          ),
      ),
    );
    extensions.push(simpleExtension(asn1.id_ce_subjectAltName, AsnConvert.serialize(san)));
  }
  const tbs = new asn1js.Sequence({
    value: [
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 0 },
        value: [new asn1js.Integer({ value: 2 })],
      }),
      new asn1js.Integer({ valueHex: Buffer.from(p.serialHex, "hex") }),
      issuer.algorithm,
      issuer.name,
      new asn1js.Sequence({ value: [timeAsn(p.notBefore), timeAsn(p.notAfter)] }),
      nameAsn(p.subject),
      block(p.spki),
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 3 },
        value: [new asn1js.Sequence({ value: extensions })],
      }),
    ],
  });
  return { tbs, der: new Uint8Array(tbs.toBER()) };
}

/** Wraps a signed TBS into the certificate; `signature` in WebCrypto form (r||s for ECDSA). */
export function assembleCertificate(
  issuer: IssuerEncoding,
  tbs: asn1js.Sequence,
  signature: Uint8Array,
): Uint8Array {
  const value = issuer.ec
    ? ecFormatter.toAsnSignature(issuer.ecParams!, signature.slice().buffer)
    : signature.slice().buffer;
  if (!value) throw new Error("the token returned an ECDSA signature of the wrong size");
  const der = new Uint8Array(
    new asn1js.Sequence({
      value: [tbs, issuer.algorithm, new asn1js.BitString({ valueHex: value })],
    }).toBER(),
  );
  // Nothing leaves the station that a strict DER reader would refuse.
  assertDer(der, "a device certificate");
  return der;
}
