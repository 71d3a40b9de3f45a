/**
 * Work orders: what the line may provision. The checks that need no storage
 * are pure and live here; the quantity is counted where issuances are.
 */
import { LinesignError } from "./errors.js";
import { compilePattern } from "./pattern.js";

export interface WorkOrder {
  id: string;
  profile: string;
  quantity: number;
  /** Regular expression a device id must match in full, or null. */
  pattern: string | null;
  /** The only device ids allowed, or null. */
  devices: string[] | null;
  notBefore: string | null;
  notAfter: string | null;
  status: "open" | "closed";
  createdBy: string;
  createdAt: string;
}

export const WORK_ORDER_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Whether an officer's work-order pattern can be used; refuses it with why.
 * @throws LinesignError USAGE
 */
export function checkWorkOrderPattern(pattern: string): void {
  const c = compilePattern(pattern);
  if (!c.ok)
    throw new LinesignError(
      "USAGE",
      `The pattern ${JSON.stringify(pattern)} cannot be used: ${c.why}.`,
    );
}

/** Refuses a device the work order does not cover (closed, outside its window, not in its pattern or list). */
export function checkWorkOrder(wo: WorkOrder, deviceId: string, now: Date): void {
  if (wo.status !== "open")
    throw new LinesignError(
      "WORK_ORDER_CLOSED",
      `Work order ${wo.id} is closed: an officer must open another before the line continues.`,
    );
  if (wo.notBefore && now < new Date(wo.notBefore))
    throw new LinesignError(
      "WORK_ORDER_WINDOW",
      `Work order ${wo.id} starts at ${wo.notBefore}; it cannot be used yet.`,
    );
  if (wo.notAfter && now >= new Date(wo.notAfter))
    throw new LinesignError(
      "WORK_ORDER_WINDOW",
      `Work order ${wo.id} ended at ${wo.notAfter}: an officer must open a new one.`,
    );
  if (wo.pattern) {
    const c = compilePattern(wo.pattern);
    if (!c.ok)
      throw new LinesignError(
        "WORK_ORDER_DEVICE",
        `Work order ${wo.id}'s pattern ${wo.pattern} cannot be used: ${c.why}. An officer must close it and open another.`,
      );
    if (!c.pattern.matchesWhole(deviceId)) throw notCovered(wo, deviceId);
  }
  if (wo.devices && !wo.devices.includes(deviceId))
    throw new LinesignError(
      "WORK_ORDER_DEVICE",
      `Device "${deviceId}" is not on work order ${wo.id}'s list: set the device aside and tell the officer.`,
    );
}

function notCovered(wo: WorkOrder, deviceId: string): LinesignError {
  return new LinesignError(
    "WORK_ORDER_DEVICE",
    `Device "${deviceId}" is not covered by work order ${wo.id} (its ids must match ${wo.pattern}): set the device aside and tell the officer.`,
  );
}

export function workOrderExhausted(wo: WorkOrder): LinesignError {
  return new LinesignError(
    "WORK_ORDER_EXHAUSTED",
    `Work order ${wo.id} is complete: all ${wo.quantity} devices have certificates. An officer must open a new work order for more.`,
  );
}
