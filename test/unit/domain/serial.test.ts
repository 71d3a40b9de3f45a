import { readFileSync } from "node:fs";
import { crc32 as zlibCrc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32 } from "../../../src/domain/serial/crc32.js";
import { cobsDecode, cobsEncode } from "../../../src/domain/serial/cobs.js";
import {
  decodeBlock,
  encodeFrame,
  FrameDecoder,
  MAX_ENCODED_FRAME_BYTES,
  MAX_FRAME_BYTES,
  MAX_PAYLOAD_BYTES,
  type DecodeEvent,
} from "../../../src/domain/serial/frame.js";
import {
  decodeMessage,
  encodeMessage,
  MESSAGE_TYPES,
  TAGS,
} from "../../../src/domain/serial/messages.js";
import {
  fromHex,
  hexDump,
  loadVectors,
  messageFromJson,
  toHex,
} from "../../../fixtures/serial-vectors/vectors.js";
import { prng, runFrameFuzz, sampleFrame } from "../../../fixtures/frame-fuzz.js";

const frames = (events: DecodeEvent[]) =>
  events.flatMap((e) => (e.kind === "frame" ? [e.frame] : []));

describe("CRC-32", () => {
  it("has the standard check value and agrees with zlib", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    const rnd = prng(1);
    for (let n = 0; n < 200; n++) {
      const b = Uint8Array.from({ length: n * 7 }, () => Math.floor(rnd() * 256));
      expect(crc32(b)).toBe(zlibCrc32(b));
    }
  });
});

describe("COBS", () => {
  it("round-trips any block and never emits 0x00", () => {
    const rnd = prng(2);
    const cases = [
      new Uint8Array(0),
      new Uint8Array(1),
      new Uint8Array(600),
      new Uint8Array(254).fill(1),
      new Uint8Array(255).fill(1),
      new Uint8Array(508).fill(0xff),
      ...Array.from({ length: 300 }, () =>
        Uint8Array.from({ length: Math.floor(rnd() * 1000) }, () =>
          rnd() < 0.1 ? 0 : Math.floor(rnd() * 256),
        ),
      ),
    ];
    for (const c of cases) {
      const enc = cobsEncode(c);
      expect(enc.includes(0)).toBe(false);
      expect(enc.length).toBeLessThanOrEqual(c.length + Math.ceil(c.length / 254) + 1);
      expect(toHex(cobsDecode(enc)!)).toBe(toHex(c));
    }
  });

  it("ends a block that ends on a full 254-byte run with 0x01, and decodes it with or without", () => {
    const run = new Uint8Array(254).fill(0x11);
    const enc = cobsEncode(run);
    expect(enc.length).toBe(256);
    expect([enc[0], enc[255]]).toEqual([0xff, 0x01]);
    expect(cobsDecode(enc)).toEqual(run);
    expect(cobsDecode(enc.subarray(0, 255))).toEqual(run);
  });

  it("refuses blocks that are not COBS", () => {
    expect(cobsDecode(Uint8Array.of(5, 1, 2))).toBeNull(); // code past the end
    expect(cobsDecode(Uint8Array.of(3, 0, 1))).toBeNull(); // zero inside
  });
});

describe("protocol test vectors", () => {
  const vectors = loadVectors();
  const doc = readFileSync(new URL("../../../docs/serial-protocol.md", import.meta.url), "utf8");

  it("has the whole exchange", () => {
    expect(vectors.map((v) => v.message.type)).toEqual(
      expect.arrayContaining(Object.keys(MESSAGE_TYPES)),
    );
  });

  for (const v of vectors) {
    it(`${v.name}: encodes to the documented bytes and decodes back`, () => {
      const message = messageFromJson(v.message);
      const { type, payload } = encodeMessage(message);
      expect(toHex(encodeFrame(type, v.seq, payload))).toBe(v.wire);
      const got = frames(new FrameDecoder().push(fromHex(v.wire)));
      expect(got).toHaveLength(1);
      expect(got[0]!.seq).toBe(v.seq);
      const decoded = decodeMessage(got[0]!.type, got[0]!.payload);
      expect(decoded.ok && decoded.message).toEqual(message);
      // The document shows exactly these bytes.
      expect(doc).toContain(hexDump(v.wire));
    });
  }
});

