import { describe, expect, it } from "vitest";
import { FrameStream } from "../../../src/adapters/serial/frame-stream.js";
import type { DecodeEvent } from "../../../src/domain/serial/frame.js";
import { prng, sampleFrame } from "../../../fixtures/frame-fuzz.js";

async function run(stream: FrameStream, chunks: Uint8Array[]): Promise<DecodeEvent[]> {
  const out: DecodeEvent[] = [];
  stream.on("data", (e: DecodeEvent) => out.push(e));
  for (const c of chunks) stream.write(Buffer.from(c));
  stream.end();
  await new Promise((r) => stream.on("end", r));
  return out;
}

describe("FrameStream", () => {
  it("turns bytes split anywhere into the frames they carry", async () => {
    const bytes = Uint8Array.from([
      ...sampleFrame(0, 1),
      ...sampleFrame(3, 2),
      ...sampleFrame(1, 3),
    ]);
    const rnd = prng(9);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(rnd() * 17);
      chunks.push(bytes.subarray(i, i + n));
      i += n;
    }
    const events = await run(new FrameStream(), chunks);
    expect(events.map((e) => (e.kind === "frame" ? e.frame.seq : e.kind))).toEqual([1, 2, 3]);
  });

  it("holds at most its capacity and reports the overflow", async () => {
    const s = new FrameStream({ capacity: 64 });
    const seen: number[] = [];
    s.on("data", () => undefined);
    for (let i = 0; i < 50; i++) {
      s.write(Buffer.alloc(10, 0x41));
      seen.push(s.buffered);
    }
    expect(Math.max(...seen)).toBeLessThanOrEqual(64);
    const events: DecodeEvent[] = [];
    s.removeAllListeners("data");
    s.on("data", (e: DecodeEvent) => events.push(e));
    s.write(Buffer.from(sampleFrame(2, 5)));
    s.end();
    await new Promise((r) => s.on("end", r));
    expect(events[0]).toEqual({ kind: "oversize", wireBytes: 501 });
    expect(events[1]).toMatchObject({ kind: "frame", frame: { seq: 5 } });
  });
});
