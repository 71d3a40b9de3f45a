/**
 * Group commit: durable writes queued during one turn of the event loop share
 * one transaction, so many ports issuing at once pay for one disk sync
 * instead of one each. Each piece of work runs in its own savepoint, so
 * one that throws (a race lost to another port) is rolled back alone; every
 * caller is answered only after the whole transaction is on disk and the
 * token's log head covers it (`afterCommit`). The sync runs on libuv's
 * thread pool (StationStore.commitDeferred, durable), not on the event loop,
 * which meanwhile commits the next batch.
 *
 * A database locked by another process never blocks the event loop: the
 * batch is tried again a little later, the station reports the lock as a
 * fault (the line waits, saying why), and goes on when the lock goes.
 */
import { LinesignError, isLinesignError, type ErrorCode } from "../domain/errors.js";
import type { StationStore } from "../domain/ports.js";
import type { StationHealth } from "./health.js";

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Longest a commit waits for others to join its batch. */
export const MAX_GROUP_WAIT_MS = 2;

export interface GroupCommitOptions {
  /**
   * How many callers are on their way to commit(): a batch is flushed as soon
   * as all of them have joined, or after MAX_GROUP_WAIT_MS.
   */
  inFlight?: () => number;
  /** Runs after each durable commit, before any caller is answered (the log head's move). */
  afterCommit?: () => Promise<void>;
  /** Where a lock held by another process is reported while the batch waits. */
  health?: StationHealth;
  /** How long a batch waits for another process's lock before it fails with DB_LOCKED. Default 45 s. */
  lockWaitMs?: number;
}

/**
 * A failure after the batch was committed: the records are durable, but what
 * they hold must not leave the station (the log head could not cover them).
 */
export function withheld(err: LinesignError): LinesignError {
  return new LinesignError(err.code, err.message, {
    cause: err.cause,
    details: { ...err.details, committed: true },
  });
}

/** `e` withheld; one that is no LinesignError becomes `code` with `message`. */
function withheldAs(e: unknown, code: ErrorCode, message: string): LinesignError {
  return withheld(isLinesignError(e) ? e : new LinesignError(code, message, { cause: e }));
}

/** True for an error raised after its work was committed (see withheld). */
export const isWithheld = (e: unknown): boolean =>
  isLinesignError(e) && e.details.committed === true;

export class GroupCommitter {
  private queue: Pending[] = [];
  private scheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Batches committed and items in them, for the bench. */
  /** Commits, issuances committed, and milliseconds spent moving the token's head after them. */
  readonly stats = { batches: 0, items: 0, headMs: 0 };

  private readonly inFlight: () => number;
  /** Callers in batches committed and not yet answered (waiting for the disk and the log head). */
  private committing = 0;
  private readonly committedListeners: (() => void)[] = [];

  /** Calls `listener` after each durable commit whose callers were answered (the second copy's cue). */
  onCommitted(listener: () => void): void {
    this.committedListeners.push(listener);
  }

  constructor(
    private readonly store: StationStore,
    private readonly o: GroupCommitOptions = {},
  ) {
    this.inFlight = o.inFlight ?? (() => 0);
  }

  /** Runs `work` inside the next group transaction; resolves after that transaction is durable. */
  commit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      // Callers whose batch is committed and waiting for the disk or the head are not on the way.
      if (this.queue.length >= this.inFlight() - this.committing) {
        // Everyone on the way is here: flush after this turn's microtasks.
        if (!this.scheduled) {
          this.scheduled = true;
          setImmediate(() => this.flush());
        }
      } else if (!this.timer) {
        this.timer = setTimeout(() => this.flush(), MAX_GROUP_WAIT_MS);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    void this.run(batch, Date.now(), 0);
  }

  private async run(batch: Pending[], firstTry: number, tries: number): Promise<void> {
    let outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      // Committed without waiting for the disk; durable() below waits for it off the event loop,
      // so the next batch can commit meanwhile.
      this.store.commitDeferred(() => {
        outcomes = [];
        for (const item of batch) {
          try {
            outcomes.push({ ok: true, value: this.store.savepoint(item.work) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      if (
        isLinesignError(error, "DB_LOCKED") &&
        Date.now() - firstTry < (this.o.lockWaitMs ?? 45_000)
      ) {
        // Another process holds the write lock: wait without blocking, say why, try again.
        this.o.health?.report("database-lock", error);
        const wait = Math.min(500, 10 * 2 ** tries);
        setTimeout(() => void this.run(batch, firstTry, tries + 1), wait);
        return;
      }
      this.o.health?.clear("database-lock");
      // The commit itself failed: nothing in the batch is durable, so nobody gets a certificate.
      for (const item of batch) item.reject(error);
      return;
    }
    if (tries > 0) this.o.health?.clear("database-lock");
    this.stats.batches++;
    this.stats.items += batch.length;
    this.committing += batch.length;
    let after: LinesignError | null = null;
    try {
      // Nobody is answered, and the log head does not move, before the records are on disk.
      await this.store.durable();
    } catch (e) {
      after = withheldAs(e, "DB_IO", "The station database could not be made durable.");
    }
    if (!after && this.o.afterCommit && outcomes.some((o) => o.ok)) {
      const started = performance.now();
      try {
        await this.o.afterCommit();
      } catch (e) {
        after = withheldAs(e, "AUDIT_HEAD_WRITE_FAILED", "The log head could not be moved.");
      }
      this.stats.headMs += performance.now() - started;
    }
    this.committing -= batch.length;
    batch.forEach((item, i) => {
      const o = outcomes[i]!;
      if (!o.ok) item.reject(o.error);
      else if (after) item.reject(after);
      else item.resolve(o.value);
    });
    for (const l of this.committedListeners) {
      try {
        l();
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
