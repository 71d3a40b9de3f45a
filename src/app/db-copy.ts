/**
 * A second copy of the database kept current on another path (backup.copy in
 * station.json): SQLite's online backup of the open database, written to a
 * temporary file beside the copy and renamed over it, so the copy is always a
 * whole database. Copies run one at a time; changes that come while one runs
 * are taken by the next, which starts no sooner than `everySeconds` after the
 * last one began (trigger "commit": as soon as that allows after a group
 * commit; "interval": every `everySeconds` while the log has moved).
 *
 * A copy that cannot be written never stops the station: it is shown in
 * status (entries and seconds behind, the last error naming the path and the
 * cause) and recorded in the log once when copying starts failing and once
 * when it works again, never once per commit. The copy's state is kept in a
 * small file in the home, so `linesign status` in another process shows it.
 */
import { z } from "zod";
import { toLinesignError } from "../domain/errors.js";
import type { EventInput } from "../domain/event-log.js";
import type { DatabaseCopyConfig } from "../domain/config.js";
import type { CopyFileIdentity } from "../domain/ports.js";
import type { AppContext } from "./context.js";

/** The action of the log entries that say the copy started failing or works again. */
export const COPY_ACTION = "backup.copy";

/** What the last copies did, kept across processes. */
export interface CopyState {
  path: string;
  /** When the last whole copy was written, and the log head it ends at. */
  lastCopyAt: string | null;
  head: { seq: number; hash: string; ts: string } | null;
  /** The file the last copy wrote (absent in states written before it was kept). */
  file?: CopyFileIdentity | null;
  /** The last failure, while copying fails (null once a copy works again). */
  lastError: {
    at: string;
    code: string;
    message: string;
    path: string;
    cause: string;
  } | null;
  /** When copying began to fail, and how many tries failed since. */
  failingSince: string | null;
  failures: number;
}

const Head = z.object({
  seq: z.number().int().positive(),
  hash: z.string().max(128),
  ts: z.string().max(64),
});
const Text = z.string().max(2000);
/** The state file as read back: anything else is no state. */
export const CopyStateSchema = z.object({
  path: z.string().max(4096),
  lastCopyAt: z.string().max(64).nullable(),
  head: Head.nullable(),
  file: z
    .object({
      dev: z.number().nonnegative(),
      ino: z.number().nonnegative(),
      size: z.number().int().nonnegative(),
      mtimeMs: z.number().nonnegative(),
    })
    .nullable()
    .optional(),
  lastError: z
    .object({ at: Text, code: Text, message: Text, path: z.string().max(4096), cause: Text })
    .nullable(),
  failingSince: z.string().max(64).nullable(),
  failures: z.number().int().nonnegative(),
});

/** Where the state is kept (a file in the home). */
export interface CopyStateFile {
  read(): CopyState | null;
  /** Best effort: a home that cannot be written leaves the last state. */
  write(state: CopyState): void;
  /** The file at `path` now; null when there is none. */
  identify(path: string): CopyFileIdentity | null;
}

/** The copy as status shows it. */
export interface CopyStatus {
  path: string;
  trigger: DatabaseCopyConfig["trigger"];
  everySeconds: number;
  lastCopyAt: string | null;
  /** The last entry in the copy. */
  copiedSeq: number | null;
  /** Entries the database holds and the copy lacks. */
  entriesBehind: number;
  /** How old the oldest entry is that the copy lacks (0 when it lacks none). */
  secondsBehind: number;
  lastError: CopyState["lastError"];
  failingSince: string | null;
  failures: number;
  /** Why the file at the path is not the copy last written (deleted, replaced, changed); null when it is. */
  problem: string | null;
}

export class DatabaseCopy {
  private running: Promise<void> | null = null;
  private again = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Resolves when the copy the timer waits for has run. */
  private scheduled: Promise<void> | null = null;
  private poll: ReturnType<typeof setInterval> | null = null;
  private lastStart = 0;
  private closed = false;
  private readonly openedAt: number;

  constructor(
    private readonly ctx: AppContext,
    private readonly config: Readonly<DatabaseCopyConfig>,
    private readonly state: CopyStateFile,
  ) {
    this.openedAt = ctx.store.head()?.seq ?? 0;
  }

  /**
   * Starts watching the log for a long-running process (the line, the
   * service): every `everySeconds` a copy is made when the log has moved past
   * the copy. One-shot commands copy once, at close.
   */
  watch(): void {
    if (this.poll || this.closed) return;
    this.poll = setInterval(() => {
      if (this.behind()) this.notify();
    }, this.config.everySeconds * 1000);
    this.poll.unref();
  }

  /** A group commit happened (trigger "commit"): copy as soon as the interval allows. */
  committed(): void {
    if (this.config.trigger === "commit") this.notify();
  }

