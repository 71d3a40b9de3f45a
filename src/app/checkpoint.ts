/**
 * The log head on the token binds the database. The hash chain shows an
 * edited, deleted or reordered entry, but not a tail cut off, a lost WAL or
 * an older copy of the whole database put back. So the station keeps the
 * head (station, sequence, hash) in a private data object on the token and
 * moves it after every durable commit of the issuance path, before any
 * certificate of that commit leaves the station: a database that ends before
 * the token's head, or holds another entry at its sequence number, has lost
 * entries, and the gap is named.
 *
 * The head moves only forward along the same chain. When the database and
 * the token disagree, nothing that signs or checkpoints runs until an
 * officer's recorded act (`audit accept-loss`) accepts the loss; the act
 * stays in the log, and every later verification names the gap.
 *
 * Signed checkpoints (every N entries and at shutdown) add the audit key's
 * signature over a head, so an export can be verified away from the token.
 */
import { LinesignError } from "../domain/errors.js";
import type { EventRecord } from "../domain/event-log.js";
import { formatPkcs11Uri } from "../domain/pkcs11-uri.js";
import type { KeyType } from "../domain/keys.js";
import type { KeyStore, Signer } from "../domain/ports.js";
import {
  ROLLOVER_ACTION,
  rolloverMessage,
  type RolloverDetails,
  type RolloverEndorsement,
} from "./audit-keys.js";
import type { AppContext } from "./context.js";
import {
  DataObjectHeadStore,
  type HeadStore,
  type PublicHead,
  type TokenHead,
} from "./head-store.js";

export { HEAD_OBJECT_LABEL, type TokenHead } from "./head-store.js";

/** The action under which an officer accepts a loss the token revealed. */
export const LOSS_ACCEPT_ACTION = "audit.loss-accept";

/** How the database stands against the token's head. */
export type HeadBinding =
  /** The token's head is an entry of this log (the log may have grown past it), or neither has one. */
  | { state: "bound"; tokenSeq: number | null }
  /** The log ends before the token's head: entries `from` to `to` are missing. */
  | { state: "gap"; tokenSeq: number; dbSeq: number; from: number; to: number }
  /** The log holds another entry at the token's head: the database was replaced or rewritten. */
  | { state: "fork"; tokenSeq: number; dbSeq: number; seq: number }
  /** The token's head names another station. */
  | { state: "foreign"; tokenSeq: number; dbSeq: number; station: string }
  /** The log has issued certificates but the token holds no head: it was removed, or this is not the station's token. */
  | { state: "missing"; tokenSeq: null; dbSeq: number }
  /** A head kept outside the token is older than the database's own signed checkpoint: an older head file was put back. */
  | { state: "stale"; tokenSeq: number; dbSeq: number; checkpointSeq: number };

/** A loss an officer accepted, as recorded. */
export interface AcceptedLoss {
  /** The entry that records the acceptance. */
  seq: number;
  ts: string;
  actor: string;
  kind: HeadBinding["state"];
  /** Plain words for the gap. */
  what: string;
  reason: string;
}

/** Plain words for a binding that is not `bound`. */
export function describeBinding(b: Exclude<HeadBinding, { state: "bound" }>): string {
  switch (b.state) {
    case "gap":
      return b.from === b.to
        ? `entry ${b.from} is missing: the token's head is entry ${b.tokenSeq}, the database ends at entry ${b.dbSeq} (its tail was cut off, its WAL file lost, or an older copy of the database put back)`
        : `entries ${b.from} to ${b.to} are missing: the token's head is entry ${b.tokenSeq}, the database ends at entry ${b.dbSeq} (its tail was cut off, its WAL file lost, or an older copy of the database put back)`;
    case "fork":
      return `the log forks at entry ${b.seq}: the database holds another entry there than the one the token recorded (the database was replaced or rewritten)`;
    case "foreign":
      return `the token's log head belongs to station "${b.station}", not to this one`;
    case "stale":
      return `the stored log head (entry ${b.tokenSeq}) is older than the database's signed checkpoint at entry ${b.checkpointSeq}: an older head file was put back, so a cut-off tail or an older database would not show`;
    case "missing":
      return `the token holds no log head although the database records issued certificates (entries 1 to ${b.dbSeq}): the head was removed, or this is not the station's token`;
    default: {
      const never: never = b;
      return String(never);
    }
  }
}

