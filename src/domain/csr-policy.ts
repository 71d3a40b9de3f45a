/**
 * The issuance policy over a request's facts, as pure functions. Each check
 * throws a LinesignError with its own stable reason code and a message that
 * says what is wrong in the words an operator or firmware engineer needs.
 */
import { LinesignError } from "./errors.js";
import type { Profile } from "./profile.js";
import { compilePattern } from "./pattern.js";
import { cut, isWellFormed, wellFormed } from "./text.js";

export type DeviceKey =
  | { kind: "ec"; curve: "P-256" | "P-384" | "P-521" }
  /** `exponent` in decimal (it may exceed a JavaScript number). */
  | { kind: "rsa"; bits: number; exponent: string }
  | { kind: "other"; name: string };

export interface SubjectEntry {
  /** Short name (CN, O, ...) or dotted OID when unknown. */
  type: string;
  value: string;
}

/** What policy needs to know about a request. */
export interface CsrFacts {
  /** Hex SHA-256 of the request's DER. */
  sha256: string;
  /** Hex SHA-256 of the SubjectPublicKeyInfo as the station encodes the key (one key, one hash). */
  spkiSha256: string;
  key: DeviceKey;
  subject: SubjectEntry[];
  subjectDerLength: number;
  requestedExtensions: { oid: string; critical: boolean; caTrue: boolean }[];
}

/** Largest subject accepted in a request (DER bytes) and most attributes. */
export const MAX_SUBJECT_BYTES = 1024;
export const MAX_SUBJECT_ATTRIBUTES = 16;

/** A key's name as used in profiles, logs and the wire protocol: ec-p256, rsa-2048, ... */
export function deviceKeyName(key: DeviceKey): string {
  switch (key.kind) {
    case "ec":
      return `ec-${key.curve.replace("-", "").toLowerCase()}`;
    case "rsa":
      return `rsa-${key.bits}`;
    case "other":
      return key.name;
    default: {
      const never: never = key;
      return String(never);
    }
  }
}

