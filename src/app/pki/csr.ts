/**
 * Reading a device's PKCS#10 request: strict parsing (PEM or DER, size-capped,
 * X.690 DER only, no trailing bytes), the public key decoded, checked and
 * encoded again by the station (public-key.ts), and proof of possession (the request's signature checked
 * with node's native crypto over the exact bytes the device signed).
 */
import { createHash, createPublicKey, verify, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  Attribute,
  Extensions,
  Name,
  id_ce_basicConstraints,
  BasicConstraints,
} from "@peculiar/asn1-x509";
import { id_pkcs9_at_extensionRequest } from "@peculiar/asn1-pkcs9";
import { LinesignError } from "../../domain/errors.js";
import { ATTRIBUTE_NAMES } from "../../domain/x500.js";
import type { CsrFacts, SubjectEntry } from "../../domain/csr-policy.js";
import {
  bytesOf,
  checkSetOrder,
  contentOf,
  DerError,
  isUniversal,
  oidOf,
  readDer,
  type DerNode,
} from "./der.js";
import { decodePublicKey } from "./public-key.js";

/** Largest request accepted, PEM or DER. */
export const MAX_CSR_BYTES = 16 * 1024;

/** Signature algorithms accepted on a request, and the hash each uses. */
const SIGNATURE_HASHES: Record<string, string> = {
  "1.2.840.10045.4.3.2": "sha256", // ecdsa-with-SHA256
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256", // sha256WithRSAEncryption
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
};

/** A parsed request: the facts policy needs, plus what signing needs. */
export interface ParsedCsr extends CsrFacts {
  der: Uint8Array;
  /** The SubjectPublicKeyInfo as the station encodes the key (never the request's bytes). */
  spki: Uint8Array;
  /** The subjectPublicKey bits (for the subject key identifier). */
  publicKeyBits: Uint8Array;
  /** The key as node's crypto holds it, when decoding made it (see DecodedKey). */
  publicKey?: KeyObject;
  signatureAlgorithm: string;
  /** The certificationRequestInfo bytes exactly as the device signed them. */
  signed: Uint8Array;
  /** The signature's bits. */
  signature: Uint8Array;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Hex SHA-256 of whatever bytes arrived (for recording rejections of unparseable input). */
export function fingerprintInput(input: Uint8Array): string {
  return sha256(input);
}

function malformed(why: string, cause?: unknown): LinesignError {
  return new LinesignError(
    "CSR_MALFORMED",
    `The request is not a valid PKCS#10 CSR: ${why}.`,
    cause === undefined ? {} : { cause },
  );
}

function toDer(input: Uint8Array): Uint8Array {
  const head = Buffer.from(input.subarray(0, 64)).toString("latin1");
  if (!head.includes("-----BEGIN")) return input;
  const text = Buffer.from(input).toString("latin1");
  const m =
    /^\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\s]+?)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/.exec(
      text,
    );
  if (!m) throw malformed("PEM must hold exactly one CERTIFICATE REQUEST block and nothing else");
  const der = Buffer.from(m[2]!.replace(/\s+/g, ""), "base64");
  if (der.length === 0) throw malformed("the PEM block is empty");
  return new Uint8Array(der);
}

/** A DER INTEGER's value (for messages). */
function signedInteger(content: Uint8Array): string {
  if (content.length === 0) return "0";
  let v = BigInt("0x" + Buffer.from(content).toString("hex"));
  if ((content[0]! & 0x80) !== 0) v -= 1n << BigInt(content.length * 8);
  return v.toString();
}

/** The subject as a list of (attribute, value), in order. */
function subjectEntries(name: Name): SubjectEntry[] {
  const out: SubjectEntry[] = [];
  for (const rdn of name) {
    for (const atv of rdn) {
      out.push({ type: ATTRIBUTE_NAMES[atv.type] ?? atv.type, value: atv.value.toString() });
    }
  }
  return out;
}

/**
 * Parses a request strictly. Throws CSR_TOO_LARGE or CSR_MALFORMED naming the problem.
 */
export function parseCsr(input: Uint8Array): ParsedCsr {
  try {
    return parseCsrStrictly(input);
  } catch (e) {
    // The ASN.1 decoders throw plain errors on some malformed input (asn1js: a
    // UniversalString whose length is not a multiple of 4): that is the device's
    // malformed request, not a fault of the station.
    if (e instanceof LinesignError) throw e;
    throw malformed("it could not be decoded", e);
  }
}