/** The exact bytes the audit key signs for a checkpoint. */
export function checkpointMessage(station: string, seq: number, hash: string): Uint8Array {
  return new TextEncoder().encode(
    `linesign-checkpoint/1\nstation=${station}\nseq=${seq}\nhash=${hash}\n`,
  );
}

export class Checkpointer {
  private lastSeq: number | undefined;
  private auditSigner: Promise<Signer> | null = null;
  /** What this process last knew the token's head to be (written or read). */
  private known: { seq: number; hash: string } | null | undefined;
  /** Set once the binding was checked in this process; cleared on a mismatch. */
  private bound = false;
  /** When set, this process moves the token's head no further than this entry (see holdAt). */
  private held: number | undefined;
  /** Head moves and checkpoints run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The audit key that signs the public copy of the head (found, never made). */
  private publicAuditSigner: Signer | null = null;
  /** Brings a public copy the issuance path left behind up to the head, once its interval has passed. */
  private publishTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  /**
   * @param every checkpoint when this many entries were added since the last one.
   * @param keyLabel label of the audit key in the station's token (made on first use).
   * @param keyType the audit key's type when it is made (a token without EC needs an RSA one).
   */
  /** Where the head is kept (a private data object on the token unless set with useHeadStore). */
  private heads: HeadStore;
  /** The token's keys without the head's binding (a rollover signs before the new token is bound). */
  private rawKeys: () => KeyStore;

  constructor(
    private readonly ctx: AppContext,
    private readonly every: number,
    private readonly keyLabel: string,
    private readonly keyType: KeyType = "ec-p256",
  ) {
    this.heads = new DataObjectHeadStore(ctx);
    this.rawKeys = () => ctx.keys();
  }

  /** The token's keys as they are, for the rollover's signatures (compose passes them). */
  useRawKeys(keys: () => KeyStore): void {
    this.rawKeys = keys;
  }

  /**
   * The audit key in force by the log (base64 DER SPKI): the newest
   * rollover's key, else the key of the first checkpoint; null before either.
   */
  keyInForce(): string | null {
    const last = this.ctx.store.queryEvents({
      action: ROLLOVER_ACTION,
      outcome: "ok",
      limit: 1,
    })[0];
    const fromRollover = (last?.details as { newSpki?: unknown } | undefined)?.newSpki;
    if (typeof fromRollover === "string") return fromRollover;
    const first = this.ctx.store.checkpoints()[0];
    return first ? Buffer.from(first.spki).toString("base64") : null;
  }

