/**
 * Verifying the event log: the hash chain, every signed checkpoint, and the
 * database head against the head kept in the token. Records that it checked.
 */
import { isLinesignError } from "../domain/errors.js";
import {
  ChainWalker,
  describeBreak,
  joinRangeWalks,
  type ChainBreak,
  type ChainVerdict,
  type EncodedEvent,
  type StoredEvent,
} from "../domain/event-log.js";
import type { AuditQuery, CheckpointRecord, LogRange, LogRangeWalker } from "../domain/ports.js";
import type { AppContext } from "./context.js";
import {
  checkpointMessage,
  describeBinding,
  type AcceptedLoss,
  type Checkpointer,
  type HeadBinding,
} from "./checkpoint.js";
import { auditKeyChain, keyAt, ROLLOVER_ACTION, type KeyPeriod } from "./audit-keys.js";

export type AuditProblem =
  | ChainBreak
  | { kind: "checkpoint"; seq: number; why: string }
  | { kind: "truncated"; seq: number; why: string; binding?: HeadBinding }
  /** Entries past the configured checkpoint interval that no signed checkpoint covers. */
  | { kind: "uncovered"; seq: number; why: string }
  /** The token's head could not be compared, and nobody said that was expected. */
  | { kind: "token"; seq: number; why: string }
  /** The head read without the user PIN (the token's public copy, or the head file) is not genuine. */
  | { kind: "public-head"; seq: number; why: string };

export interface VerifyOptions {
  /**
   * The token is not expected here (a copy verified away from the station):
   * its head is not compared and the verdict says so instead of failing.
   */
  withoutToken?: boolean;
  /**
   * From how many entries on the chain is walked in ranges on threads of its
   * own (default 50,000: below it, starting the threads costs more than they
   * save); Infinity walks it in this thread whatever its length.
   */
  parallelFrom?: number;
  /** Threads that walk it in ranges (default 2, the cores of a station's machine). */
  threads?: number;
}

/** See VerifyOptions.parallelFrom. */
export const PARALLEL_FROM = 50_000;

export interface AuditVerdict {
  ok: boolean;
  /** Entries that chain correctly from the start (all of them when the chain is intact). */
  checked: number;
  /** Threads the chain was walked on (1: in this thread, as a short log is). */
  threads: number;
  head: { seq: number; hash: string } | null;
  firstBad: AuditProblem | null;
  checkpoints: { count: number; verified: number };
  /** False when the check could not be recorded (a full or read-only home). */
  recorded: boolean;
  /** Losses an officer accepted: they stay visible in every verification. */
  losses: AcceptedLoss[];
  /**
   * Whether the token's head was compared, and why not when it was not.
   * `source`: the private head (with the user PIN), or, without the PIN, the
   * token's public copy or the head file; `public`: that copy's entry, its
   * time and age, and how many entries the database holds past it.
   */
  token: {
    checked: boolean;
    headSeq: number | null;
    note: string | null;
    source?: "private" | "public-object" | "head-file";
    public?: {
      where: string;
      seq: number;
      ts: string;
      tsSigned: boolean;
      ageSeconds: number | null;
      entriesAfter: number;
    } | null;
  };
  /** The chain of audit keys: each key and the entry from which it signs (more than one after a rollover). */
  auditKeys: KeyPeriod[];
  /** Plain words: what was found. */
  message: string;
}

function describe(p: AuditProblem): string {
  return "why" in p ? p.why : describeBreak(p);
}

/** Problems that say the log could not be fully checked, not that it was changed. */
const unverified = (p: AuditProblem): boolean => p.kind === "uncovered" || p.kind === "token";

/**
 * Checks a checkpoint signature (WebCrypto form) by whatever key type the
 * station's audit key is (audit.keyType): ECDSA P-256 with SHA-256, P-384
 * with SHA-384 (r || s), or RSASSA-PKCS1-v1_5 with SHA-256.
 */
export async function verifySignature(
  spki: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return verifyWith(importAuditKey(spki), message, signature);
}

type CryptoKeyOf = Awaited<ReturnType<typeof globalThis.crypto.subtle.importKey>>;
interface AuditKey {
  key: CryptoKeyOf;
  params: { name: "ECDSA"; hash: string } | { name: "RSASSA-PKCS1-v1_5" };
}

