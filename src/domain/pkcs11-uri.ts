import { LinesignError } from "./errors.js";

/** PKCS#11 label and serial fields are fixed-size, padded with blanks (v2.40, CK_TOKEN_INFO). */
export const TOKEN_LABEL_BYTES = 32;
const SERIAL_BYTES = 16;

const utf8 = new TextEncoder();

/**
 * Checks a token label the station will write (C_InitToken) or look for: at
 * most 32 bytes of UTF-8 (bytes, not characters), no control characters, no
 * leading or trailing blanks (the padding would swallow them). Returns it.
 * @throws LinesignError USAGE naming the limit and the label's byte length
 */
export function checkTokenLabel(label: string): string {
  const bytes = utf8.encode(label).length;
  if (bytes === 0) throw new LinesignError("USAGE", "A token label cannot be empty.");
  if (bytes > TOKEN_LABEL_BYTES) {
    throw new LinesignError(
      "USAGE",
      `The token label "${label}" is ${bytes} bytes long; PKCS#11 token labels hold at most ${TOKEN_LABEL_BYTES} bytes (UTF-8). Choose a shorter label.`,
      { details: { bytes } },
    );
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(label) || label.trim() !== label) {
    throw new LinesignError(
      "USAGE",
      "A token label cannot hold control characters or start or end with a blank.",
    );
  }
  return label;
}

/** The 32-byte blank-padded label field for C_InitToken (checked first). */
export function paddedLabel(label: string): Uint8Array {
  const bytes = utf8.encode(checkTokenLabel(label));
  const out = new Uint8Array(TOKEN_LABEL_BYTES).fill(0x20);
  out.set(bytes);
  return out;
}

/**
 * Which token the station means: by label (the usual case), narrowed by
 * serial number (several HSMs of one model share a label), manufacturer or
 * model, as a full RFC 7512 token URI can say.
 */
export interface TokenSelector {
  label: string | null;
  serial: string | null;
  manufacturer: string | null;
  model: string | null;
}

/**
 * Parses how a person names a token: a label (`line-3`), a serial number
 * (`serial:0123456789abcdef`) or a token URI
 * (`pkcs11:token=YubiHSM;serial=0012345678`, also `manufacturer=` and `model=`).
 * @throws LinesignError USAGE for an empty or malformed selector
 */
export function parseTokenSelector(text: string): TokenSelector {
  const none: TokenSelector = { label: null, serial: null, manufacturer: null, model: null };
  if (text.startsWith("serial:")) {
    const serial = text.slice("serial:".length);
    if (!serial || utf8.encode(serial).length > SERIAL_BYTES)
      throw new LinesignError("USAGE", `"${text}": a token serial number is 1 to 16 characters.`);
    return { ...none, serial };
  }
  if (text.startsWith("pkcs11:")) {
    const attrs = uriAttributes(text);
    const sel: TokenSelector = {
      label: attrs.get("token") ?? null,
      serial: attrs.get("serial") ?? null,
      manufacturer: attrs.get("manufacturer") ?? null,
      model: attrs.get("model") ?? null,
    };
    if (!sel.label && !sel.serial)
      throw new LinesignError("USAGE", `The token URI ${text} names neither token nor serial.`);
    if (sel.label) checkTokenLabel(sel.label);
    return sel;
  }
  return { ...none, label: checkTokenLabel(text) };
}

/** Whether a token's (trimmed) facts match a selector. */
export function selectorMatches(
  sel: TokenSelector,
  token: { label: string; serial: string; manufacturer: string; model: string },
): boolean {
  return (
    (sel.label === null || sel.label === token.label) &&
    (sel.serial === null || sel.serial === token.serial) &&
    (sel.manufacturer === null || sel.manufacturer === token.manufacturer) &&
    (sel.model === null || sel.model === token.model)
  );
}

/** A token's RFC 7512 URI (`pkcs11:model=..;manufacturer=..;serial=..;token=..`). */
export function formatTokenUri(token: {
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
}): string {
  return (
    "pkcs11:" +
    [
      `model=${encode(token.model)}`,
      `manufacturer=${encode(token.manufacturer)}`,
      `serial=${encode(token.serial)}`,
      `token=${encode(token.label)}`,
    ].join(";")
  );
}

/** The parts of an RFC 7512 `pkcs11:` URI that name a key in a token. */
export interface Pkcs11KeyUri {
  token: string;
  /** The token's serial number, when the station selects its token by serial too. */
  serial?: string;
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
  const parts = [`token=${encode(uri.token)}`];
  if (uri.serial) parts.push(`serial=${encode(uri.serial)}`);
  parts.push(`object=${encode(uri.object)}`);
  if (uri.id) parts.push(`id=${hexToPct(uri.id)}`);
  parts.push(`type=${uri.type ?? "private"}`);
  return "pkcs11:" + parts.join(";");
}

/**
 * Parses an RFC 7512 URI naming a key. Requires `token` and at least one of
 * `object` or `id`; throws CONFIG_INVALID naming what is missing.
 */
export function parsePkcs11Uri(text: string): Pkcs11KeyUri {
  const attrs = uriAttributes(text);
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
  const serial = attrs.get("serial");
  if (serial) result.serial = serial;
  if (type === "private" || type === "public" || type === "cert" || type === "data")
    result.type = type;
  return result;
}

/** The path attributes of a `pkcs11:` URI, percent-decoded (except `id`, kept as written). */
function uriAttributes(text: string): Map<string, string> {
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
  return attrs;
}
