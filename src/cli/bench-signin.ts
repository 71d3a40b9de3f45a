/**
 * The bench's sign-in figures: what one sign-in's passphrase check costs and
 * what is left of the event loop (which every port of the line shares) while
 * a user loops sign-ins, before (scryptSync N=2^14 on the event loop, as the
 * station did) and after (scrypt N=2^17 in libuv's thread pool), in one run.
 */
import { randomBytes, scryptSync } from "node:crypto";
import { hashPassphrase, passphraseMatches } from "../app/users.js";

export interface SignInBenchResult {
  /** Wall milliseconds per sign-in's check. */
  msPerSignIn: { before: number; after: number };
  afterToBefore: number;
  /** 1 ms timers the event loop delivered per second: idle, and while a user loops sign-ins. */
  loopTurnsPerSec: { idle: number; before: number; after: number };
  /** What is left of the idle rate while a user loops sign-ins. */
  ofIdle: { before: number; after: number };
  /** The 99th percentile of a 1 ms timer's lateness, ms. */
  loopLagMsP99: { idle: number; before: number; after: number };
}

async function window(
  signIn: (() => Promise<unknown>) | null,
  ms: number,
): Promise<{ turnsPerSec: number; lagP99: number; msPerSignIn: number }> {
  const lags: number[] = [];
  let stop = false;
  let count = 0;
  let spent = 0;
  const ticker = (async () => {
    while (!stop)
      await new Promise<void>((resolve) => {
        const t0 = performance.now();
        setTimeout(() => {
          lags.push(Math.max(0, performance.now() - t0 - 1));
          resolve();
        }, 1);
      });
  })();
  const looper = (async () => {
    while (!stop && signIn) {
      const t0 = performance.now();
      await signIn();
      spent += performance.now() - t0;
      count++;
      // The next sign-in arrives as a new request would: in a later turn of the loop.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, ms));
  stop = true;
  await Promise.all([ticker, looper]);
  lags.sort((a, b) => a - b);
  return {
    turnsPerSec: Math.round(lags.length / (ms / 1000)),
    lagP99: Number((lags[Math.floor(lags.length * 0.99)] ?? 0).toFixed(1)),
    msPerSignIn: count ? Number((spent / count).toFixed(1)) : 0,
  };
}

export async function benchSignIn(
  log: (line: string) => void,
  ms = 1500,
): Promise<SignInBenchResult> {
  log("bench: sign-in cost and the event loop while a user loops sign-ins (before and after)");
  const pass = "a-user-looping-sign-ins";
  const salt = randomBytes(16);
  const stored = await hashPassphrase(pass);
  const idle = await window(null, ms);
  const before = await window(async () => {
    scryptSync(pass, salt, 32, { N: 2 ** 14, r: 8, p: 1 });
  }, ms);
  const after = await window(() => passphraseMatches(pass, stored), ms);
  const r = (x: number) => Number(x.toFixed(2));
  return {
    msPerSignIn: { before: before.msPerSignIn, after: after.msPerSignIn },
    afterToBefore: r(after.msPerSignIn / before.msPerSignIn),
    loopTurnsPerSec: {
      idle: idle.turnsPerSec,
      before: before.turnsPerSec,
      after: after.turnsPerSec,
    },
    ofIdle: {
      before: r(before.turnsPerSec / idle.turnsPerSec),
      after: r(after.turnsPerSec / idle.turnsPerSec),
    },
    loopLagMsP99: { idle: idle.lagP99, before: before.lagP99, after: after.lagP99 },
  };
}
