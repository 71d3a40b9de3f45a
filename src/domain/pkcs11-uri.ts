import { LinesignError } from "./errors.js";

/** The parts of an RFC 7512 `pkcs11:` URI that name a key in a token. */
export interface Pkcs11KeyUri {
  token: string;
  object: string;
  /** Hex CKA_ID, lower case. */
  id: string;
  /** `private` when naming the private key (the default for CA keys). */
  type?: "private" | "public" | "cert" | "data";
}

// RFC 3986 unreserved plus the path characters RFC 7512 leaves unescaped in attribute values.
const SAFE = /[A-Za-z0-9\-._~:[\]@!$'()*+,=&]/;

function encode(value: string): string {
  let out = "";
  for (const ch of value) {
    if (SAFE.test(ch)) {
      out += ch;
    } else {
      for (const byte of new TextEncoder().encode(ch)) {
        out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
      }
    }
  }
  return out;
}

function hexToPct(hex: string): string {
  return hex.replace(/(..)/g, "%$1").toUpperCase();
}

/** Formats a key's RFC 7512 URI: `pkcs11:token=...;object=...;id=%01%02;type=private`. */
export function formatPkcs11Uri(uri: Pkcs11KeyUri): string {
  const parts = [`token=${encode(uri.token)}`, `object=${encode(uri.object)}`];
  if (uri.id) parts.push(`id=${hexToPct(uri.id)}`);
  parts.push(`type=${uri.type ?? "private"}`);
  return "pkcs11:" + parts.join(";");
}

/**
 * Parses an RFC 7512 URI naming a key. Requires `token` and at least one of
 * `object` or `id`; throws CONFIG_INVALID naming what is missing.
 */
export function parsePkcs11Uri(text: string): Pkcs11KeyUri {
  if (!text.startsWith("pkcs11:")) {
    throw new LinesignError("CONFIG_INVALID", `"${text}" is not a pkcs11: URI (RFC 7512).`);
  }
  const path = text.slice("pkcs11:".length).split("?")[0] ?? "";
  const attrs = new Map<string, string>();
  for (const part of path.split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0)
      throw new LinesignError("CONFIG_INVALID", `Malformed attribute "${part}" in ${text}.`);
    const name = part.slice(0, eq);
    const raw = part.slice(eq + 1);
    let value: string;
    try {
      value = name === "id" ? raw : decodeURIComponent(raw);
    } catch (cause) {
      throw new LinesignError("CONFIG_INVALID", `Bad percent-encoding in "${part}" of ${text}.`, {
        cause,
      });
    }
    attrs.set(name, value);
  }
  const token = attrs.get("token");
  const object = attrs.get("object") ?? "";
  const idRaw = attrs.get("id") ?? "";
  if (!token) throw new LinesignError("CONFIG_INVALID", `The key URI ${text} names no token.`);
  if (!object && !idRaw) {
    throw new LinesignError("CONFIG_INVALID", `The key URI ${text} names neither object nor id.`);
  }
  const id = idRaw.replace(/%/g, "").toLowerCase();
  if (!/^([0-9a-f]{2})*$/.test(id)) {
    throw new LinesignError("CONFIG_INVALID", `The id in ${text} must be percent-encoded bytes.`);
  }
  const type = attrs.get("type");
  const result: Pkcs11KeyUri = { token, object, id };
  if (type === "private" || type === "public" || type === "cert" || type === "data")
    result.type = type;
  return result;
}
