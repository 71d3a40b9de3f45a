/**
 * Keeps a target's requests under its ceiling: request starts are spaced at
 * least 1/maxRps apart (with 2% to spare for jitter on the way), however
 * many are in flight.
 */
export class Pacer {
  private next = 0;
  private readonly intervalMs: number;
  /** Requests let through. */
  count = 0;

  constructor(maxRps: number) {
    this.intervalMs = (1000 / maxRps) * 1.02;
  }

  async take(): Promise<void> {
    const now = performance.now();
    const at = Math.max(now, this.next);
    this.next = at + this.intervalMs;
    this.count++;
    if (at > now) await new Promise((r) => setTimeout(r, at - now));
  }
}
