/**
 * The line: many serial ports provisioned at once (gang provisioning), each
 * by its own PortLine, all through one issuance engine. Used by
 * `linesign line run` and the station service.
 */
import { LinesignError, type ErrorCode } from "../../domain/errors.js";
import type { StationFault } from "../health.js";
import { RefusalLog } from "../refusal-log.js";
import type { LineTimeouts } from "../../domain/config.js";
import type { Profile } from "../../domain/profile.js";
import type { SerialPorts } from "../../domain/ports.js";
import type { AppContext } from "../context.js";
import type { IssuanceEngine } from "../issuance.js";
import type { LineEvent, PortStage } from "./line-events.js";
import { PortLine } from "./port-line.js";
import { profileSha256 } from "../profiles.js";

export interface LineOptions {
  ports: string[];
  profile?: string;
  workOrder?: string | null;
  /** Stop taking devices after this many have started (all outcomes count). */
  count?: number;
  baudRate: number;
  timeouts: LineTimeouts;
  rearmPollMs?: number;
}

export interface PortSummary {
  confirmed: number;
  failed: number;
}

export interface LineSummary {
  ports: string[];
  profile: string;
  devices: number;
  confirmed: number;
  failed: number;
  /** Failures by reason code. */
  byCode: Partial<Record<ErrorCode, number>>;
  perPort: Record<string, PortSummary>;
  durationMs: number;
  /** The station's own fault that stopped the line, if one did. */
  fault: { code: ErrorCode; message: string } | null;
}

/** Faults the station cannot wait out: the line stops at once. */
const STOPS_THE_LINE: readonly ErrorCode[] = ["DB_REPLACED", "AUDIT_HEAD_MISMATCH"];

/** Refused exchanges of one port and reason are written once per this interval, with their count. */
const REFUSAL_INTERVAL_MS = 60_000;
/** Refusals of one port within an interval after which it is shown as misbehaving. */
const MISBEHAVING_REFUSALS = 20;

/**
 * Why the line waits: devices are not greeted (and one that identified itself
 * just before waits unanswered) until it goes. A station fault (storage, log
 * head) and a hold (the end of a signing session) are the same state with
 * different causes; the fault is named first, since it is the one to fix.
 */
export interface LinePause {
  /** "station" for a station fault, else the key of the hold ("signing"). */
  by: string;
  code: ErrorCode;
  /** Plain words: what is wrong and what to do. */
  message: string;
  since: string;
}

/** How long a one-shot command's write waits for another process's lock. */
export const DEFAULT_LOCK_WAIT_MS = 5000;

export class Line {
  private readonly portLines: PortLine[];
  private readonly listeners: ((e: LineEvent) => void)[] = [];
  private claimed = 0;
  private readonly startedAt = Date.now();
  private readonly summary: LineSummary;
  private stopRequested = false;
  /** Content hash of the profile the line issues under, in its line.start entry. */
  private readonly profileSha256: string;
  /** Why the line takes no devices now, by who holds it (a signing session's end). */
  private readonly holds = new Map<string, LinePause>();
  private released: (() => void)[] = [];
  /** Devices waiting on a held line, by port. */
  private readonly waiting = new Map<string, string>();
  private readonly holdListeners: (() => void)[] = [];
  /** Refused exchanges, aggregated per port and reason (a flooding device costs one entry a minute). */
  private readonly refusals: RefusalLog;
  /** Ports told misbehaving in the current interval. */
  private readonly misbehaving = new Set<string>();