function parseCsrStrictly(input: Uint8Array): ParsedCsr {
  if (input.length > MAX_CSR_BYTES) {
    throw new LinesignError(
      "CSR_TOO_LARGE",
      `The request is ${input.length} bytes; at most ${MAX_CSR_BYTES} are accepted.`,
    );
  }
  if (input.length === 0) throw malformed("it is empty");
  const der = toDer(input);
  // Strict DER first: BER that other readers would take differently never gets further.
  let top: DerNode;
  try {
    top = readDer(der);
  } catch (e) {
    if (e instanceof DerError) throw malformed(`it is not DER: ${e.message}`);
    throw e;
  }
  const [infoNode, sigAlgNode, sigNode, ...extra] = top.children;
  if (!isUniversal(top, 16) || !isUniversal(infoNode, 16) || !isUniversal(sigAlgNode, 16))
    throw malformed("it is not a SEQUENCE of the request info, an algorithm and a signature");
  if (!isUniversal(sigNode, 3) || extra.length > 0)
    throw malformed("it is not a SEQUENCE of the request info, an algorithm and a signature");
  const [versionNode, subjectNode, spkiNode, attrsNode, ...extraInfo] = infoNode.children;
  if (
    !isUniversal(versionNode, 2) ||
    !isUniversal(subjectNode, 16) ||
    !isUniversal(spkiNode, 16) ||
    attrsNode === undefined ||
    attrsNode.cls !== 2 ||
    attrsNode.tag !== 0 ||
    !attrsNode.constructed ||
    extraInfo.length > 0
  )
    throw malformed(
      "its request info is not exactly version, subject, public key and [0] attributes",
    );
  try {
    checkSetOrder(der, attrsNode); // attributes are a SET OF, tagged [0] IMPLICIT
  } catch (e) {
    if (e instanceof DerError) throw malformed(`it is not DER: ${e.message}`);
    throw e;
  }
  // The request's parts are mapped from the strict tree read above (asn1-schema for the
  // subject and the attributes), never parsed again as a whole.
  const version = contentOf(der, versionNode);
  if (version.length !== 1 || version[0] !== 0)
    throw malformed(`version ${signedInteger(version)} is not v1 (0)`);
  const [sigOidNode] = sigAlgNode.children;
  if (!isUniversal(sigOidNode, 6))
    throw malformed("its structure is not a CertificationRequest: no signature algorithm");
  let subject: Name;
  let attributes: Attribute[];
  try {
    subject = AsnConvert.parse(bytesOf(der, subjectNode), Name);
    attributes = attrsNode.children.map((a) => AsnConvert.parse(bytesOf(der, a), Attribute));
  } catch (cause) {
    throw malformed("its structure is not a CertificationRequest", cause);
  }
  const decoded = decodePublicKey(der, spkiNode);
  const subjectDerLength = subjectNode.end - subjectNode.start;
  const requestedExtensions: CsrFacts["requestedExtensions"] = [];
  for (const attr of attributes) {
    if (attr.type !== id_pkcs9_at_extensionRequest) continue;
    for (const value of attr.values) {
      let exts: Extensions;
      try {
        exts = AsnConvert.parse(value, Extensions);
      } catch (cause) {
        throw malformed("its extension request cannot be read", cause);
      }
      for (const ext of exts) {
        let caTrue = false;
        if (ext.extnID === id_ce_basicConstraints) {
          try {
            caTrue = AsnConvert.parse(ext.extnValue.buffer, BasicConstraints).cA;
          } catch {
            caTrue = true; // an unreadable basicConstraints request is treated as the dangerous kind
          }
        }
        requestedExtensions.push({ oid: ext.extnID, critical: ext.critical, caTrue });
      }
    }
  }
  return {
    der,
    spki: decoded.spki,
    publicKeyBits: decoded.publicKeyBits,
    ...(decoded.publicKey ? { publicKey: decoded.publicKey } : {}),
    sha256: sha256(der),
    spkiSha256: sha256(decoded.spki),
    key: decoded.key,
    subject: subjectEntries(subject),
    subjectDerLength,
    requestedExtensions,
    signatureAlgorithm: oidOf(der, sigOidNode),
    signed: der.slice(infoNode.start, infoNode.end),
    // The unused-bits octet is not part of the signature (DER: zero bits, checked above).
    signature: contentOf(der, sigNode).slice(1),
  };
}