/** Refuses a key the profile does not accept. Throws KEY_TYPE_NOT_ALLOWED. */
export function checkKeyAllowed(profile: Profile, key: DeviceKey): void {
  const accepted = [
    ...profile.keys.ec.map((c) => `EC ${c}`),
    ...(profile.keys.rsaMinBits
      ? [
          `RSA ${profile.keys.rsaMinBits} to ${profile.keys.rsaMaxBits} bits` +
            (profile.keys.rsaExponent === "65537" ? " with public exponent 65537" : ""),
        ]
      : []),
  ].join(", ");
  const refuse = (what: string): never => {
    throw new LinesignError(
      "KEY_TYPE_NOT_ALLOWED",
      `The device's key is ${what}, which this profile does not accept. Accepted: ${accepted}.`,
      {
        details: { key: deviceKeyName(key) },
      },
    );
  };
  if (key.kind === "ec") {
    if (!profile.keys.ec.includes(key.curve)) refuse(`EC ${key.curve}`);
    return;
  }
  if (key.kind === "rsa") {
    if (profile.keys.rsaMinBits === null) refuse(`RSA-${key.bits}`);
    if (key.bits < profile.keys.rsaMinBits!) refuse(`RSA-${key.bits} (too weak)`);
    if (key.bits > profile.keys.rsaMaxBits)
      refuse(`RSA-${key.bits} (larger than this profile's ${profile.keys.rsaMaxBits} bits)`);
    if (profile.keys.rsaExponent === "65537" && key.exponent !== "65537")
      refuse(`RSA-${key.bits} with public exponent ${key.exponent}`);
    return;
  }
  refuse(key.name);
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const CONTROL_ALL = new RegExp(CONTROL.source, "g");

function printable(s: string): string {
  return JSON.stringify(wellFormed(s.length > 80 ? cut(s, 77) + "..." : s)).replace(
    CONTROL_ALL,
    "?",
  );
}

/**
 * The device id: the one given (by the serial line or --device-id) or else
 * the request's CN; both given must agree. Checked against the profile rule.
 * Throws DEVICE_ID_MISSING, DEVICE_ID_MISMATCH, DEVICE_ID_INVALID.
 */
export function resolveDeviceId(profile: Profile, csr: CsrFacts, given?: string | null): string {
  const cns = csr.subject.filter((e) => e.type === "CN").map((e) => e.value);
  if (cns.length > 1) {
    throw new LinesignError(
      "SUBJECT_FORBIDDEN",
      `The request's subject has ${cns.length} CNs; a device certificate names one device.`,
    );
  }
  const cn = cns[0];
  let id: string;
  if (given !== undefined && given !== null) {
    if (cn !== undefined && cn !== given) {
      throw new LinesignError(
        "DEVICE_ID_MISMATCH",
        `The device says it is ${printable(given)} but its request's CN is ${printable(cn)}.`,
        {
          details: { given, cn },
        },
      );
    }
    id = given;
  } else if (cn !== undefined) {
    id = cn;
  } else {
    throw new LinesignError(
      "DEVICE_ID_MISSING",
      "The request has no CN and no device id was given: the station cannot tell which device this is.",
    );
  }
  checkDeviceId(profile, id);
  return id;
}

/**
 * The profile's rule for device ids, applied as soon as a device names itself
 * (the serial line checks it at IDENTIFY, before the device makes a key).
 * Throws DEVICE_ID_INVALID.
 */
export function checkDeviceId(profile: Profile, id: string): void {
  if (CONTROL.test(id)) {
    throw new LinesignError(
      "DEVICE_ID_INVALID",
      `The device id ${printable(id)} contains control characters.`,
    );
  }
  // A BMPString or a device's bytes can carry half a surrogate pair: no such id is stored.
  if (!isWellFormed(id)) {
    throw new LinesignError(
      "DEVICE_ID_INVALID",
      `The device id ${printable(id)} is not well-formed Unicode text.`,
    );
  }
  // The rule must match the whole id, whether or not it carries its own anchors.
  // Linear-time matching (RE2): the id comes from a device, the rule from an officer.
  const rule = compilePattern(profile.deviceIdRule);
  if (!rule.ok || !rule.pattern.matchesWhole(id)) {
    throw new LinesignError(
      "DEVICE_ID_INVALID",
      `The device id ${printable(id)} does not match the profile's rule ${profile.deviceIdRule}.`,
      {
        details: { rule: profile.deviceIdRule },
      },
    );
  }
}

/**
 * Checks the request's subject against the profile and returns the entries
 * to copy. Throws SUBJECT_TOO_LARGE or SUBJECT_FORBIDDEN.
 */
export function checkSubject(profile: Profile, csr: CsrFacts): SubjectEntry[] {
  if (csr.subjectDerLength > MAX_SUBJECT_BYTES || csr.subject.length > MAX_SUBJECT_ATTRIBUTES) {
    throw new LinesignError(
      "SUBJECT_TOO_LARGE",
      `The request's subject is ${csr.subjectDerLength} bytes in ${csr.subject.length} attributes; at most ${MAX_SUBJECT_BYTES} bytes and ${MAX_SUBJECT_ATTRIBUTES} attributes are accepted.`,
    );
  }
  for (const e of csr.subject) {
    if ((profile.subject.forbid as string[]).includes(e.type)) {
      throw new LinesignError(
        "SUBJECT_FORBIDDEN",
        `The request's subject contains ${e.type}, which this profile forbids.`,
        { details: { attribute: e.type } },
      );
    }
    const fixed = (profile.subject.fixed as Record<string, string | undefined>)[e.type];
    if (fixed !== undefined && fixed !== e.value) {
      throw new LinesignError(
        "SUBJECT_FORBIDDEN",
        `The request claims ${e.type}=${printable(e.value)}, but this profile sets ${e.type}=${printable(fixed)}.`,
        {
          details: { attribute: e.type },
        },
      );
    }
  }
  return csr.subject.filter(
    (e) =>
      e.type !== "CN" &&
      (profile.subject.copy as string[]).includes(e.type) &&
      !(e.type in profile.subject.fixed),
  );
}

/** Refuses requested extensions: CA:TRUE always, others unless tolerated. Throws CSR_REQUESTS_CA, CSR_EXTENSION_FORBIDDEN. */
export function checkRequestedExtensions(profile: Profile, csr: CsrFacts): void {
  for (const ext of csr.requestedExtensions) {
    if (ext.caTrue) {
      throw new LinesignError(
        "CSR_REQUESTS_CA",
        "The request asks to be a CA (basicConstraints CA:TRUE). Device certificates are never CAs.",
      );
    }
    if (!profile.toleratedRequestedExtensions.includes(ext.oid)) {
      throw new LinesignError(
        "CSR_EXTENSION_FORBIDDEN",
        `The request asks for extension ${ext.oid}; the profile decides a device certificate's extensions. Remove it from the device's request (or tolerate it in the profile).`,
        { details: { oid: ext.oid } },
      );
    }
  }
}

/** The certificate subject: profile's fixed attributes, copied ones, then CN = device id. */
export function buildSubject(
  profile: Profile,
  deviceId: string,
  copied: SubjectEntry[],
): SubjectEntry[] {
  const order = ["C", "ST", "L", "O", "OU"];
  const fixed = order.flatMap((t) => {
    const v = (profile.subject.fixed as Record<string, string | undefined>)[t];
    return v === undefined ? [] : [{ type: t, value: v }];
  });
  return [...fixed, ...copied, { type: "CN", value: deviceId }];
}
