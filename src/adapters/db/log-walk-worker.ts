/**
 * Worker thread entry: walks one range of the log (see ThreadedLogWalker) on
 * a read-only connection of its own to the station's file, with the same
 * ChainWalker and node hash as the walk in the station's thread, and answers
 * with what it found (a RangeWalk).
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import {
  ChainWalker,
  type EncodedEvent,
  type RangeWalk,
  type StoredEvent,
} from "../../domain/event-log.js";
import { nodeChainHash } from "../crypto/chain-hash.js";
import { ENCODED_COLUMNS, STORED_COLUMNS } from "./event-pages.js";

export interface WalkJob {
  file: string;
  after: number;
  upTo: number;
  checkpointSeqs: number[];
  page: number;
  /** SQLite's page cache for this connection, in KiB. */
  cacheKib: number;
}

export type WalkMessage =
  | { kind: "ready" }
  | { kind: "done"; walk: RangeWalk }
  | { kind: "failed"; started: boolean; message: string; code: string | null };

const port = parentPort!;
const job = workerData as WalkJob;
let started = false;
try {
  const db = new Database(job.file, { readonly: true, fileMustExist: true });
  try {
    db.pragma(`cache_size = -${Math.floor(job.cacheKib)}`);
    const range = "FROM events WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?";
    const storedPage = db.prepare(`SELECT ${STORED_COLUMNS} ${range}`).raw();
    const encodedPage = db.prepare(`SELECT ${ENCODED_COLUMNS} ${range}`).raw();
    started = true;
    port.postMessage({ kind: "ready" } satisfies WalkMessage);

    const walker = new ChainWalker(nodeChainHash, "range");
    const full = (position: number) =>
      (storedPage.all(position - 1, position, 1) as StoredEvent[])[0] ?? null;
    const checkpoints = new Set(job.checkpointSeqs);
    const atCheckpoints: [number, string][] = [];
    let after = job.after;
    walk: for (;;) {
      const columns = walker.wantsColumns;
      const page = (columns ? storedPage : encodedPage).all(after, job.upTo, job.page) as (
        StoredEvent | EncodedEvent
      )[];
      for (const e of page) {
        const ok = columns
          ? walker.stored(e as StoredEvent)
          : walker.encoded(e as EncodedEvent, full);
        if (!ok) break walk;
        if (checkpoints.has(e[0])) atCheckpoints.push([e[0], walker.head!.hash]);
      }
      if (page.length < job.page) break;
      after = page[page.length - 1]!.at(-1) as number;
    }
    const v = walker.verdict();
    port.postMessage({
      kind: "done",
      walk: {
        count: v.count,
        first: walker.first,
        last: walker.head,
        atCheckpoints,
        firstBad: v.ok ? null : v.firstBad,
      },
    } satisfies WalkMessage);
  } finally {
    db.close();
  }
} catch (e) {
  const code = (e as { code?: unknown } | null)?.code;
  port.postMessage({
    kind: "failed",
    started,
    message: e instanceof Error ? e.message : String(e),
    code: typeof code === "string" ? code : null,
  } satisfies WalkMessage);
}
