/**
 * A device's public key, decoded from the request's SubjectPublicKeyInfo,
 * checked, and encoded again by the station (RFC 5480 for EC, RFC 3279 for
 * RSA): the certificate carries this encoding, never the request's bytes, and
 * key reuse is judged on it, so one key has one encoding whatever the device
 * sent. Whether a point lies on its curve is left to node's crypto (OpenSSL).
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { LinesignError } from "../../domain/errors.js";
import type { DeviceKey } from "../../domain/csr-policy.js";
import * as asn1js from "asn1js";
import {
  contentOf,
  DerError,
  derSequence,
  isUniversal,
  oidOf,
  readDer,
  type DerNode,
} from "./der.js";

export const ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
export const ID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1";

/** Largest RSA modulus the station reads at all; profiles set their own bound below it. */
export const MAX_RSA_BITS = 16384;

/** Named curves whose points the station can check: field size in bytes, name in node's crypto. */
const CURVES: Record<
  string,
  { name: string; bytes: number; station?: "P-256" | "P-384" | "P-521"; jwk?: string }
> = {
  "1.2.840.10045.3.1.7": { name: "P-256", bytes: 32, station: "P-256", jwk: "P-256" },
  "1.3.132.0.34": { name: "P-384", bytes: 48, station: "P-384", jwk: "P-384" },
  "1.3.132.0.35": { name: "P-521", bytes: 66, station: "P-521", jwk: "P-521" },
  "1.2.840.10045.3.1.1": { name: "P-192", bytes: 24 },
  "1.3.132.0.33": { name: "P-224", bytes: 28 },
  "1.3.132.0.10": { name: "secp256k1", bytes: 32 },
};
const CURVE_BY_SIZE: Record<number, string> = { 65: "P-256", 97: "P-384", 133: "P-521" };

/** Algorithms that exist only for key agreement: such a key can sign nothing, not even its request. */
const AGREEMENT_ONLY: Record<string, string> = {
  "1.3.101.110": "X25519",
  "1.3.101.111": "X448",
  "1.2.840.10046.2.1": "Diffie-Hellman",
};
const OTHER_NAMES: Record<string, string> = {
  "1.3.101.112": "Ed25519",
  "1.3.101.113": "Ed448",
  "1.2.840.10040.4.1": "DSA",
  "1.2.840.113549.1.1.10": "RSASSA-PSS",
};

/** A decoded key: what policy sees, and the station's own encoding of it. */
export interface DecodedKey {
  key: DeviceKey;
  /** The SPKI as the station encodes it (for the certificate, key reuse and the signature check). */
  spki: Uint8Array;
  /** The subjectPublicKey bits inside it (the subject key identifier is their SHA-1). */
  publicKeyBits: Uint8Array;
  /**
   * The key as node's crypto holds it, when decoding already made it (an EC
   * key, to check its point): the signature check reuses it instead of
   * decoding the SPKI again (OpenSSL's decoder is the costly part of both).
   */
  publicKey?: KeyObject;
}

function invalid(why: string, details: Record<string, unknown> = {}): LinesignError {
  return new LinesignError("KEY_INVALID", `The device's public key is not a valid key: ${why}.`, {
    details,
  });
}

function malformed(why: string): LinesignError {
  return new LinesignError(
    "CSR_MALFORMED",
    `The request is not a valid PKCS#10 CSR: its public key is not DER: ${why}.`,
  );
}

const unsigned = (bytes: Uint8Array): bigint =>
  bytes.length === 0 ? 0n : BigInt("0x" + Buffer.from(bytes).toString("hex"));
const bitLength = (v: bigint): number => (v === 0n ? 0 : v.toString(2).length);

function encodeSpki(algorithm: AlgorithmIdentifier, bits: Uint8Array): Uint8Array {
  return new Uint8Array(
    AsnConvert.serialize(
      new SubjectPublicKeyInfo({ algorithm, subjectPublicKey: bits.slice().buffer }),
    ),
  );
}

/** An EC key's AlgorithmIdentifier per curve, encoded once (the curve OID's DER is the key). */
const ecAlgorithms = new Map<string, Uint8Array>();

