/**
 * Device certificates: the to-be-signed certificate is a template of parts
 * encoded once per CA by asn1js / asn1-schema (issuer name, signature
 * algorithm, authority key identifier) and constant extensions, with the few
 * per-device parts written as DER (der.ts) and spliced in; signed through the Signer port by the
 * caller, then wrapped. Split in encode / build / assemble so that building
 * can run in a worker thread while signing and wrapping stay with the
 * token's session in the station's thread.
 */
import { createHash } from "node:crypto";
import * as asn1js from "asn1js";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import type { SubjectEntry } from "../../domain/csr-policy.js";
import { LinesignError } from "../../domain/errors.js";
import { ATTRIBUTE_OIDS } from "../../domain/x500.js";
import { isEc, type KeyType } from "../../domain/keys.js";
import {
  assertDer,
  derElement,
  derOctetChars,
  derOid,
  derSequence,
  derTime,
  derUnsignedInteger,
  derUtf8String,
} from "./der.js";

const SIGNATURE_OIDS = {
  "ec-p256": "1.2.840.10045.4.3.2",
  "ec-p384": "1.2.840.10045.4.3.3",
  "rsa-2048": "1.2.840.113549.1.1.11",
  "rsa-3072": "1.2.840.113549.1.1.11",
} as const;

/** DER of an asn1-schema value. */
const der = (v: unknown): Uint8Array => new Uint8Array(AsnConvert.serialize(v));

/** DER of an asn1js block. */
const toDer = (b: asn1js.AsnType): Uint8Array => new Uint8Array(b.toBER());

/**
 * The bytes asn1js writes for an encoding it reads (the CA's name, as the
 * builder always re-encoded it), so a template holds exactly what building
 * the whole tree would write.
 */
function canonical(bytes: Uint8Array): Uint8Array {
  const parsed = asn1js.fromBER(bytes.slice().buffer);
  if (parsed.offset === -1) throw new Error(`cannot re-read DER: ${parsed.result.error}`);
  return toDer(parsed.result);
}

function extension(oid: string, critical: boolean, value: unknown): asn1.Extension {
  return new asn1.Extension({
    extnID: oid,
    critical,
    extnValue: new OctetString(AsnConvert.serialize(value)),
  });
}

/** A CA's parts of every certificate it signs, encoded once and reused (DER bytes). */
export interface IssuerEncoding {
  name: Uint8Array;
  algorithm: Uint8Array;
  aki: Uint8Array;
  /** ECDSA: the octets of r and of s in the token's r||s signature (the curve's size); else null. */
  ecHalf: number | null;
  /** The octets of every signature the CA's key makes: 2 x ecHalf, or the RSA modulus' length. */
  signatureOctets: number;
}

const SIGNATURE_OCTETS: Record<KeyType, number> = {
  "ec-p256": 64,
  "ec-p384": 96,
  "rsa-2048": 256,
  "rsa-3072": 384,
};

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
  return {
    name: canonical(der(ca.tbsCertificate.subject)),
    // ECDSA algorithm identifiers have absent parameters; RSA ones carry NULL.
    algorithm: canonical(
      der(
        new asn1.AlgorithmIdentifier({
          algorithm: SIGNATURE_OIDS[keyType],
          parameters: ec ? undefined : null,
        }),
      ),
    ),
    aki: canonical(
      der(
        extension(
          asn1.id_ce_authorityKeyIdentifier,
          false,
          new asn1.AuthorityKeyIdentifier({ keyIdentifier: new asn1.KeyIdentifier(keyId) }),
        ),
      ),
    ),
    ecHalf: ec ? SIGNATURE_OCTETS[keyType] / 2 : null,
    signatureOctets: SIGNATURE_OCTETS[keyType],
  };
}

/** A CA as the builder and the engine name it: its certificate is needed the first time only. */
export interface IssuerRef {
  fingerprint: string;
  certDer?: Uint8Array;
  keyType: KeyType;
}

/** The encodings of the CAs seen so far in one thread, by certificate fingerprint. */
export class IssuerEncodings {
  private readonly byFingerprint = new Map<string, IssuerEncoding>();

  of(ca: IssuerRef): IssuerEncoding {
    let enc = this.byFingerprint.get(ca.fingerprint);
    if (!enc) {
      if (!ca.certDer)
        throw new Error(`CA ${ca.fingerprint.slice(0, 16)} was never sent to this thread.`);
      enc = encodeIssuer(ca.certDer, ca.keyType);
      this.byFingerprint.set(ca.fingerprint, enc);
    }
    return enc;
  }
}

