/**
 * StationStore over better-sqlite3. Appending to the event log reads the head
 * and inserts the chained entry inside one transaction, so the chain cannot
 * fork even with several writers (SQLite serialises them).
 */
import {
  chainEvent,
  type EventInput,
  type EventRecord,
  type Outcome,
} from "../../domain/event-log.js";
import { LinesignError } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";
import type {
  CaKind,
  CaRecord,
  CaStatus,
  Clock,
  PinGuardState,
  StationStore,
} from "../../domain/ports.js";
import { openDatabase, type Db } from "./database.js";

interface EventRow {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  subject: string | null;
  outcome: Outcome;
  code: string | null;
  message: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

interface CaRow {
  label: string;
  kind: CaKind;
  status: CaStatus;
  key_type: KeyType;
  key_uri: string;
  development: number;
  subject: string;
  cert_der: Buffer | null;
  chain_der: string;
  parent_label: string | null;
  not_before: string | null;
  not_after: string | null;
  fingerprint: string | null;
  created_at: string;
}

const toEvent = (r: EventRow): EventRecord => ({
  seq: r.seq,
  ts: r.ts,
  actor: r.actor,
  action: r.action,
  subject: r.subject,
  outcome: r.outcome,
  code: r.code,
  message: r.message,
  details: JSON.parse(r.details) as Record<string, unknown>,
  prevHash: r.prev_hash,
  hash: r.hash,
});

const toCa = (r: CaRow): CaRecord => ({
  label: r.label,
  kind: r.kind,
  status: r.status,
  keyType: r.key_type,
  keyUri: r.key_uri,
  development: r.development === 1,
  subject: r.subject,
  certDer: r.cert_der ? new Uint8Array(r.cert_der) : null,
  chainDer: (JSON.parse(r.chain_der) as string[]).map(
    (b) => new Uint8Array(Buffer.from(b, "base64")),
  ),
  parentLabel: r.parent_label,
  notBefore: r.not_before,
  notAfter: r.not_after,
  fingerprint: r.fingerprint,
  createdAt: r.created_at,
});

const CA_COLUMNS: Record<keyof Omit<CaRecord, "label">, string> = {
  kind: "kind",
  status: "status",
  keyType: "key_type",
  keyUri: "key_uri",
  development: "development",
  subject: "subject",
  certDer: "cert_der",
  chainDer: "chain_der",
  parentLabel: "parent_label",
  notBefore: "not_before",
  notAfter: "not_after",
  fingerprint: "fingerprint",
  createdAt: "created_at",
};

function caValue(key: keyof CaRecord, value: unknown): unknown {
  if (key === "development") return value ? 1 : 0;
  if (key === "certDer") return value ? Buffer.from(value as Uint8Array) : null;
  if (key === "chainDer")
    return JSON.stringify((value as Uint8Array[]).map((d) => Buffer.from(d).toString("base64")));
  return value;
}

export class SqliteStationStore implements StationStore {
  private readonly insertEvent;
  private readonly headStmt;

  private constructor(
    readonly db: Db,
    private readonly clock: Clock,
  ) {
    this.insertEvent = db.prepare(
      `INSERT INTO events (seq, ts, actor, action, subject, outcome, code, message, details, prev_hash, hash)
       VALUES (@seq, @ts, @actor, @action, @subject, @outcome, @code, @message, @details, @prevHash, @hash)`,
    );
    this.headStmt = db.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1");
  }

  /** Opens the store at `path`. See openDatabase for what it throws. */
  static open(path: string, options: { create: boolean; clock?: Clock }): SqliteStationStore {
    return new SqliteStationStore(
      openDatabase(path, { create: options.create }),
      options.clock ?? { now: () => new Date() },
    );
  }

  appendEvent(input: EventInput): EventRecord {
    return this.transaction(() => {
      const entry = chainEvent(input, this.head(), this.clock.now().toISOString());
      this.insertEvent.run({ ...entry, details: JSON.stringify(entry.details) });
      return entry;
    });
  }

  *events(): Iterable<EventRecord> {
    for (const row of this.db
      .prepare("SELECT * FROM events ORDER BY rowid")
      .iterate() as Iterable<EventRow>) {
      yield toEvent(row);
    }
  }

  head(): { seq: number; hash: string } | null {
    return (this.headStmt.get() as { seq: number; hash: string } | undefined) ?? null;
  }

  getCa(label: string): CaRecord | null {
    const row = this.db.prepare("SELECT * FROM cas WHERE label = ?").get(label) as
      CaRow | undefined;
    return row ? toCa(row) : null;
  }

  listCas(): CaRecord[] {
    return (this.db.prepare("SELECT * FROM cas ORDER BY created_at, label").all() as CaRow[]).map(
      toCa,
    );
  }

  insertCa(ca: CaRecord): void {
    const keys = ["label", ...Object.keys(CA_COLUMNS)] as (keyof CaRecord)[];
    const cols = keys.map((k) =>
      k === "label" ? "label" : CA_COLUMNS[k as keyof typeof CA_COLUMNS],
    );
    const params = Object.fromEntries(keys.map((k) => [k, caValue(k, ca[k])]));
    this.db
      .prepare(
        `INSERT INTO cas (${cols.join(", ")}) VALUES (${keys.map((k) => "@" + k).join(", ")})`,
      )
      .run(params);
  }

  updateCa(label: string, patch: Partial<Omit<CaRecord, "label">>): void {
    const keys = Object.keys(patch) as (keyof typeof CA_COLUMNS)[];
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${CA_COLUMNS[k]} = @${k}`).join(", ");
    const params = Object.fromEntries(keys.map((k) => [k, caValue(k, patch[k])]));
    const info = this.db
      .prepare(`UPDATE cas SET ${sets} WHERE label = @label`)
      .run({ ...params, label });
    if (info.changes !== 1) throw new LinesignError("CA_UNKNOWN", `No CA is labelled "${label}".`);
  }

  pinGuard(token: string): PinGuardState {
    const row = this.db
      .prepare("SELECT failures, locked_at FROM pin_guard WHERE token = ?")
      .get(token) as { failures: number; locked_at: string | null } | undefined;
    return { failures: row?.failures ?? 0, lockedAt: row?.locked_at ?? null };
  }

  setPinGuard(token: string, state: PinGuardState): void {
    this.db
      .prepare(
        `INSERT INTO pin_guard (token, failures, locked_at) VALUES (?, ?, ?)
         ON CONFLICT (token) DO UPDATE SET failures = excluded.failures, locked_at = excluded.locked_at`,
      )
      .run(token, state.failures, state.lockedAt);
  }

  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
