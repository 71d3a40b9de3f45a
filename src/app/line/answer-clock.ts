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
  /** When the frame first went out, and when it last went out (first time or a repeat). */
  firstSentAt: number;
  lastSentAt: number;
}

/**
 * A repeat goes out after `retryMs` of silence, counted from the later of the
 * frame's last sending (first or repeat) and the last byte received, at most
 * `retries` times. The deadline is `deadlineMs` of silence counted from the
 * later of the first sending and the last byte received: repeats do not
 * restart it.
 */
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
    const now = Date.now();
    this.awaiting = { bytes, expect, deadlineMs, resends: 0, firstSentAt: now, lastSentAt: now };
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

  /** When the next repeat is due and when the deadline passes (ms since the epoch). */
  private due(a: Awaiting): { retryAt: number; deadlineAt: number } {
    const t = this.timeouts;
    return {
      retryAt: a.resends < t.retries ? Math.max(a.lastSentAt, this.lastRx) + t.retryMs : Infinity,
      deadlineAt: Math.max(a.firstSentAt, this.lastRx) + a.deadlineMs,
    };
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const a = this.awaiting;
    if (!a) return;
    const { retryAt, deadlineAt } = this.due(a);
    const wait = Math.max(0, Math.min(retryAt, deadlineAt) - Date.now());
    this.timer = setTimeout(() => this.onSilence(), wait);
  }

  private onSilence(): void {
    this.timer = null;
    const a = this.awaiting;
    if (!a) return;
    const now = Date.now();
    const { retryAt, deadlineAt } = this.due(a);
    if (now >= deadlineAt) {
      this.cancel();
      this.expired(a.expect, a.deadlineMs);
      return;
    }
    if (now >= retryAt) {
      a.resends++;
      a.lastSentAt = now;
      this.resend(a.bytes);
    }
    this.arm();
  }
}
