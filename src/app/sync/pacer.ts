/**
 * Keeps a target's requests under its ceiling. Two rules, on the times
 * requests actually start: starts are at least 1/maxRps apart (no bursts),
 * and no window of one second (plus 3% for jitter on the way to AWS) holds
 * more than maxRps starts, however late a timer fired.
 */
export class Pacer {
  private readonly cap: number;
  private readonly windowMs: number;
  private readonly spacingMs: number;
  private readonly starts: number[] = [];
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
    for (;;) {
      const now = performance.now();
      const last = this.starts.at(-1);
      let at = last === undefined ? now : Math.max(now, last + this.spacingMs);
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