const AUDIT_KEY_FORMS = [
  {
    importAs: { name: "ECDSA", namedCurve: "P-256" },
    params: { name: "ECDSA", hash: "SHA-256" },
  },
  {
    importAs: { name: "ECDSA", namedCurve: "P-384" },
    params: { name: "ECDSA", hash: "SHA-384" },
  },
  {
    importAs: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    params: { name: "RSASSA-PKCS1-v1_5" },
  },
] as const;

/** The audit key for WebCrypto, or null when the SPKI is none of the audit key types. */
async function importAuditKey(spki: Uint8Array): Promise<AuditKey | null> {
  for (const form of AUDIT_KEY_FORMS) {
    try {
      const key = await globalThis.crypto.subtle.importKey("spki", spki, form.importAs, false, [
        "verify",
      ]);
      return { key, params: form.params };
    } catch {
      // not this type: try the next
    }
  }
  return null;
}

async function verifyWith(
  key: Promise<AuditKey | null>,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    const k = await key;
    return (
      k !== null && (await globalThis.crypto.subtle.verify(k.params, k.key, signature, message))
    );
  } catch {
    return false;
  }
}

/**
 * Starts checking every checkpoint's signature; WebCrypto runs them on the
 * crypto thread pool, so they proceed while the chain is walked. Each key is
 * imported once. Resolves, in checkpoint order, whether each verifies.
 */
function checkSignatures(cps: CheckpointRecord[], stationId: string): Promise<boolean[]> {
  const keys = new Map<string, Promise<AuditKey | null>>();
  return Promise.all(
    cps.map((cp) => {
      const id = Buffer.from(cp.spki).toString("base64");
      let key = keys.get(id);
      if (!key) keys.set(id, (key = importAuditKey(cp.spki)));
      return verifyWith(key, checkpointMessage(stationId, cp.seq, cp.hash), cp.signature);
    }),
  );
}