const constant = (e: asn1.Extension): Uint8Array => canonical(der(e));
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
/** version [0] EXPLICIT INTEGER 2 (v3). */
const VERSION_V3 = toDer(
  new asn1js.Constructed({
    idBlock: { tagClass: 3, tagNumber: 0 },
    value: [new asn1js.Integer({ value: 2 })],
  }),
);

/** The subject name: one attribute per RDN, in order. */
function nameDer(entries: SubjectEntry[]): Uint8Array {
  return derSequence(
    entries.map((e) => {
      // C is a PrintableString by X.520; emailAddress and DC IA5Strings; the rest UTF8String.
      const value =
        e.type === "C"
          ? derOctetChars(0x13, e.value)
          : e.type === "emailAddress" || e.type === "DC"
            ? derOctetChars(0x16, e.value)
            : derUtf8String(e.value);
      return derElement(0x31, [derSequence([derOid(ATTRIBUTE_OIDS[e.type] ?? e.type), value])]);
    }),
  );
}

/** A non-critical extension around its value's DER. */
const extensionDer = (oid: string, valueDer: Uint8Array): Uint8Array =>
  derSequence([derOid(oid), derElement(0x04, [valueDer])]);

/** GeneralName tags, IMPLICIT IA5String: uniformResourceIdentifier [6], dNSName [2]. */
const GENERAL_NAME_TAGS = { uri: 0x86, dns: 0x82 } as const;

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
 * Builds the to-be-signed certificate from a template: the parts encoded
 * once per CA (issuer name, algorithm, AKI) and the constant extensions are
 * kept as DER and spliced between the few parts encoded per device (serial,
 * validity, subject, SPKI, SKI, SAN). The SPKI is the station's own encoding
 * of the device's key, never the request's bytes.
 */
export function buildTbs(issuer: IssuerEncoding, p: LeafParams): Uint8Array {
  const ski = createHash("sha1").update(p.publicKeyBits).digest();
  const extensions: Uint8Array[] = [
    BASIC_CONSTRAINTS,
    p.rsaKey ? KU_RSA : KU_EC,
    EKU_CLIENT_AUTH,
    extensionDer(asn1.id_ce_subjectKeyIdentifier, derElement(0x04, [ski])),
    issuer.aki,
  ];
  if (p.sans.length > 0)
    extensions.push(
      extensionDer(
        asn1.id_ce_subjectAltName,
        derSequence(p.sans.map((s) => derOctetChars(GENERAL_NAME_TAGS[s.type], s.value))),
      ),
    );
  return derSequence([
    VERSION_V3,
    // newSerialHex's bytes are positive and minimal as they stand.
    derElement(0x02, [Buffer.from(p.serialHex, "hex")]),
    issuer.algorithm,
    issuer.name,
    derSequence([derTime(p.notBefore), derTime(p.notAfter)]),
    nameDer(p.subject),
    p.spki,
    derElement(0xa3, [derSequence(extensions)]),
  ]);
}

/**
 * Wraps a signed TBS into the certificate; `signature` as the token gives it (r||s for ECDSA).
 * @throws LinesignError HSM_ERROR when the signature is not of the CA key's length (the
 *   key store refuses such an answer first; this holds for any signer)
 */
export function assembleCertificate(
  issuer: IssuerEncoding,
  tbsDer: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  const half = issuer.ecHalf;
  if (signature.length !== issuer.signatureOctets)
    throw new LinesignError(
      "HSM_ERROR",
      `The CA's key returned a signature of ${signature.length} octets; its signatures are ${issuer.signatureOctets} octets. ` +
        "No certificate was made with it. Check the HSM and its PKCS#11 module; the station signs again once it answers rightly.",
      {
        details: {
          returnedOctets: signature.length,
          expectedOctets: issuer.signatureOctets,
        },
      },
    );
  // ECDSA: the DER ECDSA-Sig-Value (RFC 5480 / X9.62), SEQUENCE { r INTEGER, s INTEGER }.
  const value =
    half === null
      ? signature
      : derSequence([
          derUnsignedInteger(signature.subarray(0, half)),
          derUnsignedInteger(signature.subarray(half)),
        ]);
  const cert = derSequence([
    tbsDer,
    issuer.algorithm,
    // BIT STRING: no unused bits, then the signature.
    derElement(0x03, [Uint8Array.of(0), value]),
  ]);
  // Nothing leaves the station that a strict DER reader would refuse.
  assertDer(cert, "a device certificate");
  return cert;
}