  constructor(
    private readonly ctx: AppContext,
    engine: IssuanceEngine,
    ports: SerialPorts,
    profiles: Readonly<Record<string, Profile>>,
    defaultProfile: string,
    private readonly o: LineOptions,
  ) {
    if (o.ports.length === 0)
      throw new LinesignError(
        "USAGE",
        'Name at least one serial port: --port PATH (repeatable), or "line.ports" in station.json.',
      );
    const dupes = o.ports.filter((p, i) => o.ports.indexOf(p) !== i);
    if (dupes.length)
      throw new LinesignError("USAGE", `Port ${dupes[0]} is named twice; name each port once.`);
    const profileName = o.profile ?? defaultProfile;
    const profile = profiles[profileName];
    if (!profile)
      throw new LinesignError(
        "PROFILE_UNKNOWN",
        `No profile is named "${profileName}". Profiles: ${Object.keys(profiles).join(", ") || 'none (add one under "profiles" in station.json)'}.`,
      );
    this.profileSha256 = profileSha256(profile);
    if (o.count !== undefined && (!Number.isInteger(o.count) || o.count < 1))
      throw new LinesignError("USAGE", "The device count must be a whole number of at least 1.");
    this.summary = {
      ports: [...o.ports],
      profile: profileName,
      devices: 0,
      confirmed: 0,
      failed: 0,
      byCode: {},
      perPort: Object.fromEntries(o.ports.map((p) => [p, { confirmed: 0, failed: 0 }])),
      durationMs: 0,
      fault: null,
    };
    ctx.health.onChange((f) => this.onFault(f));
    this.refusals = new RefusalLog(ctx, { intervalMs: REFUSAL_INTERVAL_MS });
    this.refusals.onRefusal((port, count) => {
      if (count === 1) this.misbehaving.delete(port);
      if (count < MISBEHAVING_REFUSALS || this.misbehaving.has(port)) return;
      this.misbehaving.add(port);
      this.emit({
        event: "port.misbehaving",
        port,
        refused: count,
        message:
          `The device on this port was refused ${count} times within a minute (the log counts them in one entry). ` +
          "Its firmware is faulty or it is not a device of this line: unplug it and set it aside.",
      });
    });
    this.portLines = o.ports.map(
      (path) =>
        new PortLine(ctx, engine, ports, {
          path,
          baudRate: o.baudRate,
          profileName,
          profile,
          workOrder: o.workOrder ?? null,
          timeouts: o.timeouts,
          rearmPollMs: o.rearmPollMs ?? 500,
          claim: () => this.claim(),
          paused: () => this.pausedFor(),
          ready: (deviceId) => this.ready(path, deviceId),
          emit: (e) => this.emit(e),
          refused: (r) => this.refusals.record(r),
        }),
    );
  }

  /** The work order the line provisions against (null: none). */
  get workOrder(): string | null {
    return this.o.workOrder ?? null;
  }

  onEvent(listener: (e: LineEvent) => void): void {
    this.listeners.push(listener);
  }

  /** What each port is doing now. */
  stages(): Record<string, PortStage> {
    return Object.fromEntries(this.portLines.map((p) => [p.path, p.currentStage]));
  }

  start(): void {
    // Devices wait out another process's lock without the event loop blocking on it.
    this.ctx.store.setLockWait(0);
    this.ctx.store.appendEvent({
      actor: this.ctx.actor,
      action: "line.start",
      subject: null,
      outcome: "ok",
      details: {
        ports: this.o.ports,
        profile: this.summary.profile,
        profileSha256: this.profileSha256,
        workOrder: this.o.workOrder ?? null,
        count: this.o.count ?? null,
        baudRate: this.o.baudRate,
      },
    });
    for (const p of this.portLines) p.start();
  }

  /**
   * Holds the line: no device is greeted from now on, and one that identifies
   * itself (greeted just before) waits unanswered, until every hold is
   * released (or the line stops); devices in flight finish. Any part of the
   * station may hold it under its own key ("signing" for the end of a signing
   * session), with the code and words the kiosk shows; holding twice is one hold.
   */
  hold(key: string, code: ErrorCode, why: string): void {
    if (this.holds.has(key)) return;
    this.holds.set(key, { by: key, code, message: why, since: new Date().toISOString() });
    this.record("line.hold", key, { code, message: why });
    this.holdChanged();
  }

  /** Releases a hold; with none left (and no station fault), waiting devices go on. */
  release(key: string): void {
    if (!this.holds.delete(key)) return;
    this.record("line.release", key, {});
    if (this.holds.size === 0) this.wake();
    else this.holdChanged();
  }

