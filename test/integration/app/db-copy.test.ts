/**
 * The second copy's pacing, on a real SQLite file: group commits that come
 * while a copy runs are taken by the next one, which starts no sooner than
 * the interval allows; never two at once.
 */
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { SqliteStationStore } from "../../../src/adapters/db/station-store.js";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import { DatabaseCopy, type CopyState } from "../../../src/app/db-copy.js";
import type { AppContext } from "../../../src/app/context.js";

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

describe("the second copy's pacing", () => {
  it("coalesces commits: one copy at a time, at most one per interval, ending current", async () => {
    const dir = mkdtempSync(join(tmpdir(), "linesign-copy-pace-"));
    const store = SqliteStationStore.open(join(dir, "station.db"), {
      create: true,
      hash: nodeChainHash,
    });
    const runs: { start: number; end: number }[] = [];
    let running = 0;
    let most = 0;
    let started!: () => void;
    const firstStarted = new Promise<void>((r) => (started = r));
    const writeCopy = async (path: string) => {
      const start = Date.now();
      started();
      most = Math.max(most, ++running);
      try {
        return await store.writeCopy(path);
      } finally {
        running--;
        runs.push({ start, end: Date.now() });
      }
    };
    let state: CopyState | null = null;
    // The store as the station sees it, each copy counted.
    const counted = {
      head: () => store.head(),
      eventAt: (seq: number) => store.eventAt(seq),
      appendEvent: (e: Parameters<typeof store.appendEvent>[0]) => store.appendEvent(e),
      writeCopy,
    };
    const ctx = {
      store: counted,
      logger: quiet,
      clock: { now: () => new Date() },
      actor: "test",
    } as unknown as AppContext;
    const path = join(dir, "copy.db");
    const copy = new DatabaseCopy(
      ctx,
      { path, trigger: "commit", everySeconds: 1 },
      {
        read: () => state,
        write: (s) => (state = s),
        identify: (p) => {
          const st = statSync(p, { throwIfNoEntry: false });
          return st ? { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } : null;
        },
      },
    );
    const append = (i: number) =>
      store.appendEvent({
        actor: "test",
        action: "test.commit",
        subject: String(i),
        outcome: "ok",
        details: {},
      });
    // A burst of commits, then more while the first copy runs and after it.
    for (let i = 0; i < 20; i++) {
      append(i);
      copy.committed();
    }
    await firstStarted;
    for (let i = 20; i < 40; i++) {
      append(i);
      copy.committed();
    }
    await copy.settled();
    expect(runs.length).toBe(2);
    expect(most).toBe(1);
    expect(runs[1]!.start - runs[0]!.start).toBeGreaterThanOrEqual(990);
    const db = new Database(path, { readonly: true });
    const last = db.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").get();
    db.close();
    expect(last).toEqual(store.head());
    expect(state!.head?.seq).toBe(store.head()!.seq);
    expect(copy.status()).toMatchObject({ entriesBehind: 0, lastError: null });
    await copy.close();
    store.close();
  }, 30_000);
});
