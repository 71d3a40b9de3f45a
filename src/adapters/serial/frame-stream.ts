/**
 * The frame codec as a stream: bytes in, decode events out (object mode).
 * It only buffers, at most one maximum frame (the decoder's cap), and
 * delegates to the pure decoder; chunk boundaries do not matter.
 */
import { Transform, type TransformCallback } from "node:stream";
import {
  FrameDecoder,
  MAX_ENCODED_FRAME_BYTES,
  type DecodeEvent,
} from "../../domain/serial/frame.js";

export interface FrameStreamOptions {
  /** Most bytes held while waiting for a delimiter (default: one maximum frame). */
  capacity?: number;
}

export class FrameStream extends Transform {
  private readonly decoder: FrameDecoder;

  constructor(opts: FrameStreamOptions = {}) {
    super({ readableObjectMode: true });
    this.decoder = new FrameDecoder(opts.capacity ?? MAX_ENCODED_FRAME_BYTES);
  }

  /** Bytes held waiting for a delimiter. */
  get buffered(): number {
    return this.decoder.buffered;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    for (const e of this.decoder.push(chunk)) this.push(e satisfies DecodeEvent);
    done();
  }

  /** An unterminated frame at the end of the stream is dropped: it was never complete. */
  override _flush(done: TransformCallback): void {
    this.decoder.reset();
    done();
  }
}
