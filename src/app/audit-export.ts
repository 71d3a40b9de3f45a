/**
 * Audit export an auditor can check elsewhere: every event (rejections
 * included), the signed checkpoints, the CA certificates, the audit public
 * key and the CRLs, in one file. Verification needs no HSM and no station
 * database: it re-walks the hash chain, checks every checkpoint against its
 * entry and the audit key (pinned with the station certificate when given),
 * requires the export's own closing checkpoint to sign the last entry (so a
 * removed tail shows), and counts what the log says happened.
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import { LinesignError } from "../domain/errors.js";
import {
  describeBreak,
  verifyChain,
  type ChainHash,
  type EventRecord,
} from "../domain/event-log.js";
import type { AppContext } from "./context.js";
import { checkpointMessage, type Checkpointer } from "./checkpoint.js";
import { verifySignature, type AuditProblem } from "./audit.js";
import { pemOfDer } from "./pki/certificates.js";
import { auditKeyChain, keyAt, ROLLOVER_ACTION, type KeyPeriod } from "./audit-keys.js";

export const AUDIT_FORMAT = "linesign-audit/1";

export interface AuditBundle {
  format: string;
  station: string;
  exportedAt: string;
  /** DER SubjectPublicKeyInfo of the audit key, base64. */
  auditPublicKey: string;
  events: EventRecord[];
  checkpoints: { seq: number; hash: string; ts: string; spki: string; signature: string }[];
  cas: { label: string; status: string; pem: string | null }[];
  crls: { ca: string; number: number; pem: string }[];
}

export interface AuditCounts {
  events: number;
  issued: number;
  confirmed: number;
  unconfirmed: number;
  /** Certificates that left (or may have left) the station without confirmation. */
  unconfirmedList: { serial: string; deviceId: string; state: string }[];
  rejectedByReason: Record<string, number>;
  revoked: number;
}