/**
 * The SPKI of an EC point under `params` (the curve OID's DER): the
 * AlgorithmIdentifier asn1-schema encoded once for the curve, and the point's
 * BIT STRING by asn1js, in one SEQUENCE; the bytes encodeSpki writes.
 */
function encodeEcSpki(params: Uint8Array, point: Uint8Array): Uint8Array {
  const id = Buffer.from(params).toString("latin1");
  let algorithm = ecAlgorithms.get(id);
  if (!algorithm) {
    algorithm = new Uint8Array(
      AsnConvert.serialize(
        new AlgorithmIdentifier({ algorithm: ID_EC_PUBLIC_KEY, parameters: params.slice().buffer }),
      ),
    );
    if (ecAlgorithms.size < 16) ecAlgorithms.set(id, algorithm);
  }
  return derSequence([
    algorithm,
    new Uint8Array(new asn1js.BitString({ valueHex: point }).toBER()),
  ]);
}

/**
 * The key as node's crypto holds it. The station's own curves go in as JWK
 * coordinates, which OpenSSL reads several times faster than a DER SPKI; it
 * refuses a point off the curve or a coordinate outside the field either way.
 */
function ecKeyObject(curve: { jwk?: string; bytes: number }, point: Uint8Array, spki: Uint8Array) {
  if (!curve.jwk) return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
  return createPublicKey({
    key: {
      kty: "EC",
      crv: curve.jwk,
      x: b64(point.subarray(1, 1 + curve.bytes)),
      y: b64(point.subarray(1 + curve.bytes)),
    },
    format: "jwk",
  });
}

/**
 * Decodes and checks the SubjectPublicKeyInfo at `node` of the DER `b`
 * (already read strictly). Throws KEY_INVALID naming what is wrong, or
 * CSR_MALFORMED when the RSA key inside is not DER. Keys of algorithms the
 * station does not issue for come back as kind "other" (refused by policy).
 */
export function decodePublicKey(b: Uint8Array, node: DerNode): DecodedKey {
  const [alg, bitString, ...extra] = node.children;
  if (!isUniversal(alg, 16) || !isUniversal(bitString, 3) || extra.length > 0)
    throw malformed("a SubjectPublicKeyInfo is an AlgorithmIdentifier and a BIT STRING");
  const [oidNode, params, ...more] = alg.children;
  if (!isUniversal(oidNode, 6) || more.length > 0)
    throw malformed("an AlgorithmIdentifier is an OID and optional parameters");
  const oid = oidOf(b, oidNode);
  const raw = contentOf(b, bitString);
  const original = b.slice(node.start, node.end);
  if (AGREEMENT_ONLY[oid])
    throw invalid(
      `it is an ${AGREEMENT_ONLY[oid]} key, which is for key agreement only and cannot sign (not its request, not a TLS handshake)`,
      { algorithm: oid },
    );
  if (oid !== ID_EC_PUBLIC_KEY && oid !== ID_RSA_ENCRYPTION) {
    const name = OTHER_NAMES[oid] ?? `key algorithm ${oid}`;
    return { key: { kind: "other", name }, spki: original, publicKeyBits: raw.slice(1) };
  }
  if (raw[0] !== 0) throw invalid(`its BIT STRING has ${raw[0]} unused bits; a key has none`);
  const bits = raw.subarray(1);
  return oid === ID_EC_PUBLIC_KEY ? decodeEc(b, params, bits, original) : decodeRsa(params, bits);
}

function other(name: string, original: Uint8Array, bits: Uint8Array): DecodedKey {
  return { key: { kind: "other", name }, spki: original, publicKeyBits: bits };
}

