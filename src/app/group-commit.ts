/**
 * Group commit: durable writes queued during one turn of the event loop share
 * one synchronous=FULL transaction, so many ports issuing at once pay for one
 * fsync instead of one each. Each piece of work runs in its own savepoint, so
 * one that throws (a race lost to another port) is rolled back alone; every
 * caller is answered only after the whole transaction has committed.
 */
import type { StationStore } from "../domain/ports.js";

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Longest a commit waits for others to join its batch. */
export const MAX_GROUP_WAIT_MS = 2;

export class GroupCommitter {
  private queue: Pending[] = [];
  private scheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Batches committed and items in them, for the bench. */
  readonly stats = { batches: 0, items: 0 };

  /**
   * @param inFlight how many callers are on their way to commit(): a batch is
   *   flushed as soon as all of them have joined, or after MAX_GROUP_WAIT_MS.
   */
  constructor(
    private readonly store: StationStore,
    private readonly inFlight: () => number = () => 0,
  ) {}

  /** Runs `work` inside the next group transaction; resolves after that transaction is durable. */
  commit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length >= this.inFlight()) {
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
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.store.transaction(() => {
        for (const item of batch) {
          try {
            outcomes.push({ ok: true, value: this.store.savepoint(item.work) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      // The commit itself failed: nothing in the batch is durable, so nobody gets a certificate.
      for (const item of batch) item.reject(error);
      return;
    }
    this.stats.batches++;
    this.stats.items += batch.length;
    batch.forEach((item, i) => {
      const o = outcomes[i]!;
      if (o.ok) item.resolve(o.value);
      else item.reject(o.error);
    });
  }
}
