/**
 * The serial frame layer (docs/serial-protocol.md, "Framing").
 *
 *   on the wire:  0x00  COBS( version | type | seq | payload | CRC-32 )  0x00
 *
 * version is 1; CRC-32 (big-endian) covers version..payload. The decoder is a
 * pure, incremental function over bytes: it never throws on input, never
 * holds more than one maximum frame, and resynchronises at the next 0x00.
 */
import { cobsDecode, cobsEncode, cobsMaxEncodedLength } from "./cobs.js";
import { crc32 } from "./crc32.js";

export const FRAME_VERSION = 1;
/** Largest frame before stuffing: header (3) + payload + CRC (4). */
export const MAX_FRAME_BYTES = 16_384;
export const FRAME_OVERHEAD = 7;
export const MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - FRAME_OVERHEAD;
/** Largest stuffed frame between two delimiters (16,449: the COBS cost of a full frame). */
export const MAX_ENCODED_FRAME_BYTES = cobsMaxEncodedLength(MAX_FRAME_BYTES);

export interface Frame {
  type: number;
  seq: number;
  payload: Uint8Array;
}

/**
 * What a delimited block turned out to be. `wireBytes` is every byte the
 * decoder took since the previous event, up to and including this block's
 * closing 0x00 (so a frame's leading delimiter, and empty blocks before it,
 * count towards it): the events of a stream add up to all of its bytes but
 * those still buffered.
 */
export type DecodeEvent =
  | { kind: "frame"; frame: Frame; wireBytes: number }
  /** A delimited block that is not a frame: garbage, or a frame damaged on the line. */
  | { kind: "bad"; reason: "cobs" | "short" | "version" | "crc"; wireBytes: number }
  /**
   * A frame larger than MAX_FRAME_BYTES: more than MAX_ENCODED_FRAME_BYTES without a
   * delimiter (discarded up to the next 0x00), or a block that decodes to more.
   */
  | { kind: "oversize"; wireBytes: number };

export interface EncodeOptions {
  /** Test seam for the device simulator's oversized-frame fault. */
  allowOversize?: boolean;
}

/** The bytes to write for one frame, delimiters included. */
export function encodeFrame(
  type: number,
  seq: number,
  payload: Uint8Array,
  opts: EncodeOptions = {},
): Uint8Array {
  if (!opts.allowOversize && payload.length > MAX_PAYLOAD_BYTES)
    throw new RangeError(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError("type is a byte");
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xff) throw new RangeError("seq is a byte");
  const raw = new Uint8Array(payload.length + FRAME_OVERHEAD);
  raw[0] = FRAME_VERSION;
  raw[1] = type;
  raw[2] = seq;
  raw.set(payload, 3);
  const crc = crc32(raw, 0, raw.length - 4);
  new DataView(raw.buffer).setUint32(raw.length - 4, crc, false);
  const stuffed = cobsEncode(raw);
  const out = new Uint8Array(stuffed.length + 2);
  out.set(stuffed, 1);
  return out;
}

/** Decodes one delimited block (without its 0x00s). */
export function decodeBlock(block: Uint8Array): DecodeEvent {
  const wireBytes = block.length + 1;
  const raw = cobsDecode(block);
  if (!raw) return { kind: "bad", reason: "cobs", wireBytes };
  // The limit is on the frame itself, however well it happened to stuff.
  if (raw.length > MAX_FRAME_BYTES) return { kind: "oversize", wireBytes };
  if (raw.length < FRAME_OVERHEAD) return { kind: "bad", reason: "short", wireBytes };
  if (raw[0] !== FRAME_VERSION) return { kind: "bad", reason: "version", wireBytes };
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (view.getUint32(raw.length - 4, false) !== crc32(raw, 0, raw.length - 4))
    return { kind: "bad", reason: "crc", wireBytes };
  return {
    kind: "frame",
    frame: { type: raw[1]!, seq: raw[2]!, payload: raw.slice(3, raw.length - 4) },
    wireBytes,
  };
}

/**
 * Incremental decoder. `push` takes whatever bytes arrived (any split) and
 * returns what they completed. Memory is bounded by `capacity` bytes.
 */
export class FrameDecoder {
  private readonly buf: Uint8Array;
  private len = 0;
  /** Bytes discarded since the buffer overflowed; -1 when not skipping. */
  private skipped = -1;
  /** Bytes taken since the last event (delimiters of empty blocks included). */
  private since = 0;

  constructor(readonly capacity: number = MAX_ENCODED_FRAME_BYTES) {
    this.buf = new Uint8Array(capacity);
  }

  /** Bytes held waiting for a delimiter. */
  get buffered(): number {
    return this.len;
  }

  push(chunk: Uint8Array): DecodeEvent[] {
    const events: DecodeEvent[] = [];
    let i = 0;
    while (i < chunk.length) {
      const zero = chunk.indexOf(0, i);
      const end = zero === -1 ? chunk.length : zero;
      this.take(chunk, i, end);
      if (zero === -1) break;
      this.delimit(events);
      i = zero + 1;
    }
    return events;
  }

  /** Drops whatever is buffered (the line was reset). */
  reset(): void {
    this.len = 0;
    this.skipped = -1;
    this.since = 0;
  }

  private take(chunk: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (n === 0) return;
    this.since += n;
    if (this.skipped >= 0) {
      this.skipped += n;
      return;
    }
    if (this.len + n > this.capacity) {
      this.skipped = this.len + n;
      this.len = 0;
      return;
    }
    this.buf.set(chunk.subarray(start, end), this.len);
    this.len += n;
  }

  private delimit(events: DecodeEvent[]): void {
    this.since++;
    if (this.skipped >= 0) {
      events.push({ kind: "oversize", wireBytes: this.since });
      this.skipped = -1;
      this.since = 0;
    } else if (this.len > 0) {
      events.push({ ...decodeBlock(this.buf.subarray(0, this.len)), wireBytes: this.since });
      this.since = 0;
    }
    this.len = 0;
  }
}
