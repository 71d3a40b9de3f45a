/**
 * What stops the station from signing for now: a fault of the station itself
 * (its database locked, full or gone, the token's log head unwritable, the
 * token away), not of a device. While a fault stands, the line greets no new
 * device and the engine signs nothing; devices wait instead of failing one
 * after another. Each fault carries a probe that tells when it has gone, so
 * the line resumes by itself.
 */
import { LinesignError, type ErrorCode } from "../domain/errors.js";

export interface StationFault {
  /** Where it comes from: "database", "log-head", "token"... one fault per source. */
  source: string;
  code: ErrorCode;
  /** Plain words: what is wrong and what to do. */
  message: string;
  since: string;
}

interface Entry {
  fault: StationFault;
  /** Resolves when the fault has gone; throws while it stands. Absent: it stays until cleared. */
  probe: (() => Promise<void>) | null;
}

export class StationHealth {
  private readonly faults = new Map<string, Entry>();
  private readonly listeners: ((fault: StationFault | null) => void)[] = [];
  private probing: Promise<StationFault | null> | null = null;

  /** Records a fault (replacing the same source's earlier one). */
  report(source: string, err: LinesignError, probe: (() => Promise<void>) | null = null): void {
    const had = this.faults.get(source);
    this.faults.set(source, {
      fault: {
        source,
        code: err.code,
        message: err.message,
        since: had?.fault.since ?? new Date().toISOString(),
      },
      probe,
    });
    if (!had || had.fault.code !== err.code) this.changed();
  }

  /** Clears the source's fault, if any. */
  clear(source: string): void {
    if (this.faults.delete(source)) this.changed();
  }

  /** The first fault that stands, or null when the station can sign. */
  current(): StationFault | null {
    for (const e of this.faults.values()) return e.fault;
    return null;
  }

  /** Throws the standing fault as a LinesignError (nothing is signed while it stands). */
  assertHealthy(): void {
    const f = this.current();
    if (f) throw new LinesignError(f.code, f.message, { details: { fault: f.source } });
  }

  /**
   * Runs each fault's probe once (calls made meanwhile share the run) and
   * clears the faults that have gone.
   * @returns the fault that still stands, or null
   */
  recheck(): Promise<StationFault | null> {
    this.probing ??= (async () => {
      for (const [source, e] of [...this.faults]) {
        if (!e.probe) continue;
        try {
          await e.probe();
          if (this.faults.get(source) === e) this.clear(source);
        } catch (err) {
          if (err instanceof LinesignError && this.faults.get(source) === e)
            this.report(source, err, e.probe);
        }
      }
      return this.current();
    })().finally(() => (this.probing = null));
    return this.probing;
  }

  /** Called with the standing fault (or null) whenever it changes. */
  onChange(listener: (fault: StationFault | null) => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    const f = this.current();
    for (const l of this.listeners) {
      try {
        l(f);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
