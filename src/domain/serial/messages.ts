/**
 * The provisioning messages carried in frames (docs/serial-protocol.md,
 * "Messages"). Each payload is a list of TLV fields: tag (1 byte), length
 * (2 bytes, big-endian), value. Unknown tags are skipped, so later versions
 * can add fields; a missing or repeated required field makes the message
 * malformed. Decoding is pure and never throws on input.
 */
import type { ErrorCode } from "../errors.js";
import type { KeyType } from "../keys.js";

/** Message protocol versions this implementation speaks. */
export const PROTOCOL_MIN = 1;
export const PROTOCOL_MAX = 1;

export const MESSAGE_TYPES = {
  HELLO: 0x01,
  IDENTIFY: 0x02,
  CSR_REQUEST: 0x03,
  CSR: 0x04,
  CERTIFICATE: 0x05,
  STORED: 0x06,
  DONE: 0x07,
  ERROR: 0x7f,
} as const;
export type MessageName = keyof typeof MESSAGE_TYPES;

export const TAGS = {
  PROTOCOL_MIN: 0x01,
  PROTOCOL_MAX: 0x02,
  MAX_FRAME: 0x03,
  STATION_ID: 0x04,
  PROTOCOL: 0x05,
  BOOT_ID: 0x06,
  DEVICE_ID: 0x10,
  MODEL: 0x11,
  FIRMWARE: 0x12,
  KEY_TYPES: 0x13,
  KEY_TYPE: 0x20,
  CSR_DER: 0x21,
  LEAF_DER: 0x30,
  CHAIN_DER: 0x31,
  LEAF_SHA256: 0x32,
  SERIAL: 0x33,
  ERROR_CODE: 0x40,
  ERROR_MESSAGE: 0x41,
} as const;

/** Key types on the wire. */
export const WIRE_KEY_TYPES: Readonly<Record<KeyType, number>> = {
  "ec-p256": 0x01,
  "ec-p384": 0x02,
  "rsa-2048": 0x11,
  "rsa-3072": 0x12,
};

export function keyTypeOfWire(code: number): KeyType | null {
  for (const [k, v] of Object.entries(WIRE_KEY_TYPES)) if (v === code) return k as KeyType;
  return null;
}

export type Message =
  | {
      type: "HELLO";
      protocolMin: number;
      protocolMax: number;
      maxFrame: number;
      stationId: string;
      /** New whenever the station (re)opens the port; absent: unknown. */
      bootId?: Uint8Array;
    }
  | {
      type: "IDENTIFY";
      protocol: number;
      deviceId: string;
      model: string;
      firmware: string;
      /** Key types the device can generate, in its order of preference; unknown codes are dropped. */
      keyTypes: KeyType[];
    }
  | { type: "CSR_REQUEST"; keyType: KeyType }
  | { type: "CSR"; csr: Uint8Array }
  | { type: "CERTIFICATE"; leaf: Uint8Array; chain: Uint8Array[] }
  | { type: "STORED"; sha256: Uint8Array }
  | { type: "DONE"; serial: Uint8Array }
  | { type: "ERROR"; code: number; message: string };

/** Longest text field (device id, model, firmware, station id, error message), in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 256;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

class Fields {
  private readonly parts: Uint8Array[] = [];
  add(tag: number, value: Uint8Array): this {
    if (value.length > 0xffff) throw new RangeError(`field 0x${tag.toString(16)} is too long`);
    const head = new Uint8Array(3);
    head[0] = tag;
    head[1] = value.length >> 8;
    head[2] = value.length & 0xff;
    this.parts.push(head, value);
    return this;
  }
  u8(tag: number, v: number): this {
    return this.add(tag, Uint8Array.of(v));
  }
  u16(tag: number, v: number): this {
    return this.add(tag, Uint8Array.of(v >> 8, v & 0xff));
  }
  text(tag: number, v: string): this {
    return this.add(tag, utf8.encode(v));
  }
  bytes(): Uint8Array {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** The payload of a message. */