/**
 * Checks proof of possession: the request's signature over its info, with its
 * own key, using node's native crypto (measured faster here than WebCrypto,
 * whose key import and thread-pool hops cost more than they save).
 * Throws CSR_ALGORITHM_UNSUPPORTED or CSR_SIGNATURE_INVALID.
 */
/** What proof of possession is checked over: plain data, so it can cross a thread boundary. */
export interface SignedRequest {
  spki: Uint8Array;
  /**
   * The same key as node's crypto holds it, when parsing made it; a KeyObject
   * crosses to another thread by postMessage, so the pool's parse saves the
   * main thread's decoding.
   */
  publicKey?: KeyObject;
  /** The certificationRequestInfo bytes exactly as the device signed them. */
  signed: Uint8Array;
  signature: Uint8Array;
  signatureAlgorithm: string;
}

/** The parts of a parsed request that its signature check needs. */
export function signedRequest(csr: ParsedCsr): SignedRequest {
  return {
    spki: csr.spki,
    ...(csr.publicKey ? { publicKey: csr.publicKey } : {}),
    signed: csr.signed,
    signature: csr.signature,
    signatureAlgorithm: csr.signatureAlgorithm,
  };
}

/** The hash and the key a request's signature is checked with; throws the refusals that come first. */
function verification(csr: SignedRequest): { hash: string; key: KeyObject; ec: boolean } {
  const hash = SIGNATURE_HASHES[csr.signatureAlgorithm];
  if (!hash) {
    throw new LinesignError(
      "CSR_ALGORITHM_UNSUPPORTED",
      `The request is signed with algorithm ${csr.signatureAlgorithm}; use ECDSA or RSA PKCS#1 v1.5 with SHA-256 or stronger.`,
    );
  }
  const sigIsEc = csr.signatureAlgorithm.startsWith("1.2.840.10045");
  let key: KeyObject;
  try {
    // The station's own encoding of the key, decoded and checked before (public-key.ts).
    key =
      csr.publicKey ?? createPublicKey({ key: Buffer.from(csr.spki), format: "der", type: "spki" });
  } catch {
    throw new LinesignError(
      "KEY_TYPE_NOT_ALLOWED",
      "The device's key is of a kind the station cannot use: no profile accepts it.",
    );
  }
  // The signature algorithm must fit the key's kind (no ECDSA OID over an RSA key).
  const keyKind = key.asymmetricKeyType ?? "unknown";
  if (keyKind !== (sigIsEc ? "ec" : "rsa")) {
    throw new LinesignError(
      "CSR_ALGORITHM_UNSUPPORTED",
      `The request is signed with ${sigIsEc ? "ECDSA" : "RSA"} (${csr.signatureAlgorithm}), but its key is ${keyKind === "ec" ? "EC" : keyKind === "rsa" ? "RSA" : keyKind}: the device signs with the wrong algorithm.`,
    );
  }
  return { hash, key, ec: sigIsEc };
}

const badSignature = (): LinesignError =>
  new LinesignError(
    "CSR_SIGNATURE_INVALID",
    "The request's signature does not verify with its own public key: the device did not prove it holds the key (corrupted request, or a fault in the device).",
  );

export function verifyCsrSignature(csr: SignedRequest): void {
  const { hash, key, ec } = verification(csr);
  let ok: boolean;
  try {
    ok = verify(hash, csr.signed, ec ? { key, dsaEncoding: "der" } : key, csr.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw badSignature();
}

/**
 * verifyCsrSignature on libuv's thread pool: the station's thread only hands
 * the check over, so the event loop that commits and answers ports is not
 * held for it.
 */
export async function verifyCsrSignatureOffThread(csr: SignedRequest): Promise<void> {
  const { hash, key, ec } = verification(csr);
  const ok = await new Promise<boolean>((resolve) => {
    try {
      verify(hash, csr.signed, ec ? { key, dsaEncoding: "der" } : key, csr.signature, (err, good) =>
        resolve(!err && good),
      );
    } catch {
      resolve(false);
    }
  });
  if (!ok) throw badSignature();
}