/** "45 s", "12 min", "3 h", "2 days": how old a head is, in words. */
function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} days`;
}

/** Entries read per page of the walk: what it holds in memory, and how long it keeps the event loop. */
const WALK_PAGE = 4096;

/** One line of the issuance log as people read it: an issuance or a rejection. */
export interface AuditLogRow {
  time: string;
  kind: "issuance" | "rejection";
  deviceId: string | null;
  /** The issuance state, or REJECTED. */
  status: string;
  serial: string | null;
  /** The device key's type (issuances only). */
  keyType: string | null;
  /** Rejection reason code, or why the state changed. */
  reason: string | null;
  message: string | null;
  profile: string | null;
  ca: string | null;
  operator: string;
  origin: string;
  workOrder: string | null;
  fingerprint: string | null;
}

export const AUDIT_LOG_COLUMNS: (keyof AuditLogRow)[] = [
  "time",
  "kind",
  "deviceId",
  "status",
  "serial",
  "keyType",
  "reason",
  "message",
  "profile",
  "ca",
  "operator",
  "origin",
  "workOrder",
  "fingerprint",
];

export class AuditService {
  constructor(
    private readonly ctx: AppContext,
    private readonly checkpointer: Checkpointer,
    /** The configured checkpoint interval: more uncovered entries than this fail verification. */
    private readonly checkpointEvery: number,
    /** Walks ranges of a long log on threads of their own; without it the walk stays in this thread. */
    private readonly rangeWalker: LogRangeWalker | null = null,
  ) {}

  /**
   * Issuances and rejections, oldest first. `status` is an issuance state or
   * REJECTED; `since`/`until` are ISO times (until exclusive).
   */
  log(q: AuditQuery): AuditLogRow[] {
    const rows: AuditLogRow[] = [];
    if (q.status !== "REJECTED") {
      for (const i of this.ctx.store.queryIssuances(q)) {
        rows.push({
          time: i.createdAt,
          kind: "issuance",
          deviceId: i.deviceId,
          status: i.state,
          serial: i.serial,
          keyType: i.keyType,
          reason: i.stateReason,
          message: i.validityCut ? "validity cut at the CA's notAfter" : null,
          profile: i.profile,
          ca: i.caLabel,
          operator: i.operator,
          origin: i.origin,
          workOrder: i.workOrder,
          fingerprint: i.fingerprint,
        });
      }
    }
    if (q.status === undefined || q.status === "REJECTED") {
      for (const r of this.ctx.store.queryRejections(q)) {
        rows.push({
          time: r.createdAt,
          kind: "rejection",
          deviceId: r.deviceId,
          status: "REJECTED",
          serial: null,
          keyType: null,
          reason: r.reason,
          message: r.message,
          profile: r.profile,
          ca: null,
          operator: r.operator,
          origin: r.origin,
          workOrder: r.workOrder,
          fingerprint: r.csrSha256,
        });
      }
    }
    return rows.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  }

  /**
   * Verifies the chain, each checkpoint's signature and entry, and the token's
   * head (when the token can be read); records the result as `audit.verify`.
   */
  async verify(opts: VerifyOptions = {}): Promise<AuditVerdict> {
    const cps = this.ctx.store.checkpoints();
    const signatures = checkSignatures(cps, this.ctx.stationId);
    // The hash of the entry at each checkpoint's sequence, as the walk meets it.
    const atCheckpoint = new Map<number, string>();
    for (const cp of cps) atCheckpoint.set(cp.seq, "");
    const chain = await this.walkChain(atCheckpoint, opts);
    const head = this.ctx.store.head();
    let firstBad: AuditProblem | null = chain.ok ? null : chain.firstBad;
    const store = this.ctx.store;
    const keys = await auditKeyChain({
      station: this.ctx.stationId,
      rollovers: store.queryEvents({ action: ROLLOVER_ACTION }),
      firstCheckpointSpki: cps[0] ? Buffer.from(cps[0].spki).toString("base64") : null,
      firstCheckpointSeq: cps[0]?.seq ?? null,
      eventAt: (seq) => store.eventAt(seq),
      isOfficer: (actor, before) =>
        store
          .queryEvents({ action: "user.add", outcome: "ok", beforeSeq: before })
          .some((e) => e.subject === actor && e.details.role === "officer"),
      rootCert: (label) => {
        const ca = store.getCa(label);
        return ca?.kind === "root" ? ca.certDer : null;
      },
      verify: verifySignature,
    });
    if (!firstBad && keys.problem)
      firstBad = { kind: "checkpoint", seq: keys.problem.seq, why: keys.problem.why };
    const signed = await signatures;
    let verified = 0;
    for (const [i, cp] of cps.entries()) {
      if (firstBad) break;
      const entryHash = atCheckpoint.get(cp.seq);
      if (keyAt(keys.periods, cp.seq) !== Buffer.from(cp.spki).toString("base64")) {
        firstBad = {
          kind: "checkpoint",
          seq: cp.seq,
          why: `checkpoint ${cp.id} (entry ${cp.seq}) was signed by a key that is not the audit key in force at entry ${cp.seq}`,
        };
      } else if (!entryHash) {
        firstBad = {
          kind: "truncated",
          seq: cp.seq,
          why: `checkpoint ${cp.id} signed entry ${cp.seq}, which is no longer in the log: its tail was cut off`,
        };
      } else if (entryHash !== cp.hash) {
        firstBad = {
          kind: "checkpoint",
          seq: cp.seq,
          why: `entry ${cp.seq} differs from what checkpoint ${cp.id} signed`,
        };
      } else if (!signed[i]) {
        firstBad = {
          kind: "checkpoint",
          seq: cp.seq,
          why: `the signature of checkpoint ${cp.id} (entry ${cp.seq}) does not verify`,
        };
      } else {
        verified++;
      }
    }

    const token: AuditVerdict["token"] = { checked: false, headSeq: null, note: null };
    let withoutPin = false;
    try {
      const binding = await this.checkpointer.binding();
      const auditSpki = await this.checkpointer.tokenAuditKeySpki();
      token.checked = true;
      token.source = "private";
      token.headSeq = binding.tokenSeq;
      const inForce = keys.periods.at(-1);
      if (
        !firstBad &&
        auditSpki &&
        inForce &&
        inForce.spki !== Buffer.from(auditSpki).toString("base64")
      )
        firstBad = {
          kind: "checkpoint",
          seq: cps.at(-1)?.seq ?? inForce.fromSeq,
          why:
            "the checkpoints are signed by a key that is not the token's audit key (the token was replaced: " +
            'a security officer introduces its key with "linesign audit rollover")',
        };
      if (!firstBad && binding.state !== "bound") {
        firstBad = {
          kind: "truncated",
          seq: binding.state === "gap" ? binding.from : (binding.tokenSeq ?? binding.dbSeq),
          why: describeBinding(binding),
          binding,
        };
      }
    } catch (e) {
      if (!isLinesignError(e)) throw e;
      // No user PIN here (an auditor, or a service without a signing session): the copy
      // readable without login is compared instead.
      if (e.code === "HSM_PIN_REQUIRED" || e.code === "SIGNING_SESSION_REQUIRED") withoutPin = true;
      else if (e.code === "AUDIT_CHAIN_BROKEN" && !firstBad) {
        firstBad = { kind: "truncated", seq: head?.seq ?? 0, why: e.message.replace(/\.$/, "") };
      }
      if (!withoutPin) token.note = `the token's log head was not compared (${e.message})`;
      if (!withoutPin && !firstBad && !opts.withoutToken)
        firstBad = {
          kind: "token",
          seq: head?.seq ?? 0,
          why:
            `the token's log head could not be compared (${e.message.replace(/\.$/, "")}), so a cut-off tail or an older ` +
            'copy of the database would not show. Verify where the token is (with its user PIN), or say that it is not expected with "--without-token"',
        };
    }
    if (withoutPin) firstBad = await this.comparePublic(token, keys.periods, firstBad, opts, head);
    // Entries no signed checkpoint covers, beyond the interval: a checkpoint that could not be made.
    const lastCovered = cps.at(-1)?.seq ?? 0;
    if (!firstBad && head && head.seq - lastCovered > this.checkpointEvery)
      firstBad = {
        kind: "uncovered",
        seq: lastCovered + 1,
        why:
          `entries ${lastCovered + 1} to ${head.seq} are covered by no signed checkpoint (the interval is ${this.checkpointEvery}): ` +
          "the station's checkpoints are failing. Check the audit key (audit.keyType must be a type the token supports) and the token",
      };
    const losses = this.checkpointer.acceptedLosses();
    const lossText = losses.length
      ? ` ${losses.length} loss(es) were accepted by an officer and stay on record: ` +
        losses
          .map((l) => `${l.what} (accepted by ${l.actor} at ${l.ts}, entry ${l.seq}: ${l.reason})`)
          .join("; ") +
        "."
      : "";

    const ok = firstBad === null;
    const verdict: AuditVerdict = {
      ok,
      checked: chain.count,
      threads: chain.threads,
      head: ok ? head : null,
      firstBad,
      checkpoints: { count: cps.length, verified },
      losses,
      recorded: true,
      token,
      auditKeys: keys.periods,
      message: ok
        ? `The event log is intact: ${chain.count} entries chain correctly, ${verified} signed checkpoint(s) verify` +
          (keys.periods.length > 1
            ? ` across ${keys.periods.length - 1} audit-key rollover(s) (${keys.periods
                .slice(1)
                .map(
                  (p) =>
                    `entry ${p.fromSeq}, ${p.via === "ceremony" ? "officer's ceremony and root" : "signed by the previous key"}`,
                )
                .join("; ")})`
            : "") +
          (token.checked && token.public
            ? `, and the token's head read without the user PIN (${token.public.where}: entry ${token.public.seq}, written ${token.public.ts}` +
              `${token.public.ageSeconds === null ? "" : `, ${formatAge(token.public.ageSeconds)} ago`}${token.public.tsSigned ? "" : " by the file's own account"}) matches` +
              (token.public.entriesAfter > 0
                ? `; the ${token.public.entriesAfter} entr${token.public.entriesAfter === 1 ? "y" : "ies"} after it came later (a cut-off tail there would show only with the user PIN, or at the station's next signed command).`
                : ".")
            : token.checked
              ? `, and the token's head ${token.headSeq === null ? "is not yet set" : `(entry ${token.headSeq}) matches`}.`
              : `; ${token.note}.`) +
          lossText
        : unverified(firstBad!)
          ? `The event log could not be fully verified: ${describe(firstBad!)}.` + lossText
          : firstBad!.kind === "public-head"
            ? `The token's log head read without the user PIN is not genuine: ${describe(firstBad!)}.` +
              lossText
            : `The event log has been tampered with: ${describe(firstBad!)}.` + lossText,
    };
    try {
      this.recordVerify(verdict, firstBad, losses.length);
    } catch (e) {
      // Reading needs no room: on a full or read-only home the verdict stands, unrecorded.
      if (!isLinesignError(e) || !["DB_FULL", "DB_READ_ONLY", "DB_LOCKED"].includes(e.code))
        throw e;
      verdict.recorded = false;
      verdict.message += ` (This check could not be recorded: ${e.message})`;
    }
    if (!ok) this.ctx.logger.error({ firstBad }, verdict.message);
    return verdict;
  }

  /**
   * Without the user PIN: compares the database with the head as the token
   * shows it to anyone (its public copy) or the head file, signed by the
   * audit key the log itself trusts (the newest key of its chain, never the
   * token's say-so), and says where it was read and how recent it is.
   */
  private async comparePublic(
    token: AuditVerdict["token"],
    periods: KeyPeriod[],
    firstBad: AuditProblem | null,
    opts: VerifyOptions,
    head: { seq: number; hash: string } | null,
  ): Promise<AuditProblem | null> {
    const inForce = periods.at(-1);
    const trusted = inForce ? new Uint8Array(Buffer.from(inForce.spki, "base64")) : null;
    const where = this.checkpointer.headStore.publicWhere;
    const dbSeq = head?.seq ?? 0;
    try {
      const r = await this.checkpointer.publicBinding(trusted);
      token.source =
        this.checkpointer.headStore.kind === "signed-head" ? "head-file" : "public-object";
      if (!r.head) {
        token.note = `the token's log head was not compared: ${where} is not there`;
        if (firstBad || opts.withoutToken) return firstBad;
        // Absent, it proves nothing lost (anyone holding the token may remove a public object).
        if (r.binding.state === "bound") {
          token.checked = true;
          return firstBad;
        }
        return {
          kind: "token",
          seq: dbSeq,
          why:
            `the log head could not be compared without the user PIN: ${where} is not there ` +
            '(removed, never written by this release, or a token that keeps no public objects: see "linesign token probe"), ' +
            "so a cut-off tail or an older copy of the database would not show. Verify with the user PIN (a security officer), or at the station after its next signed command",
        };
      }
      token.checked = true;
      token.headSeq = r.head.seq;
      const at = Date.parse(r.head.ts);
      token.public = {
        where,
        seq: r.head.seq,
        ts: r.head.ts,
        tsSigned: r.head.tsSigned,
        ageSeconds: Number.isNaN(at)
          ? null
          : Math.max(0, Math.round((this.ctx.clock.now().getTime() - at) / 1000)),
        entriesAfter: Math.max(0, dbSeq - r.head.seq),
      };
      if (firstBad || r.binding.state === "bound") return firstBad;
      const b = r.binding;
      if (b.state === "stale") {
        // An old copy proves nothing either way (anyone holding the token may put one back, and
        // a copy that could not be written stays old): the log could not be fully checked.
        token.checked = false;
        return {
          kind: "token",
          seq: b.tokenSeq,
          why: `the token's head read without the user PIN (${where}, entry ${b.tokenSeq}, written ${r.head.ts}) is older than the database's signed checkpoint at entry ${b.checkpointSeq}: an older copy was put back, or the station could not write it; a cut-off tail or an older database would not show. Verify with the user PIN (a security officer)`,
        };
      }
      return {
        kind: "truncated",
        seq: b.state === "gap" ? b.from : (b.tokenSeq ?? b.dbSeq),
        why: `${describeBinding(b)} (read without the user PIN from ${where}, written ${r.head.ts})`,
        binding: b,
      };
    } catch (e) {
      if (!isLinesignError(e)) throw e;
      token.note = `the token's log head was not compared without the user PIN (${e.message})`;
      if (firstBad) return firstBad;
      if (e.code === "AUDIT_CHAIN_BROKEN")
        return { kind: "public-head", seq: dbSeq, why: e.message.replace(/\.$/, "") };
      if (opts.withoutToken) return null;
      return {
        kind: "token",
        seq: dbSeq,
        why: `the log head could not be compared without the user PIN (${e.message.replace(/\.$/, "")}), so a cut-off tail or an older copy of the database would not show`,
      };
    }
  }

  private recordVerify(verdict: AuditVerdict, firstBad: AuditProblem | null, losses: number): void {
    const ok = verdict.ok;
    this.ctx.store.appendEvent({
      actor: this.ctx.actor,
      action: "audit.verify",
      outcome: ok ? "ok" : "refused",
      code: ok ? null : unverified(firstBad!) ? "AUDIT_INCOMPLETE" : "AUDIT_CHAIN_BROKEN",
      message: verdict.message,
      details: {
        checked: verdict.checked,
        firstBad,
        checkpoints: verdict.checkpoints,
        tokenChecked: verdict.token.checked,
        acceptedLosses: losses,
      },
    });
  }

  /**
   * Walks the whole log and notes the hash of each entry whose sequence is a
   * key of `atCheckpoint`. A long log is split at the head as it stood when
   * the walk began into ranges walked at once on threads of their own, joined
   * here into the verdict one walk gives; entries appended meanwhile are then
   * walked here from the joined head. A short log, or one the threads cannot
   * walk (no file, an open transaction, threads that do not start), is walked
   * here from the start.
   */
  private async walkChain(
    atCheckpoint: Map<number, string>,
    opts: VerifyOptions,
  ): Promise<ChainVerdict & { threads: number }> {
    const threads = Math.max(1, Math.floor(opts.threads ?? 2));
    const span = threads > 1 ? (this.rangeWalker?.span() ?? null) : null;
    if (span && span.last - span.first + 1 >= (opts.parallelFrom ?? PARALLEL_FROM)) {
      const walks = await this.rangeWalker!.walk(splitRanges(span, threads), [
        ...atCheckpoint.keys(),
      ]);
      if (walks) {
        const joined = joinRangeWalks(walks);
        for (const [seq, hash] of joined.atCheckpoints) atCheckpoint.set(seq, hash);
        if (!joined.verdict.ok) return { ...joined.verdict, threads };
        const head = joined.verdict.head;
        const walker = new ChainWalker(
          this.ctx.chainHash,
          head ? { ...head, count: joined.verdict.count } : null,
        );
        return { ...(await this.walkPages(walker, span.last, atCheckpoint)), threads };
      }
    }
    return {
      ...(await this.walkPages(new ChainWalker(this.ctx.chainHash), 0, atCheckpoint)),
      threads: 1,
    };
  }

  /**
   * Walks the log after position `after` to its end in pages, holding one page
   * at a time and letting the event loop run between pages (a line in the
   * same process keeps going).
   */
  private async walkPages(
    walker: ChainWalker,
    after: number,
    atCheckpoint: Map<number, string>,
  ): Promise<ChainVerdict> {
    const store = this.ctx.store;
    const full = (position: number) => store.storedEvents(position - 1, 1)[0] ?? null;
    for (;;) {
      // Entries stored as this station stores them come encoded (one string each); others in columns.
      const columns = walker.wantsColumns;
      const page = columns
        ? store.storedEvents(after, WALK_PAGE)
        : store.encodedEvents(after, WALK_PAGE);
      for (const e of page) {
        const ok = columns
          ? walker.stored(e as StoredEvent)
          : walker.encoded(e as EncodedEvent, full);
        if (!ok) return walker.verdict();
        if (atCheckpoint.has(e[0])) atCheckpoint.set(e[0], walker.head!.hash);
      }
      if (page.length < WALK_PAGE) return walker.verdict();
      // Both forms end with the store's position.
      after = page[page.length - 1]!.at(-1) as number;
      await new Promise((r) => setImmediate(r));
    }
  }
}

/** Positions `first` to `last` in `n` consecutive ranges of (nearly) equal length. */
export function splitRanges(span: { first: number; last: number }, n: number): LogRange[] {
  const start = span.first - 1;
  const length = span.last - start;
  const ranges: LogRange[] = [];
  for (let i = 0; i < n; i++)
    ranges.push({
      after: start + Math.floor((length * i) / n),
      upTo: start + Math.floor((length * (i + 1)) / n),
    });
  return ranges;
}
