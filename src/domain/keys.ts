import { LinesignError } from "./errors.js";

/** Key types a CA key (and, by profile, a device key) may have. */
export const KEY_TYPES = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** The signature hash each CA key type signs with: SHA-256 or stronger, as AWS IoT requires. */
export function signatureHash(type: KeyType): "SHA-256" | "SHA-384" {
  switch (type) {
    case "ec-p256":
    case "rsa-2048":
    case "rsa-3072":
      return "SHA-256";
    case "ec-p384":
      return "SHA-384";
    default: {
      const never: never = type;
      throw new Error(`unhandled key type ${String(never)}`);
    }
  }
}

/** True for the elliptic-curve key types. */
export function isEc(type: KeyType): boolean {
  return type === "ec-p256" || type === "ec-p384";
}

/** Parses a key type name; throws KEY_TYPE_UNSUPPORTED naming the accepted ones. */
export function parseKeyType(value: string): KeyType {
  if ((KEY_TYPES as readonly string[]).includes(value)) return value as KeyType;
  throw new LinesignError(
    "KEY_TYPE_UNSUPPORTED",
    `Key type "${value}" is not supported. Use one of: ${KEY_TYPES.join(", ")}.`,
  );
}
