/**
 * The log head part of `linesign bench`: what the auditor's public copy of the
 * head costs a head move. The same station and token move a head through three
 * data-object stores in turn, rounds interleaved so load falls on all three:
 * the private register alone (the binding head), the public copy on every
 * move (a second token write and an audit-key signature each), and the public
 * copy as the station keeps it (at most once per audit.publicHeadEveryMs,
 * default 1,000 ms). Figures are head moves per second and their ratios.
 */
import type { Station } from "../compose.js";
import { DataObjectHeadStore, type HeadStore } from "../app/head-store.js";
import { verifySignature } from "../app/audit.js";

export interface HeadBenchResult {
  moves: number;
  /** Head moves per second: private register only, public copy every move, public copy throttled. */
  movesPerSec: { privateOnly: number; publicEveryMove: number; publicThrottled: number };
  /** publicEveryMove / privateOnly and publicThrottled / privateOnly. */
  everyMoveToPrivate: number;
  throttledToPrivate: number;
  throttleMs: number;
}

/** Moves a head `moves` times through each store (in rounds), on the bench's token. */
export async function benchHead(
  s: Station,
  moves: number,
  log: (t: string) => void,
): Promise<HeadBenchResult> {
  const throttleMs = s.config.audit.publicHeadEveryMs ?? 1000;
  // The audit key exists from here on (the public copy is signed by the key the log trusts).
  await s.checkpointer.checkpoint();
  const withPublic = (everyMs: number): HeadStore =>
    new DataObjectHeadStore(s.ctx, {
      signer: () => s.checkpointer.publicSigner(),
      verify: verifySignature,
      everyMs,
      now: () => Date.now(),
    });
  const stores = {
    privateOnly: new DataObjectHeadStore(s.ctx),
    publicEveryMove: withPublic(0),
    publicThrottled: withPublic(throttleMs),
  };
  const ms = { privateOnly: 0, publicEveryMove: 0, publicThrottled: 0 };
  const rounds = 4;
  const per = Math.max(1, Math.floor(moves / rounds));
  // The bench's throwaway station's own register is rewritten far past its log: run last.
  let seq = 1_000_000_000;
  log(`bench: ${per * rounds} log head moves through each of three head stores`);
  for (let r = 0; r < rounds; r++)
    for (const name of Object.keys(stores) as (keyof typeof stores)[]) {
      const t0 = performance.now();
      for (let i = 0; i < per; i++)
        await stores[name].write({
          station: s.ctx.stationId,
          seq: seq++,
          hash: "0".repeat(64),
          ts: new Date().toISOString(),
        });
      ms[name] += performance.now() - t0;
    }
  const rate = (v: number): number => Math.round(((per * rounds) / v) * 1000);
  const movesPerSec = {
    privateOnly: rate(ms.privateOnly),
    publicEveryMove: rate(ms.publicEveryMove),
    publicThrottled: rate(ms.publicThrottled),
  };
  return {
    moves: per * rounds,
    movesPerSec,
    everyMoveToPrivate: Number((movesPerSec.publicEveryMove / movesPerSec.privateOnly).toFixed(2)),
    throttledToPrivate: Number((movesPerSec.publicThrottled / movesPerSec.privateOnly).toFixed(2)),
    throttleMs,
  };
}
