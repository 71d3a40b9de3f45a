/**
 * The line as people see it: one tile per port with the device's progress,
 * the last failure (kept until someone acknowledges it) and the counts of the
 * shift. Fed by the line's events; the kiosk reads it, and `version` grows
 * with every change so a watcher can wait for the next one.
 */
import { operatorText } from "../../domain/operator-text.js";
import type { LineEvent } from "./line-events.js";

export type TileState =
  "offline" | "waiting" | "identified" | "signing" | "injecting" | "confirmed" | "failed";

export interface TileFailure {
  code: string;
  title: string;
  message: string;
  action: string;
  deviceId: string | null;
  at: string;
}

export interface Tile {
  port: string;
  state: TileState;
  deviceId: string | null;
  serial: string | null;
  failure: TileFailure | null;
  confirmed: number;
  failed: number;
  /** Set when the port floods the station with refused exchanges: what is wrong and what to do. */
  misbehaving: string | null;
}

export class LineBoard {
  private readonly tiles = new Map<string, Tile>();
  private waiters: (() => void)[] = [];
  version = 0;
  shift = { confirmed: 0, failed: 0, since: null as string | null };

  constructor(private readonly now: () => Date = () => new Date()) {}

  /** Starts a shift on these ports: fresh tiles and counts. */
  reset(ports: string[]): void {
    this.tiles.clear();
    for (const port of ports)
      this.tiles.set(port, {
        port,
        state: "offline",
        deviceId: null,
        serial: null,
        failure: null,
        confirmed: 0,
        failed: 0,
        misbehaving: null,
      });
    this.shift = { confirmed: 0, failed: 0, since: this.now().toISOString() };
    this.bump();
  }

  view(): Tile[] {
    return [...this.tiles.values()].map((t) => ({ ...t }));
  }

  apply(e: LineEvent): void {
    const t = this.tiles.get(e.port);
    if (!t) return;
    switch (e.event) {
      case "port.open":
        t.state = "waiting";
        break;
      case "port.paused":
        // The device waits; why is said once for the whole line (LineView.paused).
        if (t.state !== "failed") t.state = "waiting";
        break;
      case "port.resumed":
        break;
      case "port.misbehaving":
        t.misbehaving = e.message;
        break;
      case "port.waiting":
      case "port.lost":
      case "port.stopped":
        t.state = "offline";
        t.deviceId = null;
        break;
      case "device.identified":
        t.state = "identified";
        t.deviceId = e.deviceId;
        t.serial = null;
        break;
      case "device.csr-requested":
        t.state = "identified";
        break;
      case "device.signing":
        // The CSR has arrived: the checks and the signature follow at once.
        t.state = "signing";
        break;
      case "device.injecting":
        t.state = "injecting";
        t.serial = e.serial;
        break;
      case "device.confirmed":
        t.state = "confirmed";
        t.serial = e.serial;
        t.confirmed++;
        t.misbehaving = null;
        this.shift.confirmed++;
        // The device that failed here got through on a re-try: its failure is no longer news.
        if (t.failure && t.failure.deviceId === e.deviceId) t.failure = null;
        break;
      case "device.failed": {
        const text = operatorText(e.code);
        t.state = "failed";
        t.failed++;
        this.shift.failed++;
        t.failure = {
          code: e.code,
          title: text.title,
          message: e.message,
          action: text.action,
          deviceId: e.deviceId,
          at: this.now().toISOString(),
        };
        break;
      }
      default: {
        const never: never = e;
        return never;
      }
    }
    this.bump();
  }

  /**
   * Clears a port's failure once someone has seen it.
   * @returns false when the port has no failure to acknowledge
   */
  acknowledge(port: string): boolean {
    const t = this.tiles.get(port);
    if (!t?.failure) return false;
    t.failure = null;
    if (t.state === "failed") t.state = "waiting";
    this.bump();
    return true;
  }

  /** Resolves once the version is above `after`, or after `waitMs`. */
  async waitFor(after: number, waitMs: number): Promise<void> {
    if (this.version > after || waitMs === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  /** Something else changed (the session, the work order): wake watchers. */
  bump(): void {
    this.version++;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
