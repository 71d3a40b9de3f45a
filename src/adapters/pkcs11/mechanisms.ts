/**
 * What a token can do, read from its mechanism list, and the choice the
 * station makes from it: a combined hash-and-sign mechanism where the token
 * offers one, else the raw one over a digest (ECDSA) or a DigestInfo
 * (RSA PKCS#1 v1.5) the station builds. Nothing is assumed: a key type the
 * token cannot make or sign with is refused before anything is generated,
 * naming the missing mechanism.
 */
import { createHash } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { DigestInfo } from "@peculiar/asn1-rsa";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { LinesignError } from "../../domain/errors.js";
import { isEc, signatureHash, type KeyType } from "../../domain/keys.js";
import { pkcs11js, type Pkcs11 } from "./module.js";

/** One mechanism as the token describes it (CK_MECHANISM_INFO). */
export interface MechanismFact {
  code: number;
  name: string;
  /** As the token reports it: bits for RSA; bits or bytes for EC, depending on the module. */
  minKeySize: number;
  maxKeySize: number;
  flags: string[];
}

/** How a key of one type signs on one token. */
export interface SignPlan {
  mechanism: number;
  name: string;
  /** What goes to C_Sign: the message (combined mechanism), its digest (ECDSA), or a DigestInfo (RSA). */
  input: "message" | "digest" | "digest-info";
  hash: "sha256" | "sha384";
}

const FLAG_NAMES: [number, string][] = [
  [pkcs11js.CKF_HW, "hw"],
  [pkcs11js.CKF_ENCRYPT, "encrypt"],
  [pkcs11js.CKF_DECRYPT, "decrypt"],
  [pkcs11js.CKF_DIGEST, "digest"],
  [pkcs11js.CKF_SIGN, "sign"],
  [pkcs11js.CKF_SIGN_RECOVER, "sign_recover"],
  [pkcs11js.CKF_VERIFY, "verify"],
  [pkcs11js.CKF_VERIFY_RECOVER, "verify_recover"],
  [pkcs11js.CKF_GENERATE, "generate"],
  [pkcs11js.CKF_GENERATE_KEY_PAIR, "generate_key_pair"],
  [pkcs11js.CKF_WRAP, "wrap"],
  [pkcs11js.CKF_UNWRAP, "unwrap"],
  [pkcs11js.CKF_DERIVE, "derive"],
];