  /** Asks for a copy: coalesced with one running or already asked for, and no sooner than the interval allows. */
  notify(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(0, this.lastStart + this.config.everySeconds * 1000 - Date.now());
    this.scheduled = new Promise<void>((resolve) => {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.run().then(resolve);
      }, wait);
      this.timer.unref();
    });
  }

  /** Resolves once no copy runs or waits to run (for a caller that must see the copy current). */
  async settled(): Promise<void> {
    while (this.running || this.timer) await (this.running ?? this.scheduled);
  }

  /**
   * Ends the watch; when this process added entries the copy lacks, makes one
   * last copy (waiting for one that runs). Never throws.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    this.poll = this.timer = null;
    await this.running;
    const head = this.ctx.store.head()?.seq ?? 0;
    // A read-only command (status, audit log) writes no copy; one that recorded something does.
    if (head <= this.openedAt || !this.behind()) return;
    // A copy that works again records so; that entry goes into one more copy.
    if ((await this.copyOnce()) && this.behind()) await this.copyOnce();
  }

  /** The copy's lag and last error, for status. */
  status(): CopyStatus {
    const s = this.readState();
    const head = this.ctx.store.head();
    const problem = this.problem(s);
    const copied = s?.path === this.config.path && !problem ? (s.head?.seq ?? 0) : 0;
    const behind = Math.max(0, (head?.seq ?? 0) - copied);
    let seconds = 0;
    if (behind > 0) {
      const first = this.ctx.store.eventAt(copied + 1);
      if (first) seconds = Math.max(0, Math.floor((Date.now() - Date.parse(first.ts)) / 1000));
    }
    const same = s?.path === this.config.path ? s : null;
    return {
      path: this.config.path,
      trigger: this.config.trigger,
      everySeconds: this.config.everySeconds,
      lastCopyAt: same?.lastCopyAt ?? null,
      copiedSeq: problem ? null : (same?.head?.seq ?? null),
      entriesBehind: behind,
      secondsBehind: seconds,
      lastError: same?.lastError ?? null,
      failingSince: same?.failingSince ?? null,
      failures: same?.failures ?? 0,
      problem,
    };
  }

  /**
   * Why the file at the copy's path is not the copy the state names: gone,
   * another file put there (an older copy put back, another process's), or
   * changed since it was written. The state alone would call it current.
   */
  private problem(s: CopyState | null): string | null {
    if (!s || s.path !== this.config.path || !s.head || !s.file) return null;
    const now = this.state.identify(this.config.path);
    if (!now) return `${this.config.path} is not there: it was deleted or its disk is not mounted`;
    const was = s.file;
    if (now.dev !== was.dev || now.ino !== was.ino)
      return `${this.config.path} is another file than the copy written at ${s.lastCopyAt}: it was replaced`;
    if (now.size !== was.size || now.mtimeMs !== was.mtimeMs)
      return `${this.config.path} was changed since the copy was written at ${s.lastCopyAt}`;
    return null;
  }

  private readState(): CopyState | null {
    try {
      return this.state.read();
    } catch {
      return null;
    }
  }

  private behind(): boolean {
    const s = this.readState();
    const copied = s?.path === this.config.path ? (s.head?.seq ?? 0) : 0;
    return (
      (this.ctx.store.head()?.seq ?? 0) > copied ||
      Boolean(s?.lastError) ||
      this.problem(s) !== null
    );
  }

  private run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.lastStart = Date.now();
    const run = this.copyOnce().then(() => {
      this.running = null;
      if (this.again && !this.closed) {
        this.again = false;
        this.notify();
      }
    });
    this.running = run;
    return run;
  }

  private record(entry: EventInput): void {
    try {
      this.ctx.store.appendEvent(entry);
    } catch (e) {
      // the log itself cannot be written: status still shows the copy's state
      this.ctx.logger.error({ err: e, action: COPY_ACTION }, "could not record the copy's state");
    }
  }

  /** One copy; true when it was written. Never throws. */
  private async copyOnce(): Promise<boolean> {
    const path = this.config.path;
    const before = this.readState();
    const prev = before?.path === path ? before : null;
    const now = () => this.ctx.clock.now().toISOString();
    try {
      const { head, file } = await this.ctx.store.writeCopy(path);
      const state: CopyState = {
        path,
        lastCopyAt: now(),
        head,
        file,
        lastError: null,
        failingSince: null,
        failures: 0,
      };
      this.state.write(state);
      if (prev?.lastError) {
        // Works again: said once.
        this.record({
          actor: this.ctx.actor,
          action: COPY_ACTION,
          subject: path,
          outcome: "ok",
          message: `The second copy of the database is written to ${path} again (it failed ${prev.failures} time(s) since ${prev.failingSince}: ${prev.lastError.cause}).`,
          details: {
            path,
            recovered: true,
            failingSince: prev.failingSince,
            failures: prev.failures,
            lastCause: prev.lastError.cause,
            copiedSeq: head?.seq ?? null,
          },
        });
        this.ctx.logger.info({ path }, "the second copy of the database is written again");
      }
      return true;
    } catch (e) {
      const err = toLinesignError(e);
      const cause = typeof err.details.cause === "string" ? err.details.cause : err.code;
      const at = now();
      const state: CopyState = {
        path,
        lastCopyAt: prev?.lastCopyAt ?? null,
        head: prev?.head ?? null,
        file: prev?.file ?? null,
        lastError: { at, code: err.code, message: err.message, path, cause },
        failingSince: prev?.failingSince ?? at,
        failures: (prev?.failures ?? 0) + 1,
      };
      this.state.write(state);
      this.ctx.logger.warn({ path, code: err.code, cause, err: e }, err.message);
      if (!prev?.lastError) {
        // Starts failing: said once, loudly; the station goes on.
        this.record({
          actor: this.ctx.actor,
          action: COPY_ACTION,
          subject: path,
          outcome: "failed",
          code: err.code,
          message: err.message,
          details: { path, cause },
        });
      }
      return false;
    }
  }
}
