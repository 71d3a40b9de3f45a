import { expect, it } from "vitest";
import { Pacer, TargetPacer } from "../../../src/app/sync/pacer.js";

/**
 * A receiver that stops now and then, as AWS's front end or the emulator under
 * load does: what is sent while it is stopped arrives (is counted) when it
 * resumes, all at once; each answer leaves a little after its arrival.
 */
class StallingReceiver {
  readonly arrivals: number[] = [];
  private stalledUntil = 0;
  private n = 0;

  constructor(
    private readonly every: number,
    private readonly stallMs: number,
  ) {}

  /** Sends one request; resolves when its answer is back. */
  async send(): Promise<void> {
    const sent = performance.now();
    const arrival = Math.max(sent, this.stalledUntil);
    await new Promise((r) => setTimeout(r, arrival - sent));
    this.arrivals.push(performance.now());
    if (++this.n % this.every === 0) this.stalledUntil = performance.now() + this.stallMs;
    await new Promise((r) => setTimeout(r, 2));
  }

  /** Most arrivals in any window of one second. */
  busiestSecond(): number {
    const t = [...this.arrivals].sort((a, b) => a - b);
    let most = 0;
    for (let i = 0, j = 0; i < t.length; i++) {
      while (t[i]! - t[j]! >= 1000) j++;
      most = Math.max(most, i - j + 1);
    }
    return most;
  }
}

it("never lets the receiver count more than maxRps arrivals in a second, when it stalls and takes a backlog at once", async () => {
  const maxRps = 50;
  const pacer = new Pacer(maxRps);
  const receiver = new StallingReceiver(40, 350);
  let left = 220;
  // Ten requests in flight at once, as the sync runs at 200 requests per second.
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (left-- > 0) {
        const answered = await pacer.take();
        try {
          await receiver.send();
        } finally {
          answered();
        }
      }
    }),
  );
  expect(receiver.arrivals).toHaveLength(220);
  expect(pacer.count).toBe(220);
  expect(receiver.busiestSecond()).toBeLessThanOrEqual(maxRps);
}, 60_000);

it("paces each API under its own quota and every request under the target's ceiling", async () => {
  // A slow API (4 a second) among fast ones, at a target allowing 40.
  const pacer = new TargetPacer(40, { Slow: 4 });
  const arrivals: { op: string; at: number }[] = [];
  const ops = [...Array<string>(10).fill("Slow"), ...Array<string>(30).fill("Fast")];
  await Promise.all(
    ops.map(async (op) => {
      const answered = await pacer.take(op);
      arrivals.push({ op, at: performance.now() });
      answered();
    }),
  );
  const busiest = (list: number[]) => {
    let most = 0;
    for (let i = 0, j = 0; i < list.length; i++) {
      while (list[i]! - list[j]! >= 1000) j++;
      most = Math.max(most, i - j + 1);
    }
    return most;
  };
  const at = (op?: string) =>
    arrivals
      .filter((a) => !op || a.op === op)
      .map((a) => a.at)
      .sort((a, b) => a - b);
  expect(pacer.count).toBe(40);
  expect(busiest(at("Slow"))).toBeLessThanOrEqual(4);
  expect(busiest(at())).toBeLessThanOrEqual(40);
  // The slow API does not hold the others back: they are all through before it is.
  expect(Math.max(...at("Fast"))).toBeLessThan(Math.max(...at("Slow")));
}, 30_000);