// Several CKM_ names share a value (CKM_ECDSA_KEY_PAIR_GEN is CKM_EC_KEY_PAIR_GEN): the current names win.
const PREFERRED = new Map<number, string>([
  [pkcs11js.CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"],
  [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"],
]);

/** The CKM_* name of a mechanism code (hex for vendor mechanisms). */
export function mechanismName(code: number): string {
  const preferred = PREFERRED.get(code);
  if (preferred) return preferred;
  for (const [name, value] of Object.entries(pkcs11js)) {
    if (name.startsWith("CKM_") && value === code) return name;
  }
  return `0x${code.toString(16)}`;
}

/** The token's mechanisms with their key sizes and flags (C_GetMechanismList, C_GetMechanismInfo). */
export function readMechanisms(lib: Pkcs11, slot: Buffer): Map<number, MechanismFact> {
  const out = new Map<number, MechanismFact>();
  for (const code of lib.C_GetMechanismList(slot)) {
    let info: { minKeySize: number; maxKeySize: number; flags: number };
    try {
      info = lib.C_GetMechanismInfo(slot, code);
    } catch {
      info = { minKeySize: 0, maxKeySize: 0, flags: 0 };
    }
    out.set(code, {
      code,
      name: mechanismName(code),
      minKeySize: info.minKeySize,
      maxKeySize: info.maxKeySize,
      flags: FLAG_NAMES.filter(([bit]) => (info.flags & bit) !== 0).map(([, n]) => n),
    });
  }
  return out;
}

function rsaBits(keyType: KeyType): number {
  return keyType === "rsa-3072" ? 3072 : 2048;
}

function offers(
  mechs: Map<number, MechanismFact>,
  code: number,
  flag: string,
  keyType: KeyType,
): boolean {
  const m = mechs.get(code);
  if (!m) return false;
  // Tokens that report no flags at all are taken at their word that the mechanism exists.
  if (m.flags.length > 0 && !m.flags.includes(flag)) return false;
  if (!isEc(keyType) && m.maxKeySize > 0) {
    const bits = rsaBits(keyType);
    if (bits < m.minKeySize || bits > m.maxKeySize) return false;
  }
  return true;
}

const combined = (keyType: KeyType): number =>
  isEc(keyType)
    ? signatureHash(keyType) === "SHA-384"
      ? pkcs11js.CKM_ECDSA_SHA384
      : pkcs11js.CKM_ECDSA_SHA256
    : signatureHash(keyType) === "SHA-384"
      ? pkcs11js.CKM_SHA384_RSA_PKCS
      : pkcs11js.CKM_SHA256_RSA_PKCS;

const raw = (keyType: KeyType): number =>
  isEc(keyType) ? pkcs11js.CKM_ECDSA : pkcs11js.CKM_RSA_PKCS;

/** The key-pair generation mechanism for a key type. */
export function generationMechanism(keyType: KeyType): number {
  return isEc(keyType) ? pkcs11js.CKM_EC_KEY_PAIR_GEN : pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN;
}

/**
 * Why the token cannot hold a key of this type, or null when it can: it must
 * generate the key pair and sign with it by some mechanism.
 */
export function unfitReason(mechs: Map<number, MechanismFact>, keyType: KeyType): string | null {
  const gen = generationMechanism(keyType);
  if (!offers(mechs, gen, "generate_key_pair", keyType)) {
    const m = mechs.get(gen);
    return m
      ? `${mechanismName(gen)} does not cover ${keyType} (key sizes ${m.minKeySize}-${m.maxKeySize}, flags ${m.flags.join(",") || "none"})`
      : `the token has no ${mechanismName(gen)}`;
  }
  if (
    !offers(mechs, combined(keyType), "sign", keyType) &&
    !offers(mechs, raw(keyType), "sign", keyType)
  )
    return `the token signs with neither ${mechanismName(combined(keyType))} nor ${mechanismName(raw(keyType))}`;
  return null;
}

/**
 * Refuses a key type the token cannot generate and sign with, before anything is made.
 * @throws LinesignError HSM_MECHANISM_UNSUPPORTED naming the missing mechanism
 */
export function requireFit(
  mechs: Map<number, MechanismFact>,
  keyType: KeyType,
  tokenLabel: string,
): void {
  const reason = unfitReason(mechs, keyType);
  if (reason) {
    throw new LinesignError(
      "HSM_MECHANISM_UNSUPPORTED",
      `Token "${tokenLabel}" cannot hold a ${keyType} key: ${reason}. Choose a key type the token offers ` +
        `("linesign token probe" lists them).`,
      { details: { token: tokenLabel, keyType, reason } },
    );
  }
}

/** How to sign with a key of this type here: the combined mechanism where offered, else the raw one. */
export function signPlan(
  mechs: Map<number, MechanismFact>,
  keyType: KeyType,
  tokenLabel: string,
): SignPlan {
  const hash = signatureHash(keyType) === "SHA-384" ? "sha384" : "sha256";
  const c = combined(keyType);
  if (offers(mechs, c, "sign", keyType))
    return { mechanism: c, name: mechanismName(c), input: "message", hash };
  const r = raw(keyType);
  if (offers(mechs, r, "sign", keyType))
    return {
      mechanism: r,
      name: mechanismName(r),
      input: isEc(keyType) ? "digest" : "digest-info",
      hash,
    };
  throw new LinesignError(
    "HSM_MECHANISM_UNSUPPORTED",
    `Token "${tokenLabel}" signs with neither ${mechanismName(c)} nor ${mechanismName(r)}, so it cannot use a ${keyType} key.`,
    { details: { token: tokenLabel, keyType } },
  );
}

/** The signing mechanisms a new key may be limited to (CKA_ALLOWED_MECHANISMS): those offered, never raw RSA. */
export function allowedSignMechanisms(
  mechs: Map<number, MechanismFact>,
  keyType: KeyType,
): number[] {
  const candidates = isEc(keyType)
    ? [pkcs11js.CKM_ECDSA, pkcs11js.CKM_ECDSA_SHA256, pkcs11js.CKM_ECDSA_SHA384]
    : [pkcs11js.CKM_RSA_PKCS, pkcs11js.CKM_SHA256_RSA_PKCS, pkcs11js.CKM_SHA384_RSA_PKCS];
  return candidates.filter((m) => offers(mechs, m, "sign", keyType));
}

const HASH_OIDS = { sha256: "2.16.840.1.101.3.4.2.1", sha384: "2.16.840.1.101.3.4.2.2" } as const;

/** What C_Sign is given under a plan: the message, its digest, or the DER DigestInfo (RFC 8017 9.2). */
export function signInput(plan: SignPlan, message: Uint8Array): Buffer {
  if (plan.input === "message") return Buffer.from(message);
  const digest = createHash(plan.hash).update(message).digest();
  if (plan.input === "digest") return digest;
  const info = new DigestInfo({
    // RFC 8017 (appendix A.2.4): the hash's parameters are NULL.
    digestAlgorithm: new AlgorithmIdentifier({
      algorithm: HASH_OIDS[plan.hash],
      parameters: null,
    }),
    digest: new OctetString(new Uint8Array(digest)),
  });
  return Buffer.from(AsnConvert.serialize(info));
}
