/**
 * Keeps a target's requests under its ceiling. Starts are scheduled in
 * slots 1/maxRps apart (a late start does not push later slots back, so the
 * rate holds up when the event loop is busy); and, on the times requests
 * actually start, no window of one second (plus 3% for jitter on the way to
 * AWS) ever holds more than maxRps of them.
 */
export class Pacer {
  private readonly cap: number;
  private readonly windowMs: number;
  private readonly spacingMs: number;
  private readonly starts: number[] = [];
  private slot = 0;
  private chain: Promise<void> = Promise.resolve();
  /** Requests let through. */
  count = 0;

  constructor(maxRps: number) {
    this.cap = Math.max(1, Math.floor(maxRps));
    this.windowMs = ((this.cap * 1000) / maxRps) * 1.03;
    this.spacingMs = 1000 / maxRps;
  }

  /** Resolves when the next request may start. */
  take(): Promise<void> {
    this.chain = this.chain.then(() => this.reserve());
    return this.chain;
  }

  private async reserve(): Promise<void> {
    // Far behind (idle, or a long stall): start a fresh schedule rather than burst.
    const t0 = performance.now();
    if (this.slot < t0 - this.windowMs) this.slot = t0;
    const slot = this.slot;
    this.slot += this.spacingMs;
    for (;;) {
      const now = performance.now();
      let at = Math.max(now, slot);
      if (this.starts.length >= this.cap)
        at = Math.max(at, this.starts[this.starts.length - this.cap]! + this.windowMs);
      if (at <= now) break;
      await new Promise((r) => setTimeout(r, at - now));
    }
    this.starts.push(performance.now());
    if (this.starts.length > this.cap) this.starts.splice(0, this.starts.length - this.cap);
    this.count++;
  }
}
