/**
 * Walks ranges of the event log on worker threads (LogRangeWalker): each
 * thread opens the station's file read-only with a connection of its own
 * (WAL lets readers run beside each other and beside a writing line) and
 * walks its range with the same ChainWalker and node hash as the station's
 * thread. Entries are append-only, so a range below the head as it stood
 * when the walk began is the same whatever the line appends meanwhile.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { LinesignError } from "../../domain/errors.js";
import type { RangeWalk } from "../../domain/event-log.js";
import type { LogRange, LogRangeWalker } from "../../domain/ports.js";
import type { Db } from "./database.js";
import type { WalkJob, WalkMessage } from "./log-walk-worker.js";
import { storageError } from "./storage-errors.js";

/**
 * Entries a thread reads per page: what it holds in memory at once. Smaller
 * than the station thread's page (which sets how often its event loop turns):
 * a thread's heap starts small and grows to what it holds, and every MB it
 * grows is the process's resident memory while the walk runs.
 */
const PAGE = 256;
/** The young generation of a thread's heap, in MB (see PAGE). */
const YOUNG_MB = 2;
/** SQLite's page cache per thread, in KiB: a walk reads each page once. */
const CACHE_KIB = 512;

/** The worker script: beside this file when built; from dist/ when this runs as TypeScript source (tests). */
function workerScript(): URL {
  const here = new URL("./log-walk-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL("../../../dist/src/adapters/db/log-walk-worker.js", import.meta.url);
}

type Outcome =
  | { kind: "walked"; walk: RangeWalk }
  | { kind: "not started"; why: string }
  | { kind: "failed"; error: LinesignError };

export class ThreadedLogWalker implements LogRangeWalker {
  /**
   * @param db the store's own connection: its file is opened again by each thread
   * @param path the station's database as named to the operator (in error messages)
   * @param onNotStarted told why the threads could not start (the caller then walks in its own thread)
   */
  constructor(
    private readonly db: Db,
    private readonly path: string,
    private readonly onNotStarted: (why: string) => void = () => undefined,
  ) {}

  span(): { first: number; last: number } | null {
    // Rows another connection cannot see: entries of an open transaction, or a database in memory.
    if (this.db.memory || this.db.inTransaction || !this.db.name) return null;
    // Separately: SQLite answers min() or max() alone from the rowid tree's edge.
    const first = this.db.prepare("SELECT min(rowid) FROM events").pluck().get() as number | null;
    const last = this.db.prepare("SELECT max(rowid) FROM events").pluck().get() as number | null;
    return first === null || last === null ? null : { first, last };
  }

  async walk(
    ranges: readonly LogRange[],
    checkpointSeqs: readonly number[],
  ): Promise<RangeWalk[] | null> {
    let script: URL;
    try {
      script = workerScript();
    } catch (e) {
      this.onNotStarted(String(e));
      return null;
    }
    const workers: Worker[] = [];
    const outcomes = ranges.map((range) => {
      const job: WalkJob = {
        file: this.db.name,
        after: range.after,
        upTo: range.upTo,
        checkpointSeqs: [...checkpointSeqs],
        page: PAGE,
        cacheKib: CACHE_KIB,
      };
      return new Promise<Outcome>((resolve) => {
        let worker: Worker;
        try {
          worker = new Worker(script, {
            workerData: job,
            // A page at a time is all a thread holds: a small young generation keeps its heap so.
            resourceLimits: { maxYoungGenerationSizeMb: YOUNG_MB },
          });
        } catch (e) {
          resolve({ kind: "not started", why: e instanceof Error ? e.message : String(e) });
          return;
        }
        workers.push(worker);
        let started = false;
        const failed = (message: string, code: string | null) =>
          resolve({ kind: "failed", error: this.failure(range, message, code) });
        worker.on("message", (m: WalkMessage) => {
          if (m.kind === "ready") started = true;
          else if (m.kind === "done") resolve({ kind: "walked", walk: m.walk });
          else if (!m.started) resolve({ kind: "not started", why: m.message });
          else failed(m.message, m.code);
        });
        worker.on("error", (e) =>
          started ? failed(e.message, null) : resolve({ kind: "not started", why: e.message }),
        );
        // A thread that ends without an answer (terminated, out of memory) is a failure, not a wait.
        worker.on("exit", (code) =>
          started
            ? failed(`the thread ended (exit code ${code}) before it answered`, null)
            : resolve({ kind: "not started", why: `the thread ended (exit code ${code})` }),
        );
      });
    });
    try {
      // The first failure ends the walk at once; otherwise wait for every range.
      const settled: Outcome[] = [];
      await new Promise<void>((resolve) => {
        let left = outcomes.length;
        for (const [i, o] of outcomes.entries()) {
          void o.then((r) => {
            settled[i] = r;
            if (r.kind !== "walked" || --left === 0) resolve();
          });
        }
      });
      const failure = settled.find((r) => r?.kind === "failed");
      if (failure?.kind === "failed") throw failure.error;
      const notStarted = settled.find((r) => r?.kind === "not started");
      if (notStarted?.kind === "not started") {
        this.onNotStarted(notStarted.why);
        return null;
      }
      return settled.map((r) => (r as { walk: RangeWalk }).walk);
    } finally {
      // A terminating worker does not keep the event loop alive: the timer holds it until they end.
      const hold = setTimeout(() => undefined, 5_000);
      try {
        await Promise.all(workers.map((w) => w.terminate()));
      } finally {
        clearTimeout(hold);
      }
    }
  }

  private failure(range: LogRange, message: string, code: string | null): LinesignError {
    const cause = Object.assign(new Error(message), code ? { code } : {});
    const mapped = storageError(cause, this.path);
    if (mapped instanceof LinesignError) return mapped;
    return new LinesignError(
      "INTERNAL",
      `Audit verify stopped: the thread checking entries at positions ${range.after + 1} to ${range.upTo} failed (${message}). ` +
        "Nothing was changed; run it again, and if it fails again the station log has the details.",
      { cause, details: { after: range.after, upTo: range.upTo } },
    );
  }
}
