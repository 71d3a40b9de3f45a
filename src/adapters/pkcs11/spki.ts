/**
 * Turns the public-key attributes a token returns into DER SubjectPublicKeyInfo,
 * through node's own key import (no hand-written ASN.1).
 */
import { createPublicKey } from "node:crypto";
import * as asn1js from "asn1js";
import { LinesignError } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";

export const EC_CURVE_OIDS = {
  "ec-p256": "1.2.840.10045.3.1.7",
  "ec-p384": "1.3.132.0.34",
} as const;

const JWK_CURVES = { "ec-p256": "P-256", "ec-p384": "P-384" } as const;

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** CKA_EC_PARAMS (DER OID) and CKA_EC_POINT (DER OCTET STRING of the point) to SPKI. */
export function ecPointToSpki(
  params: Buffer,
  point: Buffer,
): { keyType: KeyType; spki: Uint8Array } {
  const oid = asn1js.fromBER(new Uint8Array(params).buffer);
  const oidValue =
    oid.result instanceof asn1js.ObjectIdentifier ? oid.result.valueBlock.toString() : "";
  const keyType = (Object.keys(EC_CURVE_OIDS) as ("ec-p256" | "ec-p384")[]).find(
    (k) => EC_CURVE_OIDS[k] === oidValue,
  );
  if (!keyType) {
    throw new LinesignError(
      "KEY_TYPE_UNSUPPORTED",
      `The token key is on curve ${oidValue || "(unknown)"}; only P-256 and P-384 are supported.`,
    );
  }
  // Most modules wrap the point in an OCTET STRING; some return it bare.
  let raw: Uint8Array = new Uint8Array(point);
  const wrapped = asn1js.fromBER(new Uint8Array(point).buffer);
  if (wrapped.offset !== -1 && wrapped.result instanceof asn1js.OctetString) {
    raw = new Uint8Array(wrapped.result.valueBlock.valueHexView);
  }
  const size = keyType === "ec-p256" ? 32 : 48;
  if (raw.length !== 1 + 2 * size || raw[0] !== 0x04) {
    throw new LinesignError(
      "HSM_ERROR",
      "The token returned an EC point that is not uncompressed.",
    );
  }
  const key = createPublicKey({
    key: {
      kty: "EC",
      crv: JWK_CURVES[keyType],
      x: b64url(raw.subarray(1, 1 + size)),
      y: b64url(raw.subarray(1 + size)),
    },
    format: "jwk",
  });
  return { keyType, spki: new Uint8Array(key.export({ type: "spki", format: "der" })) };
}

/** CKA_MODULUS and CKA_PUBLIC_EXPONENT to SPKI. */
export function rsaToSpki(
  modulus: Buffer,
  exponent: Buffer,
): { keyType: KeyType; spki: Uint8Array } {
  let n = modulus;
  while (n.length > 0 && n[0] === 0) n = n.subarray(1);
  const bits = n.length * 8;
  const keyType: KeyType | null = bits === 2048 ? "rsa-2048" : bits === 3072 ? "rsa-3072" : null;
  if (!keyType) {
    throw new LinesignError(
      "KEY_TYPE_UNSUPPORTED",
      `The token key is RSA-${bits}; only RSA-2048 and RSA-3072 CA keys are supported.`,
    );
  }
  const key = createPublicKey({
    key: { kty: "RSA", n: b64url(n), e: b64url(exponent) },
    format: "jwk",
  });
  return { keyType, spki: new Uint8Array(key.export({ type: "spki", format: "der" })) };
}
