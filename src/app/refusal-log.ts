/**
 * Refusals recorded without letting them flood the log. Anyone who finds the
 * service's socket or port, or a device on a serial port, can be refused
 * hundreds of times a second; each refusal written as its own fsynced entry
 * would fill the disk and bury the refusals that matter.
 *
 * Per interval (default 60 s), the first refusal of each source and reason is
 * written at once, as it happens; the rest of that interval are counted, and
 * one summary entry per source and reason (with the count, the first and the
 * last time) is written when the interval ends or the station stops. At most
 * `maxKeys` sources and reasons are told apart per interval; beyond that every
 * refusal is counted under one overflow entry. So an interval writes at most
 * 2 x maxKeys + 1 entries, whatever is sent.
 */
import type { EventInput } from "../domain/event-log.js";
import { cut } from "../domain/text.js";
import type { AppContext } from "./context.js";

export interface RefusalLogOptions {
  /** Milliseconds per interval. Default 60,000. */
  intervalMs?: number;
  /** Sources and reasons told apart per interval. Default 128. */
  maxKeys?: number;
  /** The clock (tests move it). Default ctx.clock. */
  now?: () => number;
  /** Whether to flush by a timer (the service); off for tests that flush by hand. Default true. */
  timer?: boolean;
}

/** One refusal: who or what was refused (`source`), why (`reason`), and the entry to write. */
export interface Refusal {
  /** Where it came from: a transport and caller, a serial port. */
  source: string;
  /** A stable reason: the code and what was refused (not the free text, which may vary). */
  reason: string;
  entry: EventInput;
}

interface Bucket {
  entry: EventInput;
  source: string;
  /** Refusals after the first one that was written. */
  more: number;
  firstAt: number;
  lastAt: number;
}

const OVERFLOW = "\u0000overflow";

export class RefusalLog {
  private readonly buckets = new Map<string, Bucket>();
  private intervalStart: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly intervalMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly useTimer: boolean;
  /** Watchers told of each source's count in the interval (a port shown as misbehaving). */
  private readonly listeners: ((source: string, count: number) => void)[] = [];

  constructor(
    private readonly ctx: AppContext,
    opts: RefusalLogOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.maxKeys = opts.maxKeys ?? 128;
    this.now = opts.now ?? (() => ctx.clock.now().getTime());
    this.useTimer = opts.timer ?? true;
    this.intervalStart = this.now();
  }

  /** Told of every refusal with its source's count so far in this interval. */
  onRefusal(listener: (source: string, count: number) => void): void {
    this.listeners.push(listener);
  }

  /** Records one refusal (written now, or counted into the interval's summary). Never throws. */
  record(r: Refusal): void {
    const t = this.now();
    if (t - this.intervalStart >= this.intervalMs) this.flush();
    // An interval starts at its first refusal.
    if (this.buckets.size === 0) this.intervalStart = t;
    const key = `${r.source}\u0000${r.reason}`;
    const bucket = this.buckets.get(key);
    if (bucket) {
      bucket.more++;
      bucket.lastAt = t;
    } else if (this.buckets.size < this.maxKeys) {
      this.buckets.set(key, { entry: r.entry, source: r.source, more: 0, firstAt: t, lastAt: t });
      this.write(r.entry);
      this.arm();
    } else {
      const over = this.buckets.get(OVERFLOW);
      if (over) {
        over.more++;
        over.lastAt = t;
      } else
        this.buckets.set(OVERFLOW, {
          entry: {
            ...r.entry,
            subject: "(many)",
            code: r.entry.code ?? null,
            message: `More than ${this.maxKeys} different refusals in one interval: counted together.`,
            details: {},
          },
          source: "(many)",
          more: 1,
          firstAt: t,
          lastAt: t,
        });
    }
    let count = 0;
    for (const b of this.buckets.values()) if (b.source === r.source) count += b.more + 1;
    for (const l of this.listeners) l(r.source, count);
  }

  /** Writes the interval's summaries and starts a new interval. Never throws. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const buckets = [...this.buckets.values()];
    this.buckets.clear();
    this.intervalStart = this.now();
    for (const b of buckets) {
      if (b.more === 0) continue;
      this.write({
        ...b.entry,
        message: cut(
          `${b.more} more refusal${b.more === 1 ? "" : "s"} like this: ${b.entry.message ?? ""}`,
          500,
        ),
        details: {
          ...b.entry.details,
          repeated: b.more,
          firstAt: new Date(b.firstAt).toISOString(),
          lastAt: new Date(b.lastAt).toISOString(),
        },
      });
    }
  }

  /** Writes what is pending; the station stops. */
  close(): void {
    this.flush();
  }

  private arm(): void {
    if (!this.useTimer || this.timer) return;
    this.timer = setTimeout(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  private write(entry: EventInput): void {
    try {
      this.ctx.store.appendEvent(entry);
    } catch (e) {
      this.ctx.logger.error({ err: e, action: entry.action }, "could not record a refusal");
    }
  }
}