function decodeEc(
  b: Uint8Array,
  params: DerNode | undefined,
  point: Uint8Array,
  original: Uint8Array,
): DecodedKey {
  if (!params) return other("EC key without a named curve", original, point);
  // RFC 5480 allows only a named curve.
  if (params.cls === 0 && params.tag === 16)
    return other("EC key with explicit curve parameters", original, point);
  if (!isUniversal(params, 6))
    return other("EC key with implicit curve parameters", original, point);
  const curveOid = oidOf(b, params);
  const curve = CURVES[curveOid];
  if (!curve) return other(`EC curve ${curveOid}`, original, point);
  const form = point[0];
  if (point.length === 1 && form === 0x00) throw invalid("it is the point at infinity");
  if (form === 0x02 || form === 0x03)
    throw invalid(
      `its ${curve.name} point is in compressed form; AWS IoT and small TLS stacks need the uncompressed form (04, x, y)`,
    );
  if (form === 0x06 || form === 0x07)
    throw invalid(`its ${curve.name} point is in hybrid form, which RFC 5480 forbids`);
  if (form !== 0x04)
    throw invalid(
      `its ${curve.name} point starts with ${form === undefined ? "nothing" : `0x${form.toString(16).padStart(2, "0")}`}, not 04 (uncompressed)`,
    );
  const want = 1 + 2 * curve.bytes;
  if (point.length !== want) {
    const looksLike = CURVE_BY_SIZE[point.length];
    throw invalid(
      `its point is ${point.length} bytes, but a ${curve.name} point is ${want}` +
        (looksLike ? ` (a ${looksLike} point under the ${curve.name} curve identifier)` : ""),
    );
  }
  const spki = encodeEcSpki(b.subarray(params.start, params.end), point);
  let publicKey: KeyObject;
  try {
    // OpenSSL refuses a point not on the curve, or with a coordinate outside the field.
    publicKey = ecKeyObject(curve, point, spki);
  } catch {
    throw invalid(`its point is not on the curve ${curve.name}`);
  }
  const key: DeviceKey = curve.station
    ? { kind: "ec", curve: curve.station }
    : { kind: "other", name: `EC ${curve.name}` };
  return { key, spki, publicKeyBits: point, publicKey };
}

function decodeRsa(params: DerNode | undefined, bits: Uint8Array): DecodedKey {
  // RFC 3279: the parameters are NULL. Left out, the key is the same key and is encoded with NULL.
  if (params && !isUniversal(params, 5))
    throw invalid("its rsaEncryption algorithm carries parameters other than NULL");
  let rsa: DerNode;
  try {
    rsa = readDer(bits);
  } catch (e) {
    if (e instanceof DerError) throw malformed(`the RSA key holds ${e.message}`);
    throw e;
  }
  const [nNode, eNode, ...extra] = rsa.children;
  if (!isUniversal(rsa, 16) || !isUniversal(nNode, 2) || !isUniversal(eNode, 2) || extra.length)
    throw invalid("an RSA public key is a SEQUENCE of the modulus and the exponent");
  const nBytes = contentOf(bits, nNode);
  const eBytes = contentOf(bits, eNode);
  if ((nBytes[0]! & 0x80) !== 0) throw invalid("its RSA modulus is negative");
  if ((eBytes[0]! & 0x80) !== 0) throw invalid("its RSA public exponent is negative");
  const n = unsigned(nBytes);
  const e = unsigned(eBytes);
  const size = bitLength(n);
  if (size > MAX_RSA_BITS)
    throw invalid(`its RSA modulus has ${size} bits; the station reads at most ${MAX_RSA_BITS}`, {
      bits: size,
    });
  if (size < 512) throw invalid(`its RSA modulus has only ${size} bits`, { bits: size });
  if ((n & 1n) === 0n) throw invalid("its RSA modulus is even");
  if (e < 3n || (e & 1n) === 0n)
    throw invalid(
      `its RSA public exponent is ${e}; it must be odd and at least 3${e === 1n ? " (with 1, anyone can forge its signatures)" : ""}`,
      { exponent: e.toString() },
    );
  // NIST SP 800-89 bounds the exponent below 2^256; larger ones only make verification slow.
  if (bitLength(e) > 256) throw invalid("its RSA public exponent is longer than 256 bits");
  if (e >= n) throw invalid("its RSA public exponent is not smaller than its modulus");
  const spki = encodeSpki(
    new AlgorithmIdentifier({ algorithm: ID_RSA_ENCRYPTION, parameters: null }),
    bits,
  );
  return { key: { kind: "rsa", bits: size, exponent: e.toString() }, spki, publicKeyBits: bits };
}
