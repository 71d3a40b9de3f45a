/**
 * The station's clock while it waits for the device's answer
 * (docs/serial-protocol.md, "Timeouts and retries"): after a silence it sends
 * its frame again, a few times, then waits out the deadline. Only the side
 * that waits keeps time; every byte that arrives counts as a sign of life.
 */
import type { LineTimeouts } from "../../domain/config.js";
import type { MessageName } from "../../domain/serial/messages.js";

export interface Awaiting {
  /** The frame the answer is for, as it went on the wire (sent again unchanged). */
  bytes: Uint8Array;
  expect: MessageName;
  deadlineMs: number;
  resends: number;
}

export class AnswerClock {
  private awaiting: Awaiting | null = null;
  private lastRx = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly timeouts: LineTimeouts,
    /** Sends the frame again. */
    private readonly resend: (bytes: Uint8Array) => void,
    /** The deadline passed without an answer. */
    private readonly expired: (expect: MessageName, deadlineMs: number) => void,
  ) {}

  /** The message waited for, if any. */
  get expect(): MessageName | null {
    return this.awaiting?.expect ?? null;
  }

  /** Starts waiting for `expect` in answer to `bytes`, which are about to be sent. */
  wait(bytes: Uint8Array, expect: MessageName, deadlineMs: number): void {
    this.awaiting = { bytes, expect, deadlineMs, resends: 0 };
    this.lastRx = Date.now();
    this.arm();
  }

  /** Bytes arrived: the silence starts again. */
  heard(): void {
    this.lastRx = Date.now();
    if (this.awaiting) this.arm();
  }

  /** The answer came (or the exchange ended): no more repeats, no deadline. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.awaiting = null;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const a = this.awaiting;
    if (!a) return;
    const t = this.timeouts;
    const quiet = Date.now() - this.lastRx;
    const nextRetry = a.resends < t.retries ? t.retryMs * (a.resends + 1) : Infinity;
    const wait = Math.max(0, Math.min(nextRetry, a.deadlineMs) - quiet);
    this.timer = setTimeout(() => this.onSilence(), wait);
  }

  private onSilence(): void {
    this.timer = null;
    const a = this.awaiting;
    if (!a) return;
    const t = this.timeouts;
    const quiet = Date.now() - this.lastRx;
    if (quiet >= a.deadlineMs) {
      this.cancel();
      this.expired(a.expect, a.deadlineMs);
      return;
    }
    if (a.resends < t.retries && quiet >= t.retryMs * (a.resends + 1)) {
      a.resends++;
      this.resend(a.bytes);
    }
    this.arm();
  }
}
