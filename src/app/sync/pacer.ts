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

/**
 * AWS IoT's default rate quotas per API (requests per second, per account and
 * region; adjustable), from AWS's service quotas for AWS IoT Core ("CreateThing
 * API TPS" and the like, and the General Reference's API throttling table).
 * The certificate and CA calls have no figure here: the target's ceiling
 * (default 10 per second, AWS's figure for them) paces them.
 */
export const API_RATE_QUOTAS: Readonly<Record<string, number>> = {
  CreateThing: 100,
  DescribeThing: 350,
  AttachThingPrincipal: 100,
  DetachThingPrincipal: 100,
  AddThingToThingGroup: 100,
  AttachPolicy: 15,
  DetachPolicy: 15,
  CreatePolicy: 10,
  GetPolicy: 15,
};

/**
 * A target's pacing: the target's ceiling over all its requests, and under it
 * each API at its own AWS quota (or the ceiling, if that is lower). A request
 * takes its API's token first, then the target's; it hands both back when
 * answered.
 */
export class TargetPacer {
  private readonly all: Pacer;
  private readonly perApi = new Map<string, Pacer>();

  /** @param maxRps the target's ceiling; @param quotas per-API ceilings (default AWS's). */
  constructor(
    private readonly maxRps: number,
    private readonly quotas: Readonly<Record<string, number>> = API_RATE_QUOTAS,
  ) {
    this.all = new Pacer(maxRps);
  }

  /** Requests let through. */
  get count(): number {
    return this.all.count;
  }

  /** Like Pacer.take, for a request of `operation` (none: the target's ceiling only). */
  async take(operation?: string): Promise<() => void> {
    const quota = operation ? this.quotas[operation] : undefined;
    let own: (() => void) | null = null;
    if (quota !== undefined && quota < this.maxRps) {
      let p = this.perApi.get(operation!);
      if (!p) this.perApi.set(operation!, (p = new Pacer(quota)));
      own = await p.take();
    }
    const shared = await this.all.take();
    return () => {
      shared();
      own?.();
    };
  }
}