describe("frame decoder", () => {
  const stream = Uint8Array.from(loadVectors().flatMap((v) => [...fromHex(v.wire)]));
  const expected = frames(new FrameDecoder().push(stream));

  it("decodes the same frames however the bytes are split (2000 random splits)", () => {
    expect(expected).toHaveLength(loadVectors().length);
    const rnd = prng(3);
    for (let c = 0; c < 2000; c++) {
      const d = new FrameDecoder();
      const got: DecodeEvent[] = [];
      let i = 0;
      while (i < stream.length) {
        const n = rnd() < 0.3 ? 1 : 1 + Math.floor(rnd() * 64);
        got.push(...d.push(stream.subarray(i, i + n)));
        i += n;
      }
      expect(frames(got)).toEqual(expected);
    }
  });

  it("decodes frames merged into one read, with garbage between them", () => {
    const junk = Uint8Array.of(0x41, 0x54, 0x0d, 0x0a, 0x00, 0x13, 0x37);
    const merged = Uint8Array.from([...junk, ...stream, ...junk, ...stream]);
    const events = new FrameDecoder().push(merged);
    expect(frames(events)).toEqual([...expected, ...expected]);
    expect(events.filter((e) => e.kind === "bad").length).toBeGreaterThanOrEqual(2);
  });

  it("names what is wrong with a damaged block", () => {
    const good = sampleFrame(2, 1);
    const inner = good.subarray(1, good.length - 1);
    const flipped = inner.slice();
    flipped[3] = flipped[3] === 0x55 ? 0x56 : 0x55;
    expect(decodeBlock(flipped)).toMatchObject({ kind: "bad", reason: "crc" });
    expect(decodeBlock(Uint8Array.of(2, 1))).toMatchObject({ kind: "bad", reason: "short" });
    expect(decodeBlock(Uint8Array.of(9, 1))).toMatchObject({ kind: "bad", reason: "cobs" });
    const v2 = cobsEncode(Uint8Array.of(2, 1, 1, 0, 0, 0, 0));
    expect(decodeBlock(v2)).toMatchObject({ kind: "bad", reason: "version" });
  });

  it("discards an oversized frame without growing, then resynchronises", () => {
    const d = new FrameDecoder();
    const huge = new Uint8Array(MAX_ENCODED_FRAME_BYTES * 3).fill(0x42);
    for (let i = 0; i < huge.length; i += 1000) {
      expect(d.push(huge.subarray(i, i + 1000))).toEqual([]);
      expect(d.buffered).toBeLessThanOrEqual(MAX_ENCODED_FRAME_BYTES);
    }
    const events = d.push(sampleFrame(0, 9));
    expect(events[0]).toEqual({ kind: "oversize", wireBytes: huge.length + 1 });
    expect(frames(events)).toHaveLength(1);
    // The largest legal frame still fits.
    const max = encodeFrame(4, 0, new Uint8Array(MAX_PAYLOAD_BYTES).fill(0));
    expect(frames(new FrameDecoder().push(max))).toHaveLength(1);
    expect(() => encodeFrame(4, 0, new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toThrow(RangeError);
  });

  it("takes a frame of exactly 16,384 bytes however it stuffs, and refuses 16,385 however it stuffs", () => {
    expect(MAX_FRAME_BYTES).toBe(16_384);
    expect(MAX_PAYLOAD_BYTES).toBe(16_377);
    // 16,384 bytes with no zero stuff to the most a frame can take: 1 + 16,384 + 64 code bytes.
    expect(MAX_ENCODED_FRAME_BYTES).toBe(16_449);
    for (const fill of [0x00, 0x5a]) {
      const atLimit = encodeFrame(4, 1, new Uint8Array(MAX_PAYLOAD_BYTES).fill(fill));
      const got = new FrameDecoder().push(atLimit);
      expect(got.map((e) => e.kind)).toEqual(["frame"]);
      expect(got[0]!.wireBytes).toBe(atLimit.length);
      if (fill) expect(atLimit.length).toBe(MAX_ENCODED_FRAME_BYTES + 2);
      const over = encodeFrame(4, 1, new Uint8Array(MAX_PAYLOAD_BYTES + 1).fill(fill), {
        allowOversize: true,
      });
      // With zeros the stuffed block is small (16,386 bytes) and fits; the frame is still too big.
      const refused = new FrameDecoder().push(Uint8Array.from([...over, ...sampleFrame(2, 7)]));
      expect(refused.map((e) => e.kind)).toEqual(["oversize", "frame"]);
      expect(refused[0]!.wireBytes).toBe(over.length);
    }
  });

  it("accounts for every byte of a stream in its events: delimiters, empty blocks and damage", () => {
    const junk = Uint8Array.of(0x41, 0x54, 0x0d, 0x0a, 0x00, 0x00, 0x13, 0x37);
    const rnd = prng(11);
    for (let c = 0; c < 200; c++) {
      const parts: number[] = [];
      for (let f = 0; f < 6; f++) {
        if (rnd() < 0.3) parts.push(...junk.subarray(0, 1 + Math.floor(rnd() * junk.length)));
        parts.push(...sampleFrame(f, f));
      }
      const stream = Uint8Array.from(parts);
      const d = new FrameDecoder();
      let counted = 0;
      for (let i = 0; i < stream.length;) {
        const n = 1 + Math.floor(rnd() * 40);
        for (const e of d.push(stream.subarray(i, i + n))) counted += e.wireBytes;
        i += n;
      }
      expect(counted + d.buffered).toBe(stream.length);
    }
    // A frame sent as the protocol says (0x00, block, 0x00) accounts for all of its bytes.
    const one = sampleFrame(1, 0);
    const again = new FrameDecoder().push(Uint8Array.from([...one, ...one]));
    expect(again.map((e) => e.wireBytes)).toEqual([one.length, one.length]);
  });

  it("survives 100,000 random and mutated streams: no throw, bounded, resynchronised", () => {
    const r = runFrameFuzz(100_000, 20261123);
    expect(r.failures).toEqual([]);
    expect(r.cases).toBe(100_000);
    expect(r.maxBuffered).toBeLessThanOrEqual(2048);
    // The cases reach every path: good frames, damage and overflow.
    expect(r.frames).toBeGreaterThan(10_000);
    expect(r.damaged).toBeGreaterThan(10_000);
    expect(r.oversize).toBeGreaterThan(1000);
  });
});

describe("messages", () => {
  const field = (tag: number, value: number[]) => [
    tag,
    value.length >> 8,
    value.length & 0xff,
    ...value,
  ];

  it("refuses malformed payloads and names the field", () => {
    const cases: [number, number[], RegExp][] = [
      [MESSAGE_TYPES.CSR_REQUEST, [], /KEY_TYPE is missing/],
      [MESSAGE_TYPES.CSR_REQUEST, field(TAGS.KEY_TYPE, [0x77]), /key type 0x77 is unknown/],
      [MESSAGE_TYPES.CSR_REQUEST, [TAGS.KEY_TYPE, 0, 5, 1], /runs past the end/],
      [
        MESSAGE_TYPES.CSR_REQUEST,
        [...field(TAGS.KEY_TYPE, [1]), ...field(TAGS.KEY_TYPE, [1])],
        /KEY_TYPE appears 2 times/,
      ],
      [MESSAGE_TYPES.STORED, field(TAGS.LEAF_SHA256, [1, 2]), /must be 32 bytes/],
      [
        MESSAGE_TYPES.IDENTIFY,
        [
          ...field(TAGS.PROTOCOL, [1]),
          ...field(TAGS.DEVICE_ID, [0xff, 0xfe]),
          ...field(TAGS.KEY_TYPES, [1]),
        ],
        /DEVICE_ID is not UTF-8/,
      ],
      [
        MESSAGE_TYPES.IDENTIFY,
        [
          ...field(TAGS.PROTOCOL, [1]),
          ...field(TAGS.DEVICE_ID, new Array(300).fill(0x41)),
          ...field(TAGS.KEY_TYPES, [1]),
        ],
        /longer than 256/,
      ],
      [0x55, [], /type 0x55 is unknown/],
    ];
    for (const [type, payload, reason] of cases) {
      const r = decodeMessage(type, Uint8Array.from(payload));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(reason);
    }
  });

  it("tells an IDENTIFY without a device id from a garbled one", () => {
    const base = [...field(TAGS.PROTOCOL, [1]), ...field(TAGS.KEY_TYPES, [1])];
    const id = field(TAGS.DEVICE_ID, [0x61]);
    const cases: [number[], "DEVICE_ID" | undefined, RegExp][] = [
      [base, "DEVICE_ID", /DEVICE_ID is missing/],
      [[...base, ...field(TAGS.DEVICE_ID, [])], "DEVICE_ID", /DEVICE_ID is empty/],
      [[...base, ...id, ...id], undefined, /DEVICE_ID appears 2 times/],
    ];
    for (const [payload, missing, reason] of cases) {
      const r = decodeMessage(MESSAGE_TYPES.IDENTIFY, Uint8Array.from(payload));
      expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(reason) });
      expect(r.ok ? "decoded" : r.missing).toBe(missing);
    }
  });

  it("skips unknown fields and unknown key types", () => {
    const payload = Uint8Array.from([
      ...field(0x7e, [1, 2, 3]),
      ...field(TAGS.PROTOCOL, [1]),
      ...field(TAGS.DEVICE_ID, [0x61]),
      ...field(TAGS.KEY_TYPES, [0x99, 0x11]),
    ]);
    const r = decodeMessage(MESSAGE_TYPES.IDENTIFY, payload);
    expect(r).toEqual({
      ok: true,
      message: {
        type: "IDENTIFY",
        protocol: 1,
        deviceId: "a",
        model: "",
        firmware: "",
        keyTypes: ["rsa-2048"],
      },
    });
  });

  it("never throws on random payloads", () => {
    const rnd = prng(4);
    for (let c = 0; c < 20_000; c++) {
      const p = Uint8Array.from({ length: Math.floor(rnd() * 80) }, () => Math.floor(rnd() * 256));
      const type = Object.values(MESSAGE_TYPES)[c % 8]!;
      expect(() => decodeMessage(type, p)).not.toThrow();
    }
  });
});