export interface BundleVerdict {
  ok: boolean;
  station: string;
  firstBad: AuditProblem | null;
  checkpoints: { count: number; verified: number };
  auditKeyPinned: boolean;
  /** The chain of audit keys the checkpoints were verified against. */
  auditKeys: KeyPeriod[];
  counts: AuditCounts;
  message: string;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

/** Writes the bundle's content; the export itself is logged and closed by a checkpoint. */
export async function exportAudit(
  ctx: AppContext,
  checkpointer: Checkpointer,
): Promise<AuditBundle> {
  const spki = await checkpointer.tokenAuditKeySpki();
  ctx.store.appendEvent({
    actor: ctx.actor,
    action: "audit.export",
    subject: ctx.stationId,
    outcome: "ok",
    details: { entries: ctx.store.head()?.seq ?? 0 },
  });
  // The closing checkpoint signs the last entry: a removed tail cannot hide.
  await checkpointer.checkpoint();
  const key = spki ?? (await checkpointer.tokenAuditKeySpki());
  if (!key)
    throw new LinesignError(
      "HSM_KEY_NOT_FOUND",
      "The station's audit key is missing from the token.",
    );
  return {
    format: AUDIT_FORMAT,
    station: ctx.stationId,
    exportedAt: ctx.clock.now().toISOString(),
    auditPublicKey: b64(key),
    events: [...ctx.store.events()],
    checkpoints: ctx.store.checkpoints().map((c) => ({
      seq: c.seq,
      hash: c.hash,
      ts: c.ts,
      spki: b64(c.spki),
      signature: b64(c.signature),
    })),
    cas: ctx.store.listCas().map((c) => ({
      label: c.label,
      status: c.status,
      pem: c.certDer ? pemOfDer(c.certDer) : null,
    })),
    crls: ctx.store
      .crls()
      .map((c) => ({ ca: c.caLabel, number: c.number, pem: pemOfDer(c.der, "X509 CRL") })),
  };
}

/** What the log says happened to each certificate. */
export function countEvents(events: EventRecord[]): AuditCounts {
  const state = new Map<number, { serial: string; deviceId: string; state: string }>();
  const rejected: Record<string, number> = {};
  let issued = 0;
  let revoked = 0;
  for (const e of events) {
    const d = e.details as Record<string, unknown>;
    const id = typeof d.issuance === "number" ? d.issuance : null;
    if (e.action === "issuance.issue" && e.outcome === "ok" && id !== null) {
      issued++;
      state.set(id, { serial: String(d.serial), deviceId: e.subject ?? "", state: "ISSUED" });
      const sup = d.supersedes;
      if (typeof sup === "number" && state.has(sup)) state.get(sup)!.state = "SUPERSEDED";
    } else if (e.action === "issuance.reject") {
      const code = e.code ?? "UNKNOWN";
      rejected[code] = (rejected[code] ?? 0) + 1;
    } else if (e.action === "issuance.revoke" && e.outcome === "ok" && id !== null) {
      revoked++;
      if (state.has(id)) state.get(id)!.state = "REVOKED";
    } else if (e.outcome === "ok" && id !== null && typeof d.to === "string" && state.has(id)) {
      state.get(id)!.state = d.to;
    }
  }
  const all = [...state.values()];
  // DELIVERY_FAILED went out over the wire too: it is unconfirmed, not safe.
  const unconfirmed = all.filter(
    (s) => s.state === "ISSUED" || s.state === "DELIVERED" || s.state === "DELIVERY_FAILED",
  );
  return {
    events: events.length,
    issued,
    confirmed: all.filter((s) => s.state === "CONFIRMED").length,
    unconfirmed: unconfirmed.length,
    unconfirmedList: unconfirmed,
    rejectedByReason: rejected,
    revoked,
  };
}

/**
 * Checks an exported bundle; `hash` is the event log's hash step, `trustPem`
 * (the station certificate) pins the audit key.
 */
export async function verifyAuditBundle(
  bytes: Uint8Array,
  hash: ChainHash,
  trustPem?: string,
  rootPem?: string,
): Promise<BundleVerdict> {
  let b: AuditBundle;
  try {
    b = JSON.parse(Buffer.from(bytes).toString("utf8")) as AuditBundle;
  } catch {
    throw new LinesignError("BUNDLE_INVALID", "This is not a Linesign audit export (not JSON).");
  }
  if (b.format !== AUDIT_FORMAT || !Array.isArray(b.events) || !Array.isArray(b.checkpoints))
    throw new LinesignError("BUNDLE_INVALID", `This is not a ${AUDIT_FORMAT} file.`);
  let firstBad: AuditProblem | null = null;
  const chain = verifyChain(b.events, hash);
  if (!chain.ok) firstBad = chain.firstBad;
  const bySeq = new Map(b.events.map((e) => [e.seq, e]));
  const derOf = (pem: string): Uint8Array | null => {
    try {
      return new Uint8Array(new X509Certificate(pem).raw);
    } catch {
      return null;
    }
  };
  const keys = await auditKeyChain({
    station: b.station,
    rollovers: b.events.filter((e) => e.action === ROLLOVER_ACTION),
    firstCheckpointSpki: b.checkpoints[0]?.spki ?? null,
    firstCheckpointSeq: b.checkpoints[0]?.seq ?? null,
    eventAt: (seq) => bySeq.get(seq) ?? null,
    isOfficer: (actor, before) =>
      b.events.some(
        (e) =>
          e.seq < before &&
          e.action === "user.add" &&
          e.outcome === "ok" &&
          e.subject === actor &&
          (e.details as { role?: unknown }).role === "officer",
      ),
    rootCert: (label) => {
      const ca = Array.isArray(b.cas) ? b.cas.find((c) => c.label === label) : undefined;
      return ca?.pem ? derOf(ca.pem) : null;
    },
    ...(rootPem && derOf(rootPem) ? { pinnedRoot: derOf(rootPem)! } : {}),
    verify: verifySignature,
  });
  if (!firstBad && keys.problem)
    firstBad = { kind: "checkpoint", seq: keys.problem.seq, why: keys.problem.why };
  // The key that exported it is the key in force at the end.
  const inForce = keys.periods.at(-1)?.spki;
  if (!firstBad && inForce !== undefined && inForce !== b.auditPublicKey)
    firstBad = {
      kind: "checkpoint",
      seq: b.checkpoints.at(-1)?.seq ?? 0,
      why: "the audit key in force at the end of the log is not the export's audit key",
    };
  let pinned = false;
  if (trustPem) {
    let certKey: Buffer;
    try {
      certKey = createPublicKey(
        new X509Certificate(trustPem).publicKey.export({ format: "pem", type: "spki" }),
      ).export({
        format: "der",
        type: "spki",
      });
    } catch {
      throw new LinesignError(
        "BUNDLE_INVALID",
        'The --trust file is not a PEM certificate: give the station certificate from "linesign station-cert".',
      );
    }
    pinned = true;
    // The trusted station certificate may be of any key in the chain (one from before a rollover).
    const chainKeys = new Set([b.auditPublicKey, ...keys.periods.map((p) => p.spki)]);
    if (!firstBad && !chainKeys.has(certKey.toString("base64")))
      firstBad = {
        kind: "checkpoint",
        seq: 0,
        why: "the export's audit key is not the trusted station's audit key",
      };
  }
  let verified = 0;
  for (const [i, cp] of b.checkpoints.entries()) {
    if (firstBad) break;
    const entry = bySeq.get(cp.seq);
    const n = i + 1;
    if (!entry)
      firstBad = {
        kind: "truncated",
        seq: cp.seq,
        why: `checkpoint ${n} signed entry ${cp.seq}, which is not in the export`,
      };
    else if (entry.hash !== cp.hash)
      firstBad = {
        kind: "checkpoint",
        seq: cp.seq,
        why: `entry ${cp.seq} differs from what checkpoint ${n} signed`,
      };
    else if (cp.spki !== (keyAt(keys.periods, cp.seq) ?? b.auditPublicKey))
      firstBad = {
        kind: "checkpoint",
        seq: cp.seq,
        why: `checkpoint ${n} was signed by a key that is not the export's audit key in force at entry ${cp.seq}`,
      };
    else if (
      !(await verifySignature(
        unb64(cp.spki),
        checkpointMessage(b.station, cp.seq, cp.hash),
        unb64(cp.signature),
      ))
    )
      firstBad = {
        kind: "checkpoint",
        seq: cp.seq,
        why: `the signature of checkpoint ${n} (entry ${cp.seq}) does not verify`,
      };
    else verified++;
  }
  const last = b.events.at(-1);
  if (!firstBad && (!last || b.checkpoints.at(-1)?.seq !== last.seq))
    firstBad = {
      kind: "truncated",
      seq: b.checkpoints.at(-1)?.seq ?? 0,
      why: `the export's closing checkpoint does not sign its last entry (${last?.seq ?? "none"}): entries were removed from the end or added after export`,
    };
  const counts = countEvents(b.events);
  const ok = firstBad === null;
  const describe = (p: AuditProblem) => ("why" in p ? p.why : describeBreak(p));
  return {
    ok,
    station: b.station,
    firstBad,
    checkpoints: { count: b.checkpoints.length, verified },
    auditKeyPinned: pinned,
    auditKeys: keys.periods,
    counts,
    message: ok
      ? `The export of station "${b.station}" is intact: ${chain.count} entries chain correctly and ${verified} signed checkpoint(s) verify${keys.periods.length > 1 ? ` across ${keys.periods.length - 1} audit-key rollover(s)` : ""}${pinned ? " against the trusted station key" : " (the audit key was not pinned: pass --trust STATION_CERT.pem to check it is the station's)"}.`
      : `The export has been tampered with: ${describe(firstBad!)}.`,
  };
}
