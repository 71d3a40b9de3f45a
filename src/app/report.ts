/**
 * `linesign audit report`: for officers, per work order, per operator and per
 * port: issued, confirmed, delivered but unconfirmed (listed: certificates
 * possibly in the wild without confirmation), rejected by reason, re-issued,
 * revoked, and uploaded per target.
 */
import type { AuditQuery, IssuanceRecord } from "../domain/ports.js";
import type { AppContext } from "./context.js";

export interface ReportGroup {
  issued: number;
  confirmed: number;
  unconfirmed: number;
  rejected: Record<string, number>;
  reissued: number;
  revoked: number;
  uploaded: Record<string, number>;
}

export interface Report {
  since: string | null;
  until: string | null;
  totals: ReportGroup;
  byWorkOrder: Record<string, ReportGroup>;
  byOperator: Record<string, ReportGroup>;
  byPort: Record<string, ReportGroup>;
  /**
   * Left (or may have left) the station and never confirmed: ISSUED, DELIVERED
   * and DELIVERY_FAILED (sent over the wire, then no confirmation). The
   * station's open risk: possibly on a device nobody checked.
   */
  unconfirmed: {
    serial: string;
    deviceId: string;
    state: string;
    origin: string;
    workOrder: string | null;
    at: string;
  }[];
  /** The latest rejected requests (at most REPORT_REJECTIONS), oldest first. */
  rejections: {
    at: string;
    deviceId: string | null;
    reason: string;
    origin: string;
    workOrder: string | null;
    operator: string;
  }[];
  /** Rejections in the window older than those listed. */
  rejectionsLeftOut: number;
}

/** How many rejected requests a report lists one by one (all are counted). */
export const REPORT_REJECTIONS = 200;

const empty = (): ReportGroup => ({
  issued: 0,
  confirmed: 0,
  unconfirmed: 0,
  rejected: {},
  reissued: 0,
  revoked: 0,
  uploaded: {},
});

const unconfirmed = (i: IssuanceRecord): boolean =>
  i.state === "ISSUED" || i.state === "DELIVERED" || i.state === "DELIVERY_FAILED";

export function buildReport(ctx: AppContext, q: AuditQuery): Report {
  const report: Report = {
    since: q.since ?? null,
    until: q.until ?? null,
    totals: empty(),
    byWorkOrder: {},
    byOperator: {},
    byPort: {},
    unconfirmed: [],
    rejections: [],
    rejectionsLeftOut: 0,
  };
  const targets = ctx.store.listTargets().map((t) => t.name);
  const uploadedAt = new Map<number, string[]>();
  for (const t of targets)
    for (const u of ctx.store.uploads(t))
      if (u.state === "done" || u.state === "revoked")
        uploadedAt.set(u.issuanceId, [...(uploadedAt.get(u.issuanceId) ?? []), t]);
  const groups = (wo: string | null, operator: string, origin: string): ReportGroup[] => {
    const g = (m: Record<string, ReportGroup>, k: string) => (m[k] ??= empty());
    return [
      report.totals,
      g(report.byWorkOrder, wo ?? "manual"),
      g(report.byOperator, operator),
      g(report.byPort, origin),
    ];
  };
  const count = (i: IssuanceRecord) => {
    for (const g of groups(i.workOrder, i.operator, i.origin)) {
      g.issued++;
      if (i.state === "CONFIRMED") g.confirmed++;
      if (unconfirmed(i)) g.unconfirmed++;
      if (i.supersedes !== null) g.reissued++;
      if (i.state === "REVOKED") g.revoked++;
      for (const t of uploadedAt.get(i.id) ?? []) g.uploaded[t] = (g.uploaded[t] ?? 0) + 1;
    }
    if (unconfirmed(i))
      report.unconfirmed.push({
        serial: i.serial,
        deviceId: i.deviceId,
        state: i.state,
        origin: i.origin,
        workOrder: i.workOrder,
        at: i.createdAt,
      });
  };
  for (const i of ctx.store.queryIssuances(q)) count(i);
  const rejections = ctx.store.queryRejections(q);
  for (const r of rejections)
    for (const g of groups(r.workOrder, r.operator, r.origin))
      g.rejected[r.reason] = (g.rejected[r.reason] ?? 0) + 1;
  report.rejectionsLeftOut = Math.max(0, rejections.length - REPORT_REJECTIONS);
  report.rejections = rejections.slice(report.rejectionsLeftOut).map((r) => ({
    at: r.createdAt,
    deviceId: r.deviceId,
    reason: r.reason,
    origin: r.origin,
    workOrder: r.workOrder,
    operator: r.operator,
  }));
  return report;
}
