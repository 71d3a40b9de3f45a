/**
 * Keeps a target's requests under its ceiling as the receiver counts them:
 * in no window of one second does AWS see more than maxRps of them arrive.
 *
 * A token bucket of maxRps tokens. A request takes a token before it is sent
 * and hands it back when its answer (or failure) is seen; the token is free
 * again one second after that. A request arrives before it is answered, so a
 * request sent on a token arrives more than a second after the arrival of the
 * one that held the token before it, and any maxRps + 1 requests include two
 * on the same token: no second holds more than maxRps arrivals, whatever the
 * delays on the way (the HTTP agent's queue, the network, a receiver that
 * stalls and then takes a backlog at once). A retry is a request of its own
 * and takes its own token. Starts are also spaced 1/maxRps apart (a late
 * start does not push later slots back), so the bucket is not spent in a
 * burst.
 */
export class Pacer {
  private readonly cap: number;
  private readonly holdMs: number;
  private readonly spacingMs: number;
  private slot = 0;
  private chain: Promise<void> = Promise.resolve();
  /** Tokens taken whose requests are not answered yet. */
  private out = 0;
  /** When each handed-back token is free again, oldest first (hand-backs only grow in time). */
  private readonly cooling: number[] = [];
  private wake: (() => void) | null = null;
  /** Requests let through. */
  count = 0;

  /** @param maxRps the ceiling, requests per second (at least 1 is let through at a time). */
  constructor(maxRps: number) {
    this.cap = Math.max(1, Math.floor(maxRps));
    // A fractional ceiling holds each token longer; 1 ms covers the clocks' rounding.
    this.holdMs = (this.cap * 1000) / maxRps + 1;
    this.spacingMs = 1000 / maxRps;
  }

  /**
   * Resolves when the next request may start, with the function to call once
   * its answer or failure is seen (calling it again does nothing). Until then
   * the request holds its token.
   */
  take(): Promise<() => void> {
    const taken = this.chain.then(() => this.reserve());
    this.chain = taken.then(() => undefined);
    return taken;
  }

  private async reserve(): Promise<() => void> {
    const t0 = performance.now();
    // Far behind (idle, or a long stall): start a fresh schedule rather than burst.
    if (this.slot < t0 - 1000) this.slot = t0;
    const slot = this.slot;
    this.slot += this.spacingMs;
    for (;;) {
      const now = performance.now();
      while (this.cooling.length > 0 && this.cooling[0]! <= now) this.cooling.shift();
      const free = this.cap - this.out - this.cooling.length;
      if (free > 0 && slot <= now) break;
      if (free > 0 || this.cooling.length > 0) {
        const until = free > 0 ? slot : this.cooling[0]!;
        await new Promise((r) => setTimeout(r, Math.max(1, until - now)));
      } else {
        // Every token is out with a request: wait for an answer.
        await new Promise<void>((r) => (this.wake = r));
      }
    }
    this.out++;
    this.count++;
    let handedBack = false;
    return () => {
      if (handedBack) return;
      handedBack = true;
      this.out--;
      this.cooling.push(performance.now() + this.holdMs);
      const w = this.wake;
      this.wake = null;
      w?.();
    };
  }
}
