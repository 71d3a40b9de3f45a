/**
 * Key templates per token, and what the token actually made. Tokens refuse
 * different attributes (tpm2-pkcs11 any use flag set false, opencryptoki 3.8
 * CKA_COPYABLE and CKA_ALLOWED_MECHANISMS, YubiHSM CKA_MODIFIABLE), so the
 * station tries the strictest template first and steps down, then reads the
 * key's attributes back: a key that could decrypt, unwrap, derive or leave
 * the token is destroyed and refused, whatever template made it.
 */
import * as asn1js from "asn1js";
import { isEc, type KeyType } from "../../domain/keys.js";
import type { KeyCustody } from "../../domain/ports.js";
import { mechanismName } from "./mechanisms.js";
import { pkcs11js, type Pkcs11 } from "./module.js";
import { EC_CURVE_OIDS } from "./spki.js";

type Attr = { type: number; value: number | boolean | string | Buffer };

/** The templates tried, strictest first. */
export const TEMPLATE_TIERS = ["strict", "no-v2.40", "no-modifiable", "minimal"] as const;
export type TemplateTier = (typeof TEMPLATE_TIERS)[number];

/** CK_ULONG array, as CKA_ALLOWED_MECHANISMS holds it (8 bytes little-endian on 64-bit Linux). */
function ulongArray(values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => out.writeBigUInt64LE(BigInt(v), i * 8));
  return out;
}

function readUlongArray(buf: Buffer): number[] {
  const size = buf.length % 8 === 0 ? 8 : 4;
  const out: number[] = [];
  for (let i = 0; i + size <= buf.length; i += size)
    out.push(size === 8 ? Number(buf.readBigUInt64LE(i)) : buf.readUInt32LE(i));
  return out;
}

/**
 * The public and private templates of one tier.
 * - strict: sign-only (DECRYPT, UNWRAP, DERIVE, SIGN_RECOVER false), not MODIFIABLE, not COPYABLE,
 *   CKA_ALLOWED_MECHANISMS = the signing mechanisms.
 * - no-v2.40: strict without CKA_COPYABLE and CKA_ALLOWED_MECHANISMS (modules older than v2.40).
 * - no-modifiable: also without CKA_MODIFIABLE.
 * - minimal: only what makes a private, sensitive, non-extractable signing key; the use flags are
 *   then set false one by one where the token lets them be changed.
 */
export function templates(
  tier: TemplateTier,
  keyType: KeyType,
  label: string,
  id: Buffer,
  allowed: number[],
): { publicTmpl: Attr[]; privateTmpl: Attr[] } {
  const common: Attr[] = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
  ];
  const publicTmpl: Attr[] = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: true },
  ];
  const privateTmpl: Attr[] = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
  ];
  if (tier !== "minimal") {
    publicTmpl.push(
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
    );
    privateTmpl.push(
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
    );
  }
  if (tier === "strict" || tier === "no-v2.40")
    privateTmpl.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
  if (tier === "strict") {
    privateTmpl.push({ type: pkcs11js.CKA_COPYABLE, value: false });
    if (allowed.length > 0)
      privateTmpl.push({ type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: ulongArray(allowed) });
  }
  if (isEc(keyType)) {
    const oid = new asn1js.ObjectIdentifier({
      value: EC_CURVE_OIDS[keyType as "ec-p256" | "ec-p384"],
    });
    publicTmpl.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(oid.toBER()) });
    publicTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC });
    privateTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC });
  } else {
    publicTmpl.push({
      type: pkcs11js.CKA_MODULUS_BITS,
      value: keyType === "rsa-3072" ? 3072 : 2048,
    });
    publicTmpl.push({ type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
    publicTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA });
    privateTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA });
  }
  return { publicTmpl, privateTmpl };
}

function readBool(lib: Pkcs11, session: Buffer, obj: Buffer, type: number): boolean | null {
  try {
    const [a] = lib.C_GetAttributeValue(session, obj, [{ type }]);
    const v = a?.value;
    if (!Buffer.isBuffer(v) || v.length === 0) return null;
    return v[0] !== 0;
  } catch {
    // CKR_ATTRIBUTE_TYPE_INVALID: the token does not keep this attribute.
    return null;
  }
}

/**
 * After a minimal template: turns the use flags off where the token allows it
 * (tpm2-pkcs11 makes RSA keys with CKA_DECRYPT true and refuses false at generation).
 */