  /**
   * Introduces the token's audit key (made now when the token has none) as
   * the key in force: one `audit.key.rollover` entry carrying its public key,
   * the head it follows, its own signature and `endorse`'s (the old key's, or
   * the ceremony's station certificate signed by the root). `prepare` runs
   * first with the new key (the ceremony issues the certificate there). The
   * token's head is then written at the rollover (a new token has none), and
   * the station signs again.
   * @throws LinesignError USAGE (no key in force yet, or the token holds it still), HSM_*
   */
  rollover<T>(
    prepare: (newSpki: Uint8Array, previousSpki: Uint8Array) => Promise<T>,
    endorse: (message: Uint8Array, prepared: T) => Promise<RolloverEndorsement>,
    reason: string,
  ): Promise<{ entry: EventRecord; binding: HeadBinding; created: boolean }> {
    return this.serial(async () => {
      const inForce = this.keyInForce();
      if (!inForce)
        throw new LinesignError(
          "USAGE",
          "No audit key has signed a checkpoint on this station yet: there is no key to roll over from.",
        );
      const keys = this.rawKeys();
      let key = await keys.findKey(this.keyUri());
      if (key && Buffer.from(key.spki).toString("base64") === inForce)
        throw new LinesignError(
          "USAGE",
          `Token "${this.ctx.tokenLabel}" still holds the audit key in force: there is nothing to roll over.`,
        );
      let created = false;
      if (!key) {
        key = await keys.generateKeyPair(this.ctx.tokenLabel, this.keyLabel, this.keyType);
        created = true;
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "audit.key-create",
          subject: this.keyLabel,
          outcome: "ok",
          details: { keyUri: key.uri, keyType: this.keyType, rollover: true },
        });
      }
      const previous = new Uint8Array(Buffer.from(inForce, "base64"));
      const prepared = await prepare(key.spki, previous);
      const signer = await keys.signer(key.uri);
      const binding = this.compare(await this.tokenHead().catch(() => null));
      for (let attempt = 0; ; attempt++) {
        const after = this.ctx.store.head()!;
        const message = rolloverMessage(this.ctx.stationId, after, previous, key.spki);
        const newKeySignature = await signer.sign(message);
        const endorsement = await endorse(message, prepared);
        const details: RolloverDetails & Record<string, unknown> = {
          previousSpki: inForce,
          newSpki: Buffer.from(key.spki).toString("base64"),
          after: { seq: after.seq, hash: after.hash },
          newKeySignature: Buffer.from(newKeySignature).toString("base64"),
          endorsement,
          keyUri: key.uri,
          reason,
          binding: { ...binding },
        };
        // Made for its place in the log: another writer in between means signing again.
        const entry = this.ctx.store.transaction(() =>
          this.ctx.store.head()?.seq === after.seq
            ? this.ctx.store.appendEvent({
                actor: this.ctx.actor,
                action: ROLLOVER_ACTION,
                subject: this.keyLabel,
                outcome: "ok",
                message: `A new audit key was introduced (${endorsement.by === "ceremony" ? `by ${endorsement.officer}'s ceremony, the station certificate signed by root "${endorsement.root}"` : "signed by the previous audit key"}): ${reason}`,
                details,
              })
            : null,
        );
        if (!entry) {
          if (attempt < 5) continue;
          throw new LinesignError(
            "DB_LOCKED",
            "The log kept moving while the rollover was signed; stop the line and the kiosk's service, then run it again.",
          );
        }
        // The new token's head starts at the rollover; the station signs again.
        this.known = null;
        this.auditSigner = null;
        this.publicAuditSigner = null;
        await this.writeHead(entry, true, true);
        this.bound = true;
        this.ctx.health.clear("log-head");
        return { entry, binding, created };
      }
    });
  }
  /** Keeps the head in `store` from now on (chosen by audit.headStore). */
  useHeadStore(store: HeadStore): void {
    this.heads = store;
    this.bound = false;
    this.known = undefined;
  }

  /**
   * Moves the head to `store` (another place chosen for it): the database must
   * agree with the current store first; the new one gets the database's head.
   * @throws LinesignError AUDIT_HEAD_MISMATCH, AUDIT_HEAD_WRITE_FAILED
   */
  moveHeadTo(store: HeadStore): Promise<void> {
    return this.serial(async () => {
      await this.ensureBound();
      const previous = this.heads;
      this.useHeadStore(store);
      const head = this.ctx.store.head();
      try {
        if (head) await this.writeHead(head, true, true);
      } catch (e) {
        this.useHeadStore(previous);
        throw e;
      }
    });
  }

  /** The store that keeps the head. */
  get headStore(): HeadStore {
    return this.heads;
  }

  /** Runs `work` after everything queued before it; a failure does not block what follows. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * This process moves the token's head no further than entry `seq` from now
   * on: a backup's command ends (its session's close is recorded) without
   * taking the token past the head the backup covers, so restoring the
   * newest backup with this token finds it whole. The next command moves it on.
   */
  holdAt(seq: number): void {
    this.held = seq;
  }

  private beyondHold(seq: number): boolean {
    return this.held !== undefined && seq > this.held;
  }

  /** Checkpoints when `every` entries have been added since the last checkpoint (one checkpoint per mark). */
  maybe(): Promise<void> {
    const head = this.ctx.store.head();
    if (!head || head.seq - this.last() < this.every) return Promise.resolve();
    return this.serial(async () => {
      // Callers that crossed the same mark at once share the first one's checkpoint.
      const now = this.ctx.store.head();
      if (now && now.seq - this.last() >= this.every) await this.checkpointNow();
    });
  }

  /** Signs the current head and writes it to the token, unless it is already checkpointed. */
  checkpoint(): Promise<{ seq: number; hash: string } | null> {
    return this.serial(() => this.checkpointNow());
  }

  /**
   * Moves the token's head to the database's head, after a commit and before
   * anything it committed leaves the station.
   * @throws LinesignError AUDIT_HEAD_MISMATCH when the database and the token disagree;
   *   AUDIT_HEAD_WRITE_FAILED (or the token's own error) when the head cannot be written.
   */
  advance(): Promise<void> {
    const head = this.ctx.store.head();
    if (!head || (this.known && this.known.seq >= head.seq)) return Promise.resolve();
    return this.serial(async () => {
      const now = this.ctx.store.head();
      if (!now || (this.known && this.known.seq >= now.seq) || this.beyondHold(now.seq)) return;
      await this.ensureBound();
      await this.writeHead(now);
      this.schedulePublish();
    });
  }

  /**
   * The public copy follows the issuance path's head at most once per its
   * interval; when a burst ends between two, it is brought up once the
   * interval has passed (and at the next checkpoint or command's end anyway).
   */
  private schedulePublish(): void {
    if (this.publishTimer || this.stopped) return;
    const due = this.heads.publicDueInMs();
    if (due === null) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = null;
      void this.serial(async () => {
        const k = this.known;
        if (!k || this.stopped) return;
        await this.heads.publish({
          station: this.ctx.stationId,
          seq: k.seq,
          hash: k.hash,
          ts: this.ctx.clock.now().toISOString(),
        });
      });
    }, due);
    this.publishTimer.unref?.();
  }

  /** Stops the trailing public copy (the station closes; its closing checkpoint published). */
  stop(): void {
    this.stopped = true;
    if (this.publishTimer) clearTimeout(this.publishTimer);
    this.publishTimer = null;
  }

  /**
   * Compares the database with the token's head (reading the token). With
   * `upTo`, the database as it stood at that entry (a restore: the backup's
   * head, before the restored station's own entries).
   * @throws the token's errors (HSM_*), AUDIT_CHAIN_BROKEN when the head object is unreadable
   */
  async binding(upTo?: number): Promise<HeadBinding> {
    return this.compare(await this.tokenHead(), upTo);
  }

  /**
   * Compares the database with the head as a reader without the user PIN
   * sees it (the token's public copy, or the head file), its signature checked
   * against `trusted`, the audit key the log trusts. Such a copy can be put
   * back alone, so one older than the database's signed checkpoint is `stale`.
   * @throws LinesignError AUDIT_CHAIN_BROKEN (not genuine), AUDIT_INCOMPLETE, HSM_*
   */
  async publicBinding(
    trusted: Uint8Array | null,
  ): Promise<{ binding: HeadBinding; head: PublicHead | null; where: string }> {
    const head = await this.heads.readPublic(trusted);
    return {
      binding: this.compare(head, undefined, true),
      head,
      where: this.heads.publicWhere,
    };
  }

  private compare(token: TokenHead | null, upTo?: number, alone = false): HeadBinding {
    const db = this.ctx.store.head();
    const dbSeq = upTo === undefined ? (db?.seq ?? 0) : Math.min(upTo, db?.seq ?? 0);
    if (!token) {
      if (db && this.ctx.store.checkpoints().length + this.ctx.store.issuanceCount() > 0)
        return { state: "missing", tokenSeq: null, dbSeq };
      return { state: "bound", tokenSeq: null };
    }
    if (token.station !== this.ctx.stationId)
      return { state: "foreign", tokenSeq: token.seq, dbSeq, station: token.station };
    // A head outside the token can be put back alone: it never lags the signed checkpoints
    // (checkpointNow moves it before it records the checkpoint).
    const lastCheckpoint = this.ctx.store.checkpoints().at(-1)?.seq ?? 0;
    if (
      (alone || this.heads.kind === "signed-head") &&
      token.seq < lastCheckpoint &&
      upTo === undefined
    )
      return { state: "stale", tokenSeq: token.seq, dbSeq, checkpointSeq: lastCheckpoint };
    if (dbSeq < token.seq)
      return { state: "gap", tokenSeq: token.seq, dbSeq, from: dbSeq + 1, to: token.seq };
    const entry = this.ctx.store.eventAt(token.seq);
    if (!entry || entry.hash !== token.hash)
      return { state: "fork", tokenSeq: token.seq, dbSeq, seq: token.seq };
    return { state: "bound", tokenSeq: token.seq };
  }

  /**
   * Refuses, naming the gap, when the database and the token disagree; checked
   * once per process before the first signature, and again by every head move.
   * @throws LinesignError AUDIT_HEAD_MISMATCH
   */
  async ensureBound(): Promise<void> {
    if (this.bound) return;
    const token = await this.tokenHead();
    const b = this.compare(token);
    if (b.state !== "bound") throw this.mismatch(b);
    this.known = token ? { seq: token.seq, hash: token.hash } : null;
    this.bound = true;
  }

  /**
   * An officer's recorded act: accepts the loss the token revealed, records
   * it with the reason, and binds the token to this log from here on. The
   * entry stays in the log, so every later verification names the gap.
   * @throws LinesignError USAGE when there is no loss to accept
   */
  acceptLoss(reason: string): Promise<AcceptedLoss> {
    return this.serial(async () => {
      const b = await this.binding();
      if (b.state === "bound")
        throw new LinesignError(
          "USAGE",
          "The database and the token's log head agree: there is no loss to accept.",
        );
      const what = describeBinding(b);
      const entry = this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: LOSS_ACCEPT_ACTION,
        subject: this.ctx.tokenLabel,
        outcome: "ok",
        message: `Loss accepted: ${what}.`,
        details: { ...b, what, reason },
      });
      this.known = null; // the head moves back or across: the one case it may
      await this.writeHead(entry, true, true);
      this.bound = true;
      this.ctx.health.clear("log-head");
      return {
        seq: entry.seq,
        ts: entry.ts,
        actor: entry.actor,
        kind: b.state,
        what,
        reason,
      };
    });
  }

  /** The losses officers accepted, oldest first. */
  acceptedLosses(): AcceptedLoss[] {
    return this.ctx.store.queryEvents({ action: LOSS_ACCEPT_ACTION }).map(toLoss);
  }

  /** The head stored in the token (or the store that stands in for it), or null when none was ever written. */
  tokenHead(): Promise<TokenHead | null> {
    return this.heads.read();
  }

  /** The audit key's public half (DER SPKI) as the token holds it, or null when none exists yet. */
  async tokenAuditKeySpki(): Promise<Uint8Array | null> {
    const key = await this.ctx.keys().findKey(this.keyUri());
    return key?.spki ?? null;
  }

  /**
   * The audit key that signs the public copy of the head: the token's own
   * audit key, found and never made, and only when it is the key the log
   * trusts (any, before the first checkpoint names one); null otherwise. Not
   * bound to the log: a loss accepted and a rollover publish while unbound.
   */
  async publicSigner(): Promise<Signer | null> {
    if (this.publicAuditSigner) return this.publicAuditSigner;
    const keys = this.rawKeys();
    const key = await keys.findKey(this.keyUri());
    if (!key) return null;
    const inForce = this.keyInForce();
    if (inForce && Buffer.from(key.spki).toString("base64") !== inForce) return null;
    this.publicAuditSigner = await keys.signer(key.uri);
    return this.publicAuditSigner;
  }

  /** The audit key in the token (made on first use). */
  signer(): Promise<Signer> {
    this.auditSigner ??= (async () => {
      const keys = this.ctx.keys();
      const existing = await keys.findKey(this.keyUri());
      const inForce = this.keyInForce();
      // A replaced token's new key is introduced by a rollover, never silently.
      if (inForce && (!existing || Buffer.from(existing.spki).toString("base64") !== inForce))
        throw new LinesignError(
          "AUDIT_KEY_ROLLOVER_REQUIRED",
          `Token "${this.ctx.tokenLabel}" ${existing ? "holds another audit key than" : "holds no audit key, not even"} the one that signs this station's checkpoints: the token was replaced. ` +
            'Nothing is checkpointed until a security officer introduces the new key ("linesign audit rollover --root ROOT --reason ...", with the offline root; or --old-token LABEL while the old token still works).',
          { details: { token: this.ctx.tokenLabel, keyLabel: this.keyLabel } },
        );
      if (existing) return keys.signer(existing.uri);
      const made = await keys.generateKeyPair(this.ctx.tokenLabel, this.keyLabel, this.keyType);
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "audit.key-create",
        subject: this.keyLabel,
        outcome: "ok",
        details: { keyUri: made.uri, keyType: this.keyType },
      });
      return keys.signer(made.uri);
    })();
    this.auditSigner.catch(() => (this.auditSigner = null));
    return this.auditSigner;
  }

  private async checkpointNow(): Promise<{ seq: number; hash: string } | null> {
    const head = this.ctx.store.head();
    if (!head || head.seq === this.last() || this.beyondHold(head.seq)) return null;
    await this.ensureBound();
    const signer = await this.signer();
    // The key's creation may have added an entry: sign the head as it is now.
    const signed = this.ctx.store.head()!;
    const signature = await signer.sign(
      checkpointMessage(this.ctx.stationId, signed.seq, signed.hash),
    );
    // The head first: the stored head is never behind a recorded checkpoint.
    // Its public copy too, so an auditor's copy is never older than a checkpoint.
    await this.writeHead(signed, false, true);
    this.ctx.store.insertCheckpoint({
      seq: signed.seq,
      hash: signed.hash,
      ts: this.ctx.clock.now().toISOString(),
      keyUri: signer.key.uri,
      spki: signer.key.spki,
      signature,
    });
    this.lastSeq = signed.seq;
    return signed;
  }

  /**
   * Writes `head` as the token's head, forward only: a token that already
   * holds this head or a later one (another process of the station moved it)
   * is left as it is.
   */
  private async writeHead(
    head: { seq: number; hash: string },
    force = false,
    publish = false,
  ): Promise<void> {
    const value: TokenHead = {
      station: this.ctx.stationId,
      seq: head.seq,
      hash: head.hash,
      ts: this.ctx.clock.now().toISOString(),
    };
    if (!force && this.known && this.known.seq >= head.seq) {
      // The private head is there already (moved by the issuance path); its public copy may lag.
      if (publish && this.known.seq === head.seq && this.known.hash === head.hash)
        await this.heads.publish(value);
      return;
    }
    // A head never names an entry that is not yet on disk (see StationStore.commitDeferred):
    // after a power cut the token would be ahead of the database.
    await this.ctx.store.durable();
    try {
      await this.heads.write(value, { publish });
    } catch (cause) {
      const code = cause instanceof LinesignError ? cause.code : null;
      throw new LinesignError(
        "AUDIT_HEAD_WRITE_FAILED",
        `The log head could not be written to ${this.heads.where}${code ? ` (${code}: ${(cause as Error).message})` : ` (${(cause as Error).message})`}. ` +
          "The records are kept; no certificate leaves until the head is written. Check that the token is present and has room, then resume.",
        { cause, details: { token: this.ctx.tokenLabel, seq: head.seq } },
      );
    }
    this.known = { seq: head.seq, hash: head.hash };
  }

  private mismatch(b: Exclude<HeadBinding, { state: "bound" }>): LinesignError {
    this.bound = false;
    return new LinesignError(
      "AUDIT_HEAD_MISMATCH",
      `The station database disagrees with the log head on token "${this.ctx.tokenLabel}": ${describeBinding(b)}. ` +
        'Nothing is signed until a security officer has examined it (restore the right database, or record the loss with "linesign audit accept-loss --reason ...").',
      { details: { ...b } },
    );
  }

  private keyUri(): string {
    return formatPkcs11Uri({ token: this.ctx.tokenLabel, object: this.keyLabel, id: "" });
  }

  private last(): number {
    if (this.lastSeq === undefined) this.lastSeq = this.ctx.store.checkpoints().at(-1)?.seq ?? 0;
    return this.lastSeq;
  }
}

function toLoss(e: EventRecord): AcceptedLoss {
  const d = e.details as { state?: HeadBinding["state"]; what?: string; reason?: string };
  return {
    seq: e.seq,
    ts: e.ts,
    actor: e.actor,
    kind: d.state ?? "gap",
    what: d.what ?? e.message ?? "",
    reason: d.reason ?? "",
  };
}