  /** Why the line waits (a station fault first, then the first hold), or null when it takes devices. */
  pausedFor(): LinePause | null {
    const f = this.ctx.health.current();
    if (f) return { by: "station", code: f.code, message: f.message, since: f.since };
    return this.holds.values().next().value ?? null;
  }

  /** The devices that identified themselves as the line was held: they wait, unanswered. */
  waitingDevices(): { port: string; deviceId: string }[] {
    return [...this.waiting].map(([port, deviceId]) => ({ port, deviceId }));
  }

  /** Told when the line is held or released, and when a device starts or stops waiting. */
  onHoldChange(listener: () => void): void {
    this.holdListeners.push(listener);
  }

  private record(action: string, key: string, more: { code?: ErrorCode; message?: string }): void {
    try {
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action,
        subject: key,
        outcome: "ok",
        ...more,
        details: { workOrder: this.o.workOrder ?? null },
      });
    } catch (err) {
      // A hold that cannot be recorded (the database's own fault) still holds.
      this.ctx.logger.error({ err, action }, "could not record the line's hold");
    }
  }

  /** Takes no new devices; resolves with the summary once every exchange in flight has ended. */
  async stop(): Promise<LineSummary> {
    if (!this.stopRequested) {
      this.stopRequested = true;
      this.wake();
      for (const p of this.portLines) p.stop();
    }
    return this.finished();
  }

  /** Resolves when every port has stopped (after stop(), or once the count is reached). */
  async finished(): Promise<LineSummary> {
    await Promise.all(this.portLines.map((p) => p.done));
    if (this.summary.durationMs === 0) {
      this.summary.durationMs = Date.now() - this.startedAt;
      // The refusals counted since their first entry are written before the stop.
      this.refusals.flush();
      this.ctx.store.setLockWait(DEFAULT_LOCK_WAIT_MS);
      const fault = this.summary.fault;
      try {
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "line.stop",
          subject: null,
          outcome: fault ? "failed" : "ok",
          ...(fault ? { code: fault.code, message: fault.message } : {}),
          details: { ...this.summary },
        });
      } catch (e) {
        // The fault that stopped the line may be the database itself: the summary still goes out.
        this.ctx.logger.error({ err: e }, "could not record the line's stop");
      }
    }
    return this.summary;
  }

  private onFault(f: StationFault | null): void {
    if (!f || !STOPS_THE_LINE.includes(f.code) || this.summary.fault) return;
    this.summary.fault = { code: f.code, message: f.message };
    void this.stop();
  }

  private ready(port: string, deviceId: string): Promise<void> | null {
    if (this.holds.size === 0 || this.stopRequested) return null;
    this.waiting.set(port, deviceId);
    this.holdChanged();
    return new Promise((resolve) => this.released.push(resolve));
  }

  private wake(): void {
    const w = this.released;
    this.released = [];
    this.waiting.clear();
    for (const f of w) f();
    // Ports that waited greet again now rather than at their next look.
    if (!this.stopRequested) for (const p of this.portLines) p.resume();
    this.holdChanged();
  }

  private holdChanged(): void {
    for (const l of this.holdListeners) {
      try {
        l();
      } catch (err) {
        this.ctx.logger.error({ err }, "a line hold listener failed");
      }
    }
  }

  private claim(): boolean {
    if (this.stopRequested) return false;
    if (this.o.count !== undefined && this.claimed >= this.o.count) return false;
    this.claimed++;
    this.summary.devices++;
    if (this.o.count !== undefined && this.claimed >= this.o.count) {
      // The last device has started: idle ports stop now, busy ones after their exchange.
      this.stopRequested = true;
      queueMicrotask(() => {
        for (const p of this.portLines) p.stop();
      });
    }
    return true;
  }

  private emit(e: LineEvent): void {
    if (e.event === "device.confirmed") {
      this.summary.confirmed++;
      this.summary.perPort[e.port]!.confirmed++;
    } else if (e.event === "device.failed") {
      this.summary.failed++;
      this.summary.perPort[e.port]!.failed++;
      this.summary.byCode[e.code] = (this.summary.byCode[e.code] ?? 0) + 1;
    }
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.ctx.logger.error({ err }, "a line event listener failed");
      }
    }
  }
}