export function tightenAfterGeneration(
  lib: Pkcs11,
  session: Buffer,
  privateKey: Buffer,
  publicKey: Buffer,
  allowed: number[],
): void {
  const off = (obj: Buffer, type: number): void => {
    if (readBool(lib, session, obj, type) !== true) return;
    try {
      lib.C_SetAttributeValue(session, obj, [{ type, value: false }]);
    } catch {
      // read back below decides whether what is left is acceptable
    }
  };
  for (const t of [
    pkcs11js.CKA_DECRYPT,
    pkcs11js.CKA_UNWRAP,
    pkcs11js.CKA_DERIVE,
    pkcs11js.CKA_SIGN_RECOVER,
  ])
    off(privateKey, t);
  for (const t of [pkcs11js.CKA_ENCRYPT, pkcs11js.CKA_WRAP]) off(publicKey, t);
  if (allowed.length > 0) {
    try {
      lib.C_SetAttributeValue(session, privateKey, [
        { type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: ulongArray(allowed) },
      ]);
    } catch {
      // recorded as a weakness by the read back
    }
  }
}

/** The private key's custody attributes as the token reports them (null: not kept by this token). */
export function readCustody(
  lib: Pkcs11,
  session: Buffer,
  privateKey: Buffer,
  template: KeyCustody["template"],
): KeyCustody {
  const b = (t: number): boolean | null => readBool(lib, session, privateKey, t);
  let allowedMechanisms: string[] | null = null;
  try {
    const [a] = lib.C_GetAttributeValue(session, privateKey, [
      { type: pkcs11js.CKA_ALLOWED_MECHANISMS },
    ]);
    if (Buffer.isBuffer(a?.value)) allowedMechanisms = readUlongArray(a.value).map(mechanismName);
  } catch {
    allowedMechanisms = null;
  }
  const custody: KeyCustody = {
    template,
    sensitive: b(pkcs11js.CKA_SENSITIVE),
    alwaysSensitive: b(pkcs11js.CKA_ALWAYS_SENSITIVE),
    extractable: b(pkcs11js.CKA_EXTRACTABLE),
    neverExtractable: b(pkcs11js.CKA_NEVER_EXTRACTABLE),
    sign: b(pkcs11js.CKA_SIGN),
    decrypt: b(pkcs11js.CKA_DECRYPT),
    unwrap: b(pkcs11js.CKA_UNWRAP),
    derive: b(pkcs11js.CKA_DERIVE),
    signRecover: b(pkcs11js.CKA_SIGN_RECOVER),
    modifiable: b(pkcs11js.CKA_MODIFIABLE),
    copyable: b(pkcs11js.CKA_COPYABLE),
    allowedMechanisms,
    faults: [],
    weaknesses: [],
  };
  custody.faults = custodyFaults(custody);
  custody.weaknesses = custodyWeaknesses(custody);
  return custody;
}

/**
 * What makes a key unfit to be a CA or audit key: it must be sensitive, never
 * have been extractable, sign, and neither decrypt, unwrap nor derive; its
 * allowed mechanisms, where listed, must not include raw RSA (CKM_RSA_X_509).
 */
export function custodyFaults(c: Omit<KeyCustody, "faults" | "weaknesses">): string[] {
  const faults: string[] = [];
  if (c.sensitive !== true) faults.push("CKA_SENSITIVE is not true");
  if (c.extractable !== false) faults.push("CKA_EXTRACTABLE is not false");
  if (c.neverExtractable !== true) faults.push("CKA_NEVER_EXTRACTABLE is not true");
  if (c.sign !== true) faults.push("CKA_SIGN is not true");
  if (c.decrypt === true) faults.push("CKA_DECRYPT is true");
  if (c.unwrap === true) faults.push("CKA_UNWRAP is true");
  if (c.derive === true) faults.push("CKA_DERIVE is true");
  return faults;
}

/**
 * What the station asks for where the token accepts it, and this token did
 * not give: recorded with the key (and shown by `token probe`), not refused.
 */
export function custodyWeaknesses(c: Omit<KeyCustody, "faults" | "weaknesses">): string[] {
  const out: string[] = [];
  if (c.modifiable === true) out.push("CKA_MODIFIABLE is true");
  if (c.copyable === true) out.push("CKA_COPYABLE is true");
  if (c.signRecover === true) out.push("CKA_SIGN_RECOVER is true");
  if (c.alwaysSensitive === false) out.push("CKA_ALWAYS_SENSITIVE is false");
  if (c.allowedMechanisms === null) out.push("CKA_ALLOWED_MECHANISMS is not kept");
  else if (c.allowedMechanisms.includes("CKM_RSA_X_509"))
    out.push("CKA_ALLOWED_MECHANISMS includes raw RSA (CKM_RSA_X_509)");
  return out;
}
