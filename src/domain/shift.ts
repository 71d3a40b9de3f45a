/**
 * A shift's figures: what the line did in a bounded window of time, per
 * clock hour and per port, from the log's line.session entries. The kiosk's
 * Shift screen draws them and `linesign audit report --format html` prints
 * them. Pure: the window's rules and the shape of the figures.
 */
import { LinesignError } from "./errors.js";

/** The window a shift view covers by default: the last 12 hours. */
export const DEFAULT_SHIFT_HOURS = 12;
/** The longest window asked for at once: a week of hourly figures (168 buckets). */
export const MAX_SHIFT_HOURS = 168;

const HOUR_MS = 3_600_000;

/** A window as asked for: a start and an end (ISO 8601), or a number of hours back from the end. */
export interface ShiftWindowInput {
  from?: string;
  to?: string;
  hours?: number;
}

/** A validated window: [from, to) as ISO 8601 UTC strings, at most MAX_SHIFT_HOURS long. */
export interface ShiftWindow {
  from: string;
  to: string;
}

function time(value: string, field: string): number {
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(t))
    throw new LinesignError(
      "USAGE",
      `The shift's ${field} "${value.slice(0, 40)}" is not a time: write it as ISO 8601, e.g. 2026-12-02T06:00:00Z.`,
    );
  return t;
}

/**
 * The window for `input`: `to` defaults to `now`, `from` to `hours` (default
 * 12) before `to`. Throws LinesignError USAGE naming the bad field when a
 * time is not ISO 8601, `from` and `hours` are both given, `hours` is not a
 * whole number from 1 to 168, `from` is not before `to`, or the window is
 * longer than 168 hours.
 */
export function shiftWindow(input: ShiftWindowInput, now: Date): ShiftWindow {
  if (input.from !== undefined && input.hours !== undefined)
    throw new LinesignError("USAGE", "Give the shift's start or its length in hours, not both.");
  const hours = input.hours ?? DEFAULT_SHIFT_HOURS;
  if (!Number.isInteger(hours) || hours < 1 || hours > MAX_SHIFT_HOURS)
    throw new LinesignError(
      "USAGE",
      `The shift's length must be a whole number of hours from 1 to ${MAX_SHIFT_HOURS}.`,
    );
  const to = input.to !== undefined ? time(input.to, "end") : now.getTime();
  const from = input.from !== undefined ? time(input.from, "start") : to - hours * HOUR_MS;
  if (from >= to) throw new LinesignError("USAGE", "The shift's start must be before its end.");
  if (to - from > MAX_SHIFT_HOURS * HOUR_MS)
    throw new LinesignError(
      "USAGE",
      `A shift view covers at most ${MAX_SHIFT_HOURS} hours (a week); ask for a shorter window.`,
    );
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
}

/** The start of every clock hour (UTC) the window touches, oldest first, as ISO 8601. */
export function shiftHours(w: ShiftWindow): string[] {
  const first = Math.floor(Date.parse(w.from) / HOUR_MS) * HOUR_MS;
  const end = Date.parse(w.to);
  const out: string[] = [];
  for (let t = first; t < end; t += HOUR_MS) out.push(new Date(t).toISOString());
  return out;
}

/**
 * One group of the line's exchanges as the store counts them: the clock hour
 * (ISO 8601 hour, "2026-12-02T08"), the port, the outcome, the refusal code
 * (null for a confirmed device) and how many.
 */
export interface LineSessionCount {
  hour: string;
  port: string;
  outcome: "ok" | "refused" | "failed";
  code: string | null;
  n: number;
}

/** Per port: the devices first seen in the window, those confirmed at their first try, and those confirmed at all. */
export interface FirstPassCount {
  port: string;
  tried: number;
  firstPass: number;
  passed: number;
}

/** A work order's progress: its quantity, devices issued and confirmed (ever), and confirmed in the window. */
export interface WorkOrderProgress {
  id: string;
  status: "open" | "closed";
  quantity: number;
  issued: number;
  confirmed: number;
  shiftConfirmed: number;
}

/** What the store answers for a window; the app shapes it into ShiftFigures. */
export interface LineShiftCounts {
  sessions: LineSessionCount[];
  firstPass: FirstPassCount[];
  workOrders: WorkOrderProgress[];
}

/** First-pass yield: devices confirmed at their first try over devices tried (null when none was). */
export interface FirstPass {
  tried: number;
  firstPass: number;
  passed: number;
  yield: number | null;
}

/** The figures of a shift, as drawn and printed. */
export interface ShiftFigures {
  from: string;
  to: string;
  /** The start of each clock hour, oldest first; every per-hour array has one number per hour. */
  hours: string[];
  confirmed: number[];
  failed: number[];
  totals: { confirmed: number; failed: number };
  firstPass: FirstPass;
  /** Failures by reason (the refusal's code), most frequent first. */
  reasons: { code: string; total: number; perHour: number[] }[];
  ports: ({
    port: string;
    confirmed: number;
    failed: number;
    reasons: Record<string, number>;
  } & FirstPass)[];
  workOrders: WorkOrderProgress[];
}

const yieldOf = (tried: number, firstPass: number): number | null =>
  tried === 0 ? null : firstPass / tried;

/** Shapes the store's counts into the window's figures (every hour present, zeros included). */
export function shiftFigures(w: ShiftWindow, counts: LineShiftCounts): ShiftFigures {
  const hours = shiftHours(w);
  const index = new Map(hours.map((h, i) => [h.slice(0, 13), i]));
  const zeros = () => hours.map(() => 0);
  const confirmed = zeros();
  const failed = zeros();
  const reasons = new Map<string, number[]>();
  type Port = ShiftFigures["ports"][number];
  const ports = new Map<string, Port>();
  const port = (name: string): Port => {
    let p = ports.get(name);
    if (!p) {
      p = {
        port: name,
        confirmed: 0,
        failed: 0,
        reasons: {},
        tried: 0,
        firstPass: 0,
        passed: 0,
        yield: null,
      };
      ports.set(name, p);
    }
    return p;
  };
  for (const c of counts.sessions) {
    const i = index.get(c.hour);
    if (i === undefined) continue;
    const p = port(c.port);
    if (c.outcome === "ok") {
      confirmed[i]! += c.n;
      p.confirmed += c.n;
      continue;
    }
    const code = c.code ?? "UNKNOWN";
    failed[i]! += c.n;
    p.failed += c.n;
    p.reasons[code] = (p.reasons[code] ?? 0) + c.n;
    let per = reasons.get(code);
    if (!per) reasons.set(code, (per = zeros()));
    per[i]! += c.n;
  }
  const all = { tried: 0, firstPass: 0, passed: 0 };
  for (const f of counts.firstPass) {
    const p = port(f.port);
    p.tried += f.tried;
    p.firstPass += f.firstPass;
    p.passed += f.passed;
    p.yield = yieldOf(p.tried, p.firstPass);
    all.tried += f.tried;
    all.firstPass += f.firstPass;
    all.passed += f.passed;
  }
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  return {
    from: w.from,
    to: w.to,
    hours,
    confirmed,
    failed,
    totals: { confirmed: sum(confirmed), failed: sum(failed) },
    firstPass: { ...all, yield: yieldOf(all.tried, all.firstPass) },
    reasons: [...reasons.entries()]
      .map(([code, perHour]) => ({ code, total: sum(perHour), perHour }))
      .sort((a, b) => b.total - a.total || a.code.localeCompare(b.code)),
    ports: [...ports.values()].sort((a, b) => a.port.localeCompare(b.port)),
    workOrders: counts.workOrders,
  };
}