export function encodeMessage(m: Message): { type: number; payload: Uint8Array } {
  const f = new Fields();
  switch (m.type) {
    case "HELLO":
      f.u8(TAGS.PROTOCOL_MIN, m.protocolMin)
        .u8(TAGS.PROTOCOL_MAX, m.protocolMax)
        .u16(TAGS.MAX_FRAME, m.maxFrame)
        .text(TAGS.STATION_ID, m.stationId);
      if (m.bootId) f.add(TAGS.BOOT_ID, m.bootId);
      break;
    case "IDENTIFY":
      f.u8(TAGS.PROTOCOL, m.protocol)
        .text(TAGS.DEVICE_ID, m.deviceId)
        .text(TAGS.MODEL, m.model)
        .text(TAGS.FIRMWARE, m.firmware)
        .add(TAGS.KEY_TYPES, Uint8Array.from(m.keyTypes.map((k) => WIRE_KEY_TYPES[k])));
      break;
    case "CSR_REQUEST":
      f.u8(TAGS.KEY_TYPE, WIRE_KEY_TYPES[m.keyType]);
      break;
    case "CSR":
      f.add(TAGS.CSR_DER, m.csr);
      break;
    case "CERTIFICATE":
      f.add(TAGS.LEAF_DER, m.leaf);
      for (const c of m.chain) f.add(TAGS.CHAIN_DER, c);
      break;
    case "STORED":
      f.add(TAGS.LEAF_SHA256, m.sha256);
      break;
    case "DONE":
      f.add(TAGS.SERIAL, m.serial);
      break;
    case "ERROR":
      f.u16(TAGS.ERROR_CODE, m.code);
      if (m.message) f.add(TAGS.ERROR_MESSAGE, truncateUtf8(m.message, MAX_TEXT_BYTES));
      break;
    default: {
      const never: never = m;
      throw new Error(`unknown message ${String(never)}`);
    }
  }
  return { type: MESSAGE_TYPES[m.type], payload: f.bytes() };
}

function truncateUtf8(s: string, max: number): Uint8Array {
  const b = utf8.encode(s);
  if (b.length <= max) return b;
  let end = max;
  // Never cut inside a multi-byte sequence.
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

export type DecodeResult =
  | { ok: true; message: Message }
  /** `missing`: the message lacks this field (or has it empty), rather than being garbled. */
  | { ok: false; reason: string; missing?: "DEVICE_ID" };

/** Splits a payload into fields; null when a length runs past the end. */
function parseFields(payload: Uint8Array): Map<number, Uint8Array[]> | null {
  const fields = new Map<number, Uint8Array[]>();
  let i = 0;
  while (i < payload.length) {
    if (i + 3 > payload.length) return null;
    const tag = payload[i]!;
    const len = (payload[i + 1]! << 8) | payload[i + 2]!;
    const end = i + 3 + len;
    if (end > payload.length) return null;
    const list = fields.get(tag) ?? [];
    list.push(payload.subarray(i + 3, end));
    fields.set(tag, list);
    i = end;
  }
  return fields;
}

class Missing extends Error {
  constructor(
    message: string,
    readonly field?: "DEVICE_ID",
  ) {
    super(message);
  }
}

function nameOfTag(tag: number): string {
  for (const [k, v] of Object.entries(TAGS)) if (v === tag) return k;
  return `0x${tag.toString(16)}`;
}

function one(fields: Map<number, Uint8Array[]>, tag: number): Uint8Array {
  const list = fields.get(tag);
  if (!list || list.length === 0) throw new Missing(`field ${nameOfTag(tag)} is missing`);
  if (list.length > 1) throw new Missing(`field ${nameOfTag(tag)} appears ${list.length} times`);
  return list[0]!;
}

function u8(fields: Map<number, Uint8Array[]>, tag: number): number {
  const v = one(fields, tag);
  if (v.length !== 1) throw new Missing(`field ${nameOfTag(tag)} must be 1 byte`);
  return v[0]!;
}

function u16(fields: Map<number, Uint8Array[]>, tag: number): number {
  const v = one(fields, tag);
  if (v.length !== 2) throw new Missing(`field ${nameOfTag(tag)} must be 2 bytes`);
  return (v[0]! << 8) | v[1]!;
}

function text(fields: Map<number, Uint8Array[]>, tag: number, optional = false): string {
  if (optional && !fields.has(tag)) return "";
  const v = one(fields, tag);
  if (v.length > MAX_TEXT_BYTES)
    throw new Missing(`field ${nameOfTag(tag)} is longer than ${MAX_TEXT_BYTES} bytes`);
  try {
    return utf8Strict.decode(v);
  } catch {
    throw new Missing(`field ${nameOfTag(tag)} is not UTF-8`);
  }
}

function der(fields: Map<number, Uint8Array[]>, tag: number): Uint8Array {
  const v = one(fields, tag);
  if (v.length === 0) throw new Missing(`field ${nameOfTag(tag)} is empty`);
  return v.slice();
}

/** Decodes a frame's type and payload into a message. */
export function decodeMessage(type: number, payload: Uint8Array): DecodeResult {
  const fields = parseFields(payload);
  if (!fields) return { ok: false, reason: "a field's length runs past the end of the message" };
  try {
    switch (type) {
      case MESSAGE_TYPES.HELLO:
        return {
          ok: true,
          message: {
            type: "HELLO",
            protocolMin: u8(fields, TAGS.PROTOCOL_MIN),
            protocolMax: u8(fields, TAGS.PROTOCOL_MAX),
            maxFrame: u16(fields, TAGS.MAX_FRAME),
            stationId: text(fields, TAGS.STATION_ID, true),
            ...(fields.has(TAGS.BOOT_ID) ? { bootId: one(fields, TAGS.BOOT_ID).slice() } : {}),
          },
        };
      case MESSAGE_TYPES.IDENTIFY: {
        if (!fields.has(TAGS.DEVICE_ID))
          throw new Missing("field DEVICE_ID is missing", "DEVICE_ID");
        const deviceId = text(fields, TAGS.DEVICE_ID);
        if (deviceId.length === 0) throw new Missing("field DEVICE_ID is empty", "DEVICE_ID");
        const keyTypes: KeyType[] = [];
        for (const code of one(fields, TAGS.KEY_TYPES)) {
          const k = keyTypeOfWire(code);
          if (k && !keyTypes.includes(k)) keyTypes.push(k);
        }
        return {
          ok: true,
          message: {
            type: "IDENTIFY",
            protocol: u8(fields, TAGS.PROTOCOL),
            deviceId,
            model: text(fields, TAGS.MODEL, true),
            firmware: text(fields, TAGS.FIRMWARE, true),
            keyTypes,
          },
        };
      }
      case MESSAGE_TYPES.CSR_REQUEST: {
        const code = u8(fields, TAGS.KEY_TYPE);
        const keyType = keyTypeOfWire(code);
        if (!keyType) throw new Missing(`key type 0x${code.toString(16)} is unknown`);
        return { ok: true, message: { type: "CSR_REQUEST", keyType } };
      }
      case MESSAGE_TYPES.CSR:
        return { ok: true, message: { type: "CSR", csr: der(fields, TAGS.CSR_DER) } };
      case MESSAGE_TYPES.CERTIFICATE:
        return {
          ok: true,
          message: {
            type: "CERTIFICATE",
            leaf: der(fields, TAGS.LEAF_DER),
            chain: (fields.get(TAGS.CHAIN_DER) ?? []).map((c) => c.slice()),
          },
        };
      case MESSAGE_TYPES.STORED: {
        const sha256 = one(fields, TAGS.LEAF_SHA256);
        if (sha256.length !== 32) throw new Missing("field LEAF_SHA256 must be 32 bytes");
        return { ok: true, message: { type: "STORED", sha256: sha256.slice() } };
      }
      case MESSAGE_TYPES.DONE:
        return { ok: true, message: { type: "DONE", serial: der(fields, TAGS.SERIAL) } };
      case MESSAGE_TYPES.ERROR:
        return {
          ok: true,
          message: {
            type: "ERROR",
            code: u16(fields, TAGS.ERROR_CODE),
            message: text(fields, TAGS.ERROR_MESSAGE, true),
          },
        };
      default:
        return { ok: false, reason: `message type 0x${type.toString(16)} is unknown` };
    }
  } catch (e) {
    if (e instanceof Missing)
      return { ok: false, reason: e.message, ...(e.field ? { missing: e.field } : {}) };
    throw e;
  }
}

/**
 * Error codes carried in ERROR messages. Station refusals of a request carry
 * the rejection reason; faults of the line or the device have their own.
 */
export const WIRE_ERRORS = {
  PROTOCOL: 0x0001,
  VERSION_UNSUPPORTED: 0x0002,
  FRAME_TOO_LARGE: 0x0003,
  TIMEOUT: 0x0004,
  LINE_NOISY: 0x0005,
  ABORTED: 0x0006,
  DEVICE_KEY_TYPE_UNSUPPORTED: 0x0010,
  DEVICE_KEYGEN_FAILED: 0x0011,
  DEVICE_STORAGE_FAILED: 0x0012,
  DEVICE_CHAIN_UNTRUSTED: 0x0013,
  REFUSED: 0x0100,
  CSR_TOO_LARGE: 0x0101,
  CSR_MALFORMED: 0x0102,
  CSR_ALGORITHM_UNSUPPORTED: 0x0103,
  CSR_SIGNATURE_INVALID: 0x0104,
  KEY_TYPE_NOT_ALLOWED: 0x0105,
  DEVICE_ID_MISSING: 0x0106,
  DEVICE_ID_MISMATCH: 0x0107,
  DEVICE_ID_INVALID: 0x0108,
  SUBJECT_TOO_LARGE: 0x0109,
  SUBJECT_FORBIDDEN: 0x010a,
  CSR_REQUESTS_CA: 0x010b,
  CSR_EXTENSION_FORBIDDEN: 0x010c,
  KEY_REUSED: 0x010d,
  DEVICE_ALREADY_ISSUED: 0x010e,
  CONFIRMATION_MISMATCH: 0x010f,
  KEY_INVALID: 0x0110,
  KEY_TYPE_MISMATCH: 0x0111,
  STATION_FAULT: 0x0200,
} as const;
export type WireErrorName = keyof typeof WIRE_ERRORS;

export function wireErrorName(code: number): WireErrorName | null {
  for (const [k, v] of Object.entries(WIRE_ERRORS)) if (v === code) return k as WireErrorName;
  return null;
}

/** The wire code a station error goes out with. */
export function wireCodeOf(code: ErrorCode): number {
  switch (code) {
    case "SERIAL_PROTOCOL":
      return WIRE_ERRORS.PROTOCOL;
    case "SERIAL_VERSION_UNSUPPORTED":
      return WIRE_ERRORS.VERSION_UNSUPPORTED;
    case "SERIAL_FRAME_TOO_LARGE":
      return WIRE_ERRORS.FRAME_TOO_LARGE;
    case "SERIAL_TIMEOUT":
      return WIRE_ERRORS.TIMEOUT;
    case "SERIAL_LINE_NOISY":
      return WIRE_ERRORS.LINE_NOISY;
    case "LINE_STOPPED":
      return WIRE_ERRORS.ABORTED;
    case "CSR_TOO_LARGE":
    case "CSR_MALFORMED":
    case "KEY_INVALID":
    case "CSR_ALGORITHM_UNSUPPORTED":
    case "CSR_SIGNATURE_INVALID":
    case "KEY_TYPE_NOT_ALLOWED":
    case "DEVICE_ID_MISSING":
    case "DEVICE_ID_MISMATCH":
    case "DEVICE_ID_INVALID":
    case "SUBJECT_TOO_LARGE":
    case "SUBJECT_FORBIDDEN":
    case "CSR_REQUESTS_CA":
    case "CSR_EXTENSION_FORBIDDEN":
    case "KEY_REUSED":
    case "DEVICE_ALREADY_ISSUED":
    case "CONFIRMATION_MISMATCH":
    case "KEY_TYPE_MISMATCH":
      return WIRE_ERRORS[code];
    case "WORK_ORDER_DEVICE":
    case "WORK_ORDER_EXHAUSTED":
    case "WORK_ORDER_CLOSED":
    case "WORK_ORDER_WINDOW":
      return WIRE_ERRORS.REFUSED;
    default:
      return WIRE_ERRORS.STATION_FAULT;
  }
}
