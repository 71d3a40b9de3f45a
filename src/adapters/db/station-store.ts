/**
 * StationStore over better-sqlite3. Appending to the event log reads the head
 * and inserts the chained entry inside one transaction, so the chain cannot
 * fork even with several writers (SQLite serialises them).
 */
import {
  chainEvent,
  storedDetails,
  type ChainHash,
  type EventInput,
  type EncodedEvent,
  type EventRecord,
  type Outcome,
  type StoredEvent,
} from "../../domain/event-log.js";
import {
  accessSync,
  closeSync,
  fstatSync,
  constants,
  existsSync,
  fdatasync,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
} from "node:fs";
import Database from "better-sqlite3";
import { basename, dirname, join } from "node:path";
import { fileWriteFix } from "../fs/atomic.js";
import { LinesignError } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";
import type { WorkOrder } from "../../domain/work-order.js";
import type {
  FirstPassCount,
  LineSessionCount,
  LineShiftCounts,
  WorkOrderProgress,
} from "../../domain/shift.js";
import type {
  EventQuery,
  ReissueApproval,
  AuditQuery,
  CaKind,
  CaRecord,
  CaStatus,
  RecordedConfig,
  CheckpointRecord,
  Clock,
  IdentityStepRecord,
  IssuanceRecord,
  IssuanceState,
  PinGuardState,
  RejectionRecord,
  StationStore,
  UploadRecord,
  TargetRecord,
  CaRegistration,
  BundleRecord,
  BundleReceiptRecord,
  UploaderRecord,
  RevocationRecord,
  CrlRecord,
  UserRecord,
  CopyFileIdentity,
} from "../../domain/ports.js";

interface CrlRow {
  ca_label: string;
  number: number;
  this_update: string;
  next_update: string;
  entries: number;
  der: Buffer;
}

const toCrl = (r: CrlRow): CrlRecord => ({
  caLabel: r.ca_label,
  number: r.number,
  thisUpdate: r.this_update,
  nextUpdate: r.next_update,
  entries: r.entries,
  der: new Uint8Array(r.der),
});

interface UserRow {
  name: string;
  role: UserRecord["role"];
  hash: string;
  failures: number;
  locked_at: string | null;
  disabled: number;
  created_by: string;
  created_at: string;
}

const toUser = (r: UserRow): UserRecord => ({
  name: r.name,
  role: r.role,
  hash: r.hash,
  failures: r.failures,
  lockedAt: r.locked_at,
  disabled: r.disabled === 1,
  createdBy: r.created_by,
  createdAt: r.created_at,
});

interface WorkOrderRow {
  id: string;
  profile: string;
  quantity: number;
  pattern: string | null;
  devices: string | null;
  not_before: string | null;
  not_after: string | null;
  status: WorkOrder["status"];
  created_by: string;
  created_at: string;
}

const toWorkOrder = (r: WorkOrderRow): WorkOrder => ({
  id: r.id,
  profile: r.profile,
  quantity: r.quantity,
  pattern: r.pattern,
  devices: r.devices ? (JSON.parse(r.devices) as string[]) : null,
  notBefore: r.not_before,
  notAfter: r.not_after,
  status: r.status,
  createdBy: r.created_by,
  createdAt: r.created_at,
});

interface UploadRow {
  issuance_id: number;
  target: string;
  state: UploadRecord["state"];
  aws_certificate_id: string | null;
  aws_arn: string | null;
  attempts: number;
  last_error: string | null;
  updated_at: string;
}

const toUpload = (r: UploadRow): UploadRecord => ({
  issuanceId: r.issuance_id,
  target: r.target,
  state: r.state,
  awsCertificateId: r.aws_certificate_id,
  awsArn: r.aws_arn,
  attempts: r.attempts,
  lastError: r.last_error,
  updatedAt: r.updated_at,
});

interface CaRegistrationRow {
  ca_label: string;
  target: string;
  aws_certificate_id: string;
  aws_arn: string;
  mode: CaRegistration["mode"];
  remote_status: CaRegistration["remoteStatus"];
  updated_at: string;
}

const toCaRegistration = (r: CaRegistrationRow): CaRegistration => ({
  caLabel: r.ca_label,
  target: r.target,
  awsCertificateId: r.aws_certificate_id,
  awsArn: r.aws_arn,
  mode: r.mode,
  remoteStatus: r.remote_status,
  updatedAt: r.updated_at,
});
import { storageError } from "./storage-errors.js";
import { openDatabase, type Db } from "./database.js";
import { ENCODED_COLUMNS, STORED_COLUMNS } from "./event-pages.js";

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
  retired_at: string | null;
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
  retiredAt: r.retired_at,
});

interface IssuanceRow {
  id: number;
  serial: string;
  device_id: string;
  spki_sha256: string;
  key_type: string;
  profile: string;
  ca_label: string;
  cert_der: Buffer;
  fingerprint: string;
  not_before: string;
  not_after: string;
  validity_cut: number;
  state: IssuanceState;
  state_reason: string | null;
  supersedes: number | null;
  operator: string;
  station: string;
  origin: string;
  work_order: string | null;
  csr_sha256: string;
  device_model: string | null;
  device_firmware: string | null;
  created_at: string;
  updated_at: string;
}

const toIssuance = (r: IssuanceRow): IssuanceRecord => ({
  id: r.id,
  serial: r.serial,
  deviceId: r.device_id,
  spkiSha256: r.spki_sha256,
  keyType: r.key_type,
  profile: r.profile,
  caLabel: r.ca_label,
  certDer: new Uint8Array(r.cert_der),
  fingerprint: r.fingerprint,
  notBefore: r.not_before,
  notAfter: r.not_after,
  validityCut: r.validity_cut === 1,
  state: r.state,
  stateReason: r.state_reason,
  supersedes: r.supersedes,
  operator: r.operator,
  station: r.station,
  origin: r.origin,
  workOrder: r.work_order,
  csrSha256: r.csr_sha256,
  deviceModel: r.device_model,
  deviceFirmware: r.device_firmware,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

interface RejectionRow {
  id: number;
  reason: string;
  message: string;
  device_id: string | null;
  csr_sha256: string;
  profile: string | null;
  operator: string;
  station: string;
  origin: string;
  work_order: string | null;
  created_at: string;
}

const toRejection = (r: RejectionRow): RejectionRecord => ({
  id: r.id,
  reason: r.reason,
  message: r.message,
  deviceId: r.device_id,
  csrSha256: r.csr_sha256,
  profile: r.profile,
  operator: r.operator,
  station: r.station,
  origin: r.origin,
  workOrder: r.work_order,
  createdAt: r.created_at,
});

/** WHERE clause and parameters for an audit query over a table with created_at and device_id. */
/** Work orders a shift view lists at most (the open ones first by age, then those the line ran). */
const MAX_SHIFT_WORK_ORDERS = 50;

/**
 * The line's exchanges with a time in [@from, @to): the clock hour, the port
 * and work order from the entry's details, and how many exchanges it stands
 * for (a summary of repeated refusals counts its repeats; the first was
 * written on its own). An entry whose details are not JSON counts once, with no port.
 */
/** The line's session entries in a shift's window (@from, @to), as the shift's figures read them. */
export const LINE_SESSIONS = `WITH s AS (
  SELECT seq, subject, outcome, code, substr(ts, 1, 13) AS hour,
    CAST(coalesce(CASE WHEN json_valid(details) THEN json_extract(details, '$.port') END, '') AS TEXT)
      AS port,
    CASE WHEN json_valid(details) THEN json_extract(details, '$.workOrder') END AS work_order,
    CASE WHEN json_valid(details) AND json_type(details, '$.repeated') = 'integer'
              AND json_extract(details, '$.repeated') > 0
         THEN json_extract(details, '$.repeated') ELSE 1 END AS n
  FROM events WHERE action = 'line.session' AND ts >= @from AND ts < @to
)`;

function auditWhere(
  q: AuditQuery,
  extra: string[] = [],
): { where: string; params: Record<string, string> } {
  const clauses = [...extra];
  const params: Record<string, string> = {};
  if (q.since) {
    clauses.push("created_at >= @since");
    params.since = q.since;
  }
  if (q.until) {
    clauses.push("created_at < @until");
    params.until = q.until;
  }
  if (q.deviceId) {
    clauses.push("device_id = @deviceId");
    params.deviceId = q.deviceId;
  }
  return { where: clauses.length ? `WHERE ${clauses.join(" AND ")}` : "", params };
}

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
  retiredAt: "retired_at",
};

function caValue(key: keyof CaRecord, value: unknown): unknown {
  if (key === "development") return value ? 1 : 0;
  if (key === "certDer") return value ? Buffer.from(value as Uint8Array) : null;
  if (key === "chainDer")
    return JSON.stringify((value as Uint8Array[]).map((d) => Buffer.from(d).toString("base64")));
  return value ?? null;
}

/** Makes a file's written data durable (fdatasync's callback form). */
export type DiskSync = (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;

export class SqliteStationStore implements StationStore {
  private readonly insertEvent;
  private readonly headStmt;
  private readonly insertIssuanceStmt;
  private readonly insertRejectionStmt;
  private readonly bySpkiStmt;
  /**
   * Statements of the lookups every issuance and every state change makes, prepared once:
   * preparing one is SQLite compiling it, which each call used to do again on the event loop.
   */
  private readonly prepared = new Map<string, Database.Statement>();
  private readonly liveStmt;

  private readonly storedPageStmt;
  private readonly encodedPageStmt;
  /** The file the store was opened on (device and inode): a commit checks the path still names it. */
  private readonly identity: { dev: number; ino: number };
  /**
   * The write-ahead log, opened beside SQLite's own handle while the path
   * names the file SQLite opened: commitDeferred() makes its commits durable
   * with an fdatasync of it on libuv's thread pool (null: none, commits are FULL).
   */
  private wal: { fd: number; dev: number; ino: number } | null = null;
  /** Commits made without their fdatasync (commitDeferred). */
  private deferred = { made: 0 };
  /**
   * What the last successful fdatasync covered: this store's deferred commits,
   * and other connections' commits up to the data_version it saw (null: none yet).
   */
  private synced: { made: number; seen: number | null } = { made: 0, seen: null };
  /** The fdatasync in flight, and the commits it covers. */
  private syncing: { covers: { made: number; seen: number | null }; done: Promise<void> } | null =
    null;
  /** Set for good when the disk failed an fdatasync: what was committed may not be on it. */
  private syncFailure: LinesignError | null = null;

  private constructor(
    readonly db: Db,
    private readonly clock: Clock,
    private readonly hash: ChainHash,
    readonly path: string,
    private readonly diskSync: DiskSync,
  ) {
    this.identity = fileIdentity(path);
    if (!db.readonly) this.wal = openWal(path);
    this.insertEvent = db.prepare(
      `INSERT INTO events (seq, ts, actor, action, subject, outcome, code, message, details, prev_hash, hash)
       VALUES (@seq, @ts, @actor, @action, @subject, @outcome, @code, @message, @details, @prevHash, @hash)`,
    );
    this.headStmt = db.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1");
    this.storedPageStmt = db
      .prepare(`SELECT ${STORED_COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?`)
      .raw();
    this.encodedPageStmt = db
      .prepare(`SELECT ${ENCODED_COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?`)
      .raw();
    this.insertIssuanceStmt = db.prepare(
      `INSERT INTO issuances (serial, device_id, spki_sha256, key_type, profile, ca_label, cert_der, fingerprint, not_before,
         not_after, validity_cut, state, state_reason, supersedes, operator, station, origin, work_order, csr_sha256, device_model, device_firmware, created_at, updated_at)
       VALUES (@serial, @deviceId, @spkiSha256, @keyType, @profile, @caLabel, @certDer, @fingerprint, @notBefore,
         @notAfter, @validityCut, @state, @stateReason, @supersedes, @operator, @station, @origin, @workOrder, @csrSha256, @deviceModel, @deviceFirmware, @createdAt, @updatedAt)`,
    );
    this.insertRejectionStmt = db.prepare(
      `INSERT INTO rejections (reason, message, device_id, csr_sha256, profile, operator, station, origin, work_order, created_at)
       VALUES (@reason, @message, @deviceId, @csrSha256, @profile, @operator, @station, @origin, @workOrder, @createdAt)`,
    );
    this.bySpkiStmt = db.prepare("SELECT * FROM issuances WHERE spki_sha256 = ?");
    this.liveStmt = db.prepare(
      "SELECT * FROM issuances WHERE device_id = ? AND state IN ('ISSUED', 'DELIVERED', 'CONFIRMED')",
    );
  }

  /**
   * Opens the store at `path`; `hash` is the event log's hash step. The clock
   * defaults to the system's. See openDatabase for what it throws. Every
   * method maps SQLite's and the OS's failures to a LinesignError naming the
   * file, the cause and the fix (see storage-errors.ts).
   */
  static open(
    path: string,
    options: { create: boolean; hash: ChainHash; clock?: Clock; diskSync?: DiskSync },
  ): SqliteStationStore {
    const store = new SqliteStationStore(
      openDatabase(path, { create: options.create }),
      options.clock ?? { now: () => new Date() },
      options.hash,
      path,
      options.diskSync ?? fdatasync,
    );
    return mappingStorageErrors(store, path);
  }

  /**
   * How long a write waits for another process's lock, blocking: a one-shot
   * command may wait (5 s by default), the line and the service must not
   * (0: they wait without blocking, see GroupCommitter).
   */
  setLockWait(ms: number): void {
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
  }

  withLockWait<T>(ms: number, fn: () => T): T {
    const was = this.db.pragma("busy_timeout", { simple: true }) as number;
    if (was >= ms) return fn();
    this.setLockWait(ms);
    try {
      return fn();
    } finally {
      this.setLockWait(was);
    }
  }

  /**
   * Throws, as a commit would, when the database cannot take a write now: the
   * file deleted or replaced, its folder read-only, the disk full, another
   * process holding the write lock.
   */
  probe(): void {
    this.checkIdentity();
    const dir = dirname(this.path);
    accessSync(dir, constants.W_OK);
    const fs = statfsSync(dir);
    if (fs.bavail * fs.bsize < 256 * 1024) {
      throw Object.assign(new Error(`no space left on ${dir}`), { code: "ENOSPC" });
    }
    this.db.exec("BEGIN IMMEDIATE");
    this.db.exec("ROLLBACK");
  }

  async backupTo(path: string): Promise<{ seq: number; hash: string } | null> {
    try {
      // One step copies every page under one read lock: a consistent snapshot even while
      // another process commits (a step-wise copy restarts on each of its writes).
      await this.db.backup(path, { progress: () => 0x7fffffff });
      const copy = new Database(path, { readonly: true, fileMustExist: true });
      try {
        const row = copy.prepare("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").get() as
          { seq: number; hash: string } | undefined;
        return row ?? null;
      } finally {
        copy.close();
      }
    } catch (e) {
      throw storageError(e, path);
    }
  }

  async writeCopy(path: string): Promise<{
    head: { seq: number; hash: string; ts: string } | null;
    file: CopyFileIdentity;
  }> {
    const dir = dirname(path);
    const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
    try {
      // Step-wise (100 pages a step, the event loop free between steps): this connection's own
      // writes go into the copy as it is made; another process's commit starts it again.
      await this.db.backup(tmp);
      const copy = new Database(tmp, { fileMustExist: true });
      let head: { seq: number; hash: string; ts: string } | null;
      try {
        // One self-contained file: no -wal or -shm beside it, whoever opens it.
        copy.pragma("journal_mode = DELETE");
        head =
          (copy.prepare("SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1").get() as
            { seq: number; hash: string; ts: string } | undefined) ?? null;
      } finally {
        copy.close();
      }
      const fd = openSync(tmp, "r+");
      let file: CopyFileIdentity;
      try {
        fsyncSync(fd);
        // Taken from the file itself, not its path: a rename keeps it, another process's copy does not.
        const st = fstatSync(fd);
        file = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      const d = openSync(dir, "r");
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
      return { head, file };
    } catch (e) {
      for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`])
        rmSync(f, { force: true });
      throw copyError(e, path);
    }
  }

  /** @throws LinesignError DB_REPLACED when the path no longer names the file the store opened */
  private checkIdentity(): void {
    let now: { dev: number; ino: number } | null = null;
    try {
      now = fileIdentity(this.path);
    } catch {
      // deleted: now stays null
    }
    if (!now || now.dev !== this.identity.dev || now.ino !== this.identity.ino) {
      throw new LinesignError(
        "DB_REPLACED",
        `The station database ${this.path} was ${now ? "replaced by another file" : "deleted"} while the station was running. ` +
          'Nothing more is recorded or signed. Stop the station, put the station\'s own station.db back (from its backup if need be), start again and run "linesign audit verify".',
        { details: { path: this.path } },
      );
    }
  }

  appendEvent(input: EventInput): EventRecord {
    return this.transaction(() => {
      const entry = chainEvent(input, this.head(), this.clock.now().toISOString(), this.hash);
      this.insertEvent.run({ ...entry, details: storedDetails(entry.details) });
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

  storedEvents(after: number, limit: number): StoredEvent[] {
    return this.storedPageStmt.all(after, limit) as StoredEvent[];
  }

  encodedEvents(after: number, limit: number): EncodedEvent[] {
    return this.encodedPageStmt.all(after, limit) as EncodedEvent[];
  }

  queryEvents(q: EventQuery): EventRecord[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.action?.endsWith(".")) {
      where.push("substr(action, 1, ?) = ?");
      args.push(q.action.length, q.action);
    } else if (q.action) {
      where.push("action = ?");
      args.push(q.action);
    }
    const exact: [string, string | number | undefined][] = [
      ["actor = ?", q.actor],
      ["outcome = ?", q.outcome],
      ["ts >= ?", q.since],
      ["ts < ?", q.until],
      ["seq < ?", q.beforeSeq],
    ];
    for (const [clause, value] of exact) {
      if (value === undefined || value === "") continue;
      where.push(clause);
      args.push(value);
    }
    const sql =
      `SELECT * FROM events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC` +
      (q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : "");
    return (this.db.prepare(sql).all(...args) as EventRow[]).map(toEvent).reverse();
  }

  head(): { seq: number; hash: string } | null {
    return (this.headStmt.get() as { seq: number; hash: string } | undefined) ?? null;
  }

  getCa(label: string): CaRecord | null {
    const row = this.statement("SELECT * FROM cas WHERE label = ?").get(label) as CaRow | undefined;
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

  insertIssuance(rec: Omit<IssuanceRecord, "id">): number {
    const info = this.insertIssuanceStmt.run({
      ...rec,
      certDer: Buffer.from(rec.certDer),
      validityCut: rec.validityCut ? 1 : 0,
      deviceModel: rec.deviceModel ?? null,
      deviceFirmware: rec.deviceFirmware ?? null,
    });
    return Number(info.lastInsertRowid);
  }

  getIssuance(id: number): IssuanceRecord | null {
    const row = this.statement("SELECT * FROM issuances WHERE id = ?").get(id) as
      IssuanceRow | undefined;
    return row ? toIssuance(row) : null;
  }

  getIssuanceBySerial(serial: string): IssuanceRecord | null {
    const row = this.db
      .prepare("SELECT * FROM issuances WHERE serial = ?")
      .get(serial.toLowerCase()) as IssuanceRow | undefined;
    return row ? toIssuance(row) : null;
  }

  findIssuanceBySpki(spkiSha256: string): IssuanceRecord | null {
    const row = this.bySpkiStmt.get(spkiSha256) as IssuanceRow | undefined;
    return row ? toIssuance(row) : null;
  }

  liveIssuanceForDevice(deviceId: string): IssuanceRecord | null {
    const row = this.liveStmt.get(deviceId) as IssuanceRow | undefined;
    return row ? toIssuance(row) : null;
  }

  /** The statement for `sql`, prepared on first use and kept. */
  private statement(sql: string): Database.Statement {
    let st = this.prepared.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.prepared.set(sql, st);
    }
    return st;
  }

  setIssuanceState(id: number, state: IssuanceState, reason: string | null): void {
    const info = this.statement(
      "UPDATE issuances SET state = ?, state_reason = ?, updated_at = ? WHERE id = ?",
    ).run(state, reason, this.clock.now().toISOString(), id);
    if (info.changes !== 1)
      throw new LinesignError("ISSUANCE_UNKNOWN", `No issuance has id ${id}.`);
  }

  insertRejection(rec: Omit<RejectionRecord, "id">): number {
    return Number(this.insertRejectionStmt.run(rec).lastInsertRowid);
  }

  queryIssuances(q: AuditQuery): IssuanceRecord[] {
    const extra = q.status && q.status !== "REJECTED" ? ["state = @status"] : [];
    const { where, params } = auditWhere(q, extra);
    if (extra.length) params.status = q.status!;
    return (
      this.db
        .prepare(`SELECT * FROM issuances ${where} ORDER BY created_at, id`)
        .all(params) as IssuanceRow[]
    ).map(toIssuance);
  }

  queryRejections(q: AuditQuery): RejectionRecord[] {
    const { where, params } = auditWhere(q);
    return (
      this.db
        .prepare(`SELECT * FROM rejections ${where} ORDER BY created_at, id`)
        .all(params) as RejectionRow[]
    ).map(toRejection);
  }

  queuedForUpload(target: string, limit: number): IssuanceRecord[] {
    const rows = this.db
      .prepare(
        `SELECT i.* FROM issuances i
         WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.issuance_id = i.id AND u.target = ? AND u.state IN ('done', 'left-to-jitr'))
         ORDER BY i.id LIMIT ?`,
      )
      .all(target, limit) as IssuanceRow[];
    return rows.map(toIssuance);
  }

  uploadQueue(
    target: string,
    states: IssuanceState[],
    afterId: number,
    limit: number,
  ): IssuanceRecord[] {
    const rows = this.db
      .prepare(
        `SELECT i.* FROM issuances i
         WHERE i.id > ? AND i.state IN (SELECT value FROM json_each(?))
           AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.issuance_id = i.id AND u.target = ? AND u.state IN ('done', 'left-to-jitr', 'revoked'))
         ORDER BY i.id LIMIT ?`,
      )
      .all(afterId, JSON.stringify(states), target, limit) as IssuanceRow[];
    return rows.map(toIssuance);
  }

  uploads(target: string, issuanceId?: number): UploadRecord[] {
    const rows = (
      issuanceId === undefined
        ? this.db.prepare("SELECT * FROM uploads WHERE target = ? ORDER BY issuance_id").all(target)
        : this.statement("SELECT * FROM uploads WHERE target = ? AND issuance_id = ?").all(
            target,
            issuanceId,
          )
    ) as UploadRow[];
    return rows.map(toUpload);
  }

  revocationsDue(target: string): { issuance: IssuanceRecord; upload: UploadRecord }[] {
    return this.uploadsJoined(
      "WHERE i.state = 'REVOKED' AND u.state = 'done' ORDER BY i.id",
      target,
    );
  }

  private uploadsJoined(where: string, ...args: unknown[]) {
    const rows = this.db
      .prepare(
        `SELECT i.*, u.issuance_id AS u_issuance_id, u.target AS u_target, u.state AS u_state,
                u.aws_certificate_id AS u_aws_certificate_id, u.aws_arn AS u_aws_arn, u.attempts AS u_attempts,
                u.last_error AS u_last_error, u.updated_at AS u_updated_at
         FROM issuances i JOIN uploads u ON u.issuance_id = i.id AND u.target = ?
         ${where}`,
      )
      .all(...args) as (IssuanceRow & Record<string, unknown>)[];
    return rows.map((r) => ({
      issuance: toIssuance(r),
      upload: toUpload({
        issuance_id: r.u_issuance_id as number,
        target: r.u_target as string,
        state: r.u_state as UploadRecord["state"],
        aws_certificate_id: r.u_aws_certificate_id as string | null,
        aws_arn: r.u_aws_arn as string | null,
        attempts: r.u_attempts as number,
        last_error: r.u_last_error as string | null,
        updated_at: r.u_updated_at as string,
      }),
    }));
  }

  identityDue(target: string, afterId: number, limit: number) {
    return this.uploadsJoined(
      `WHERE u.state = 'done' AND i.id > ?
         AND NOT EXISTS (SELECT 1 FROM identity_steps s WHERE s.issuance_id = i.id AND s.target = u.target AND s.step = 'complete')
       ORDER BY i.id LIMIT ?`,
      target,
      afterId,
      limit,
    );
  }

  detachDue(target: string) {
    return this.uploadsJoined(
      `WHERE u.state = 'revoked'
         AND EXISTS (SELECT 1 FROM identity_steps s WHERE s.issuance_id = i.id AND s.target = u.target
                     AND s.step IN ('principal', 'policy') AND s.state = 'done')
       ORDER BY i.id`,
      target,
    );
  }

  identitySteps(target: string, issuanceId: number): IdentityStepRecord[] {
    return (
      this.db
        .prepare("SELECT * FROM identity_steps WHERE target = ? AND issuance_id = ? ORDER BY rowid")
        .all(target, issuanceId) as Record<string, unknown>[]
    ).map((r) => ({
      issuanceId: r.issuance_id as number,
      target: r.target as string,
      step: r.step as IdentityStepRecord["step"],
      name: r.name as string,
      state: r.state as IdentityStepRecord["state"],
      arn: r.arn as string | null,
      attempts: r.attempts as number,
      lastError: r.last_error as string | null,
      updatedAt: r.updated_at as string,
    }));
  }

  putIdentityStep(rec: IdentityStepRecord): void {
    this.db
      .prepare(
        `INSERT INTO identity_steps (issuance_id, target, step, name, state, arn, attempts, last_error, updated_at)
         VALUES (@issuanceId, @target, @step, @name, @state, @arn, @attempts, @lastError, @updatedAt)
         ON CONFLICT (issuance_id, target, step, name) DO UPDATE SET state = excluded.state,
           arn = COALESCE(excluded.arn, identity_steps.arn), attempts = identity_steps.attempts + excluded.attempts,
           last_error = excluded.last_error, updated_at = excluded.updated_at`,
      )
      .run(rec);
  }

  targetPolicy(target: string, name: string): { arn: string; created: boolean } | null {
    const r = this.db
      .prepare("SELECT arn, created FROM target_policies WHERE target = ? AND name = ?")
      .get(target, name) as { arn: string; created: number } | undefined;
    return r ? { arn: r.arn, created: r.created === 1 } : null;
  }

  putTargetPolicy(target: string, name: string, arn: string, created: boolean, at: string): void {
    this.db
      .prepare(
        `INSERT INTO target_policies (target, name, arn, created, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (target, name) DO UPDATE SET arn = excluded.arn, updated_at = excluded.updated_at`,
      )
      .run(target, name, arn, created ? 1 : 0, at);
  }

  insertTarget(t: TargetRecord): void {
    try {
      this.db
        .prepare("INSERT INTO targets (name, config, created_at) VALUES (?, ?, ?)")
        .run(t.name, t.config, t.createdAt);
    } catch (cause) {
      if (String(cause).includes("UNIQUE"))
        throw new LinesignError(
          "TARGET_EXISTS",
          `A target named "${t.name}" exists already. Remove it first, or choose another name.`,
          { cause },
        );
      throw cause;
    }
  }

  getTarget(name: string): TargetRecord | null {
    const r = this.db.prepare("SELECT * FROM targets WHERE name = ?").get(name) as
      { name: string; config: string; created_at: string } | undefined;
    return r ? { name: r.name, config: r.config, createdAt: r.created_at } : null;
  }

  listTargets(): TargetRecord[] {
    return (
      this.db.prepare("SELECT * FROM targets ORDER BY name").all() as {
        name: string;
        config: string;
        created_at: string;
      }[]
    ).map((r) => ({ name: r.name, config: r.config, createdAt: r.created_at }));
  }

  deleteTarget(name: string): void {
    this.db.prepare("DELETE FROM uploads WHERE target = ?").run(name);
    this.db.prepare("DELETE FROM identity_steps WHERE target = ?").run(name);
    this.db.prepare("DELETE FROM target_policies WHERE target = ?").run(name);
    this.db.prepare("DELETE FROM ca_registrations WHERE target = ?").run(name);
    this.db.prepare("DELETE FROM targets WHERE name = ?").run(name);
  }

  caRegistration(caLabel: string, target: string): CaRegistration | null {
    const r = this.db
      .prepare("SELECT * FROM ca_registrations WHERE ca_label = ? AND target = ?")
      .get(caLabel, target) as CaRegistrationRow | undefined;
    return r ? toCaRegistration(r) : null;
  }

  caRegistrations(target?: string): CaRegistration[] {
    const rows = (
      target === undefined
        ? this.db.prepare("SELECT * FROM ca_registrations ORDER BY target, ca_label").all()
        : this.db
            .prepare("SELECT * FROM ca_registrations WHERE target = ? ORDER BY ca_label")
            .all(target)
    ) as CaRegistrationRow[];
    return rows.map(toCaRegistration);
  }

  putCaRegistration(r: CaRegistration): void {
    this.db
      .prepare(
        `INSERT INTO ca_registrations (ca_label, target, aws_certificate_id, aws_arn, mode, remote_status, updated_at)
         VALUES (@caLabel, @target, @awsCertificateId, @awsArn, @mode, @remoteStatus, @updatedAt)
         ON CONFLICT (ca_label, target) DO UPDATE SET aws_certificate_id = excluded.aws_certificate_id,
           aws_arn = excluded.aws_arn, mode = excluded.mode, remote_status = excluded.remote_status,
           updated_at = excluded.updated_at`,
      )
      .run(r);
  }

  insertRevocation(r: RevocationRecord): void {
    this.db
      .prepare(
        "INSERT INTO revocations (issuance_id, reason, revoked_at, actor) VALUES (@issuanceId, @reason, @revokedAt, @actor)",
      )
      .run(r);
  }

  insertReissueApproval(a: Omit<ReissueApproval, "id" | "issuanceId" | "usedAt">): number {
    try {
      return Number(
        this.db
          .prepare(
            "INSERT INTO reissue_approvals (device_id, reason, approved_by, approved_at) VALUES (@deviceId, @reason, @approvedBy, @approvedAt)",
          )
          .run(a).lastInsertRowid,
      );
    } catch (cause) {
      if (String(cause).includes("UNIQUE"))
        throw new LinesignError(
          "ISSUANCE_STATE",
          `Device "${a.deviceId}" already has a re-issue approval that has not been used.`,
          { cause },
        );
      throw cause;
    }
  }

  openReissueApproval(deviceId: string): ReissueApproval | null {
    const row = this.db
      .prepare("SELECT * FROM reissue_approvals WHERE device_id = ? AND used_at IS NULL")
      .get(deviceId) as ReissueRow | undefined;
    return row ? toReissue(row) : null;
  }

  useReissueApproval(id: number, issuanceId: number, at: string): void {
    this.db
      .prepare(
        "UPDATE reissue_approvals SET issuance_id = ?, used_at = ? WHERE id = ? AND used_at IS NULL",
      )
      .run(issuanceId, at, id);
  }

  reissueApprovals(): ReissueApproval[] {
    return (
      this.db.prepare("SELECT * FROM reissue_approvals ORDER BY id").all() as ReissueRow[]
    ).map(toReissue);
  }

  revokedUnder(caLabel: string): { issuance: IssuanceRecord; revocation: RevocationRecord }[] {
    const rows = this.db
      .prepare(
        `SELECT i.*, r.reason AS r_reason, r.revoked_at AS r_revoked_at, r.actor AS r_actor
         FROM issuances i JOIN revocations r ON r.issuance_id = i.id
         WHERE i.ca_label = ? ORDER BY r.revoked_at, i.id`,
      )
      .all(caLabel) as (IssuanceRow & {
      r_reason: string;
      r_revoked_at: string;
      r_actor: string;
    })[];
    return rows.map((r) => ({
      issuance: toIssuance(r),
      revocation: {
        issuanceId: r.id,
        reason: r.r_reason,
        revokedAt: r.r_revoked_at,
        actor: r.r_actor,
      },
    }));
  }

  insertCrl(c: CrlRecord): void {
    this.db
      .prepare(
        "INSERT INTO crls (ca_label, number, this_update, next_update, entries, der) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(c.caLabel, c.number, c.thisUpdate, c.nextUpdate, c.entries, Buffer.from(c.der));
  }

  crls(): CrlRecord[] {
    return (this.db.prepare("SELECT * FROM crls ORDER BY ca_label, number").all() as CrlRow[]).map(
      toCrl,
    );
  }

  lastCrl(caLabel: string): CrlRecord | null {
    const r = this.db
      .prepare("SELECT * FROM crls WHERE ca_label = ? ORDER BY number DESC LIMIT 1")
      .get(caLabel) as CrlRow | undefined;
    return r ? toCrl(r) : null;
  }

  insertWorkOrder(w: WorkOrder): void {
    try {
      this.db
        .prepare(
          `INSERT INTO work_orders (id, profile, quantity, pattern, devices, not_before, not_after, status, created_by, created_at)
           VALUES (@id, @profile, @quantity, @pattern, @devices, @notBefore, @notAfter, @status, @createdBy, @createdAt)`,
        )
        .run({ ...w, devices: w.devices ? JSON.stringify(w.devices) : null });
    } catch (cause) {
      if (String(cause).includes("UNIQUE"))
        throw new LinesignError("USAGE", `Work order ${w.id} exists already: choose another id.`, {
          cause,
        });
      throw cause;
    }
  }

  getWorkOrder(id: string): WorkOrder | null {
    const r = this.statement("SELECT * FROM work_orders WHERE id = ?").get(id) as
      WorkOrderRow | undefined;
    return r ? toWorkOrder(r) : null;
  }

  listWorkOrders(): WorkOrder[] {
    return (
      this.db.prepare("SELECT * FROM work_orders ORDER BY created_at, id").all() as WorkOrderRow[]
    ).map(toWorkOrder);
  }

  setWorkOrderStatus(id: string, status: WorkOrder["status"]): void {
    this.db.prepare("UPDATE work_orders SET status = ? WHERE id = ?").run(status, id);
  }

  lineShift(from: string, to: string): LineShiftCounts {
    const p = { from, to };
    const sessions = this.db
      .prepare(
        `${LINE_SESSIONS}
         SELECT hour, port, outcome, code, sum(n) AS n FROM s
         GROUP BY hour, port, outcome, code ORDER BY hour, port, outcome, code`,
      )
      .all(p) as LineSessionCount[];
    // A device's first exchange in the window decides its first pass; a later one may still confirm it.
    const firstPass = this.db
      .prepare(
        `${LINE_SESSIONS},
         tries AS (SELECT subject, port, outcome,
                          row_number() OVER (PARTITION BY subject ORDER BY seq) AS nth
                   FROM s WHERE subject IS NOT NULL),
         passed AS (SELECT DISTINCT subject FROM s WHERE subject IS NOT NULL AND outcome = 'ok')
         SELECT port, count(*) AS tried, sum(outcome = 'ok') AS firstPass,
                sum(subject IN (SELECT subject FROM passed)) AS passed
         FROM tries WHERE nth = 1 GROUP BY port ORDER BY port`,
      )
      .all(p) as FirstPassCount[];
    const workOrders = this.db
      .prepare(
        `${LINE_SESSIONS}
         SELECT w.id, w.status, w.quantity,
           (SELECT count(DISTINCT device_id) FROM issuances i WHERE i.work_order = w.id) AS issued,
           (SELECT count(DISTINCT device_id) FROM issuances i
              WHERE i.work_order = w.id AND i.state = 'CONFIRMED') AS confirmed,
           (SELECT coalesce(sum(n), 0) FROM s WHERE s.work_order = w.id AND s.outcome = 'ok')
              AS shiftConfirmed
         FROM work_orders w
         WHERE w.status = 'open' OR w.id IN (SELECT work_order FROM s)
         ORDER BY w.created_at, w.id LIMIT ${MAX_SHIFT_WORK_ORDERS}`,
      )
      .all(p) as WorkOrderProgress[];
    return { sessions, firstPass, workOrders };
  }

  countIssuedFor(workOrder: string): number {
    return (
      this.statement(
        "SELECT COUNT(DISTINCT device_id) AS n FROM issuances WHERE work_order = ?",
      ).get(workOrder) as { n: number }
    ).n;
  }

  issuanceCount(): number {
    return (this.db.prepare("SELECT count(*) AS n FROM issuances").get() as { n: number }).n;
  }

  workOrderHasDevice(workOrder: string, deviceId: string): boolean {
    return (
      this.statement("SELECT 1 FROM issuances WHERE work_order = ? AND device_id = ? LIMIT 1").get(
        workOrder,
        deviceId,
      ) !== undefined
    );
  }

  insertUser(u: UserRecord): void {
    try {
      this.db
        .prepare(
          `INSERT INTO users (name, role, hash, failures, locked_at, disabled, created_by, created_at)
           VALUES (@name, @role, @hash, @failures, @lockedAt, @disabled, @createdBy, @createdAt)`,
        )
        .run({ ...u, disabled: u.disabled ? 1 : 0 });
    } catch (cause) {
      if (String(cause).includes("UNIQUE"))
        throw new LinesignError("USAGE", `A user named "${u.name}" exists already.`, { cause });
      throw cause;
    }
  }

  getUser(name: string): UserRecord | null {
    const r = this.db.prepare("SELECT * FROM users WHERE name = ?").get(name) as
      UserRow | undefined;
    return r ? toUser(r) : null;
  }

  listUsers(): UserRecord[] {
    return (this.db.prepare("SELECT * FROM users ORDER BY name").all() as UserRow[]).map(toUser);
  }

  updateUser(
    name: string,
    patch: Partial<Omit<UserRecord, "name" | "createdAt" | "createdBy">>,
  ): void {
    const cols: Record<string, string> = {
      role: "role",
      hash: "hash",
      failures: "failures",
      lockedAt: "locked_at",
      disabled: "disabled",
    };
    const sets: string[] = [];
    const params: Record<string, unknown> = { name };
    for (const [k, v] of Object.entries(patch)) {
      const col = cols[k];
      if (!col) continue;
      sets.push(`${col} = @${k}`);
      params[k] = typeof v === "boolean" ? (v ? 1 : 0) : v;
    }
    if (sets.length)
      this.db.prepare(`UPDATE users SET ${sets.join(", ")} WHERE name = @name`).run(params);
  }

  insertBundle(b: BundleRecord): void {
    this.db
      .prepare(
        `INSERT INTO bundles (id, target, manifest_sha256, items, created_at, receipt_sha256, receipt_imported_at)
         VALUES (@id, @target, @manifestSha256, @items, @createdAt, @receiptSha256, @receiptImportedAt)`,
      )
      .run(b);
  }

  getBundle(id: string): BundleRecord | null {
    const r = this.db.prepare("SELECT * FROM bundles WHERE id = ?").get(id) as
      Record<string, string | null> | undefined;
    if (!r) return null;
    return {
      id: r.id!,
      target: r.target!,
      manifestSha256: r.manifest_sha256!,
      items: r.items!,
      createdAt: r.created_at!,
      receiptSha256: r.receipt_sha256 ?? null,
      receiptImportedAt: r.receipt_imported_at ?? null,
    };
  }

  markBundleReceipt(id: string, receiptSha256: string, at: string): void {
    this.db
      .prepare("UPDATE bundles SET receipt_sha256 = ?, receipt_imported_at = ? WHERE id = ?")
      .run(receiptSha256, at, id);
  }

  insertUploader(u: UploaderRecord): void {
    this.db
      .prepare(
        `INSERT INTO uploaders (name, fingerprint, cert_der, enrolled_by, enrolled_at)
         VALUES (?, ?, ?, ?, ?)`,
      )
      .run(u.name, u.fingerprint, Buffer.from(u.certDer), u.enrolledBy, u.enrolledAt);
  }

  uploaderByFingerprint(fingerprint: string): UploaderRecord | null {
    const r = this.db.prepare("SELECT * FROM uploaders WHERE fingerprint = ?").get(fingerprint) as
      Record<string, unknown> | undefined;
    return r ? toUploader(r) : null;
  }

  listUploaders(): UploaderRecord[] {
    return (
      this.db.prepare("SELECT * FROM uploaders ORDER BY name").all() as Record<string, unknown>[]
    ).map(toUploader);
  }

  insertBundleReceipt(r: BundleReceiptRecord): void {
    this.db
      .prepare(
        "INSERT INTO bundle_receipts (id, bundle_id, sha256, uploader, imported_at) VALUES (?, ?, ?, ?, ?)",
      )
      .run(r.id, r.bundleId, r.sha256, r.uploader, r.importedAt);
  }

  getBundleReceipt(id: string): BundleReceiptRecord | null {
    const r = this.db.prepare("SELECT * FROM bundle_receipts WHERE id = ?").get(id) as
      Record<string, string> | undefined;
    return r
      ? {
          id: r.id!,
          bundleId: r.bundle_id!,
          sha256: r.sha256!,
          uploader: r.uploader!,
          importedAt: r.imported_at!,
        }
      : null;
  }

  recordUpload(rec: UploadRecord): void {
    this.statement(
      `INSERT INTO uploads (issuance_id, target, state, aws_certificate_id, aws_arn, attempts, last_error, updated_at)
         VALUES (@issuanceId, @target, @state, @awsCertificateId, @awsArn, @attempts, @lastError, @updatedAt)
         ON CONFLICT (issuance_id, target) DO UPDATE SET state = excluded.state, aws_certificate_id = excluded.aws_certificate_id,
           aws_arn = excluded.aws_arn, attempts = excluded.attempts, last_error = excluded.last_error, updated_at = excluded.updated_at`,
    ).run(rec);
  }

  insertCheckpoint(rec: Omit<CheckpointRecord, "id">): void {
    this.db
      .prepare(
        "INSERT INTO checkpoints (seq, hash, ts, key_uri, spki, signature) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(
        rec.seq,
        rec.hash,
        rec.ts,
        rec.keyUri,
        Buffer.from(rec.spki),
        Buffer.from(rec.signature),
      );
  }

  checkpoints(): CheckpointRecord[] {
    const rows = this.db.prepare("SELECT * FROM checkpoints ORDER BY id").all() as {
      id: number;
      seq: number;
      hash: string;
      ts: string;
      key_uri: string;
      spki: Buffer;
      signature: Buffer;
    }[];
    return rows.map((r) => ({
      id: r.id,
      seq: r.seq,
      hash: r.hash,
      ts: r.ts,
      keyUri: r.key_uri,
      spki: new Uint8Array(r.spki),
      signature: new Uint8Array(r.signature),
    }));
  }

  eventAt(seq: number): EventRecord | null {
    const row = this.db.prepare("SELECT * FROM events WHERE seq = ?").get(seq) as
      EventRow | undefined;
    return row ? toEvent(row) : null;
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

  /** Changes whenever another connection (another process) has committed to the database. */
  dataVersion(): number {
    return this.db.pragma("data_version", { simple: true }) as number;
  }

  /** The schema version of the open database (PRAGMA user_version). */
  schemaVersion(): number {
    return this.db.pragma("user_version", { simple: true }) as number;
  }

  recordedConfig(): RecordedConfig | null {
    const row = this.db
      .prepare("SELECT sha256, config, recorded_at FROM config_record WHERE id = 1")
      .get() as { sha256: string; config: string; recorded_at: string } | undefined;
    return row
      ? {
          sha256: row.sha256,
          config: JSON.parse(row.config) as unknown,
          recordedAt: row.recorded_at,
        }
      : null;
  }

  setRecordedConfig(rec: RecordedConfig): void {
    this.db
      .prepare(
        `INSERT INTO config_record (id, sha256, config, recorded_at) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, config = excluded.config, recorded_at = excluded.recorded_at`,
      )
      .run(rec.sha256, JSON.stringify(rec.config), rec.recordedAt);
  }

  savepoint<T>(fn: () => T): T {
    // better-sqlite3 turns a transaction opened inside another into a SAVEPOINT.
    return this.db.inTransaction ? this.db.transaction(fn)() : this.transaction(fn);
  }

  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    // A commit into a deleted or replaced file would be lost at exit.
    this.checkIdentity();
    // Not counted as syncing the deferred commits before it: a transaction that wrote nothing
    // commits without touching the log file (SQLite returns early, no sync), and its fn may not write.
    return this.db.transaction(fn).immediate();
  }

  commitDeferred<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    // After a failed sync (durable() refuses for good) the commit is FULL, synced by SQLite.
    const wal = this.syncFailure ? null : this.walNow();
    if (!wal) return this.transaction(fn);
    this.checkIdentity();
    // NORMAL in WAL mode: the commit's frames are written, not synced; durable() syncs them.
    this.db.pragma("synchronous = NORMAL");
    try {
      const value = this.db.transaction(fn).immediate();
      this.deferred.made++;
      return value;
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  durable(): Promise<void> {
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    return this.syncCovering({ made: this.deferred.made, seen: this.othersCommits() });
  }

  /**
   * How far other connections' commits go as this one sees them (PRAGMA
   * data_version changes with every commit another connection makes, in
   * this process or another). They may be commits with synchronous=NORMAL
   * (another station process's commitDeferred), visible before they are on
   * disk; null on a read-only store, whose file is a private copy.
   */
  private othersCommits(): number | null {
    if (this.db.readonly) return null;
    return this.db.pragma("data_version", { simple: true }) as number;
  }

  private covers(
    done: { made: number; seen: number | null },
    want: { made: number; seen: number | null },
  ): boolean {
    return (
      done.made >= want.made &&
      (want.seen === null || (done.seen !== null && done.seen >= want.seen))
    );
  }

  /**
   * One fdatasync at a time: the kernel reports a write-back error to one
   * sync of a descriptor only, so a second sync running beside a failing one
   * can succeed while the pages it covers were lost.
   */
  private async syncCovering(want: { made: number; seen: number | null }): Promise<void> {
    for (;;) {
      if (this.syncFailure) throw this.syncFailure;
      if (this.covers(this.synced, want)) return;
      const running = this.syncing;
      if (!running) break;
      if (this.covers(running.covers, want)) return running.done;
      await running.done.catch(() => undefined);
    }
    // Started after the commits it covers (ours counted, others' seen), so it covers them whatever runs before it ends.
    const covers = { made: this.deferred.made, seen: this.othersCommits() };
    const wal = this.wal;
    const walPath = `${this.path}-wal`;
    const done = new Promise<void>((resolve, reject) => {
      if (!wal) {
        // The log was let go (walNow) after a deferred commit: SQLite syncs its own handle of
        // it before it copies frames back (a checkpoint with synchronous=FULL).
        try {
          this.db.pragma("wal_checkpoint(PASSIVE)");
        } catch (e) {
          reject(storageError(e, this.path));
          return;
        }
        this.settle(covers);
        resolve();
        return;
      }
      this.diskSync(wal.fd, (err) => {
        if (err) {
          this.syncFailure = new LinesignError(
            "DB_IO",
            `The station database's log ${walPath} could not be made durable (${err.code ?? err.message}): the disk reported an error, ` +
              "so the last commits may not be on it. Nothing more is signed, and what those commits hold is withheld. " +
              'Check the disk (dmesg, SMART), then restart the station and run "linesign audit verify"; restore station.db from its backup if the disk is failing.',
            { cause: err, details: { path: walPath, cause: err.code ?? null } },
          );
          reject(this.syncFailure);
          return;
        }
        this.settle(covers);
        resolve();
      });
    }).finally(() => {
      if (this.syncing?.done === done) this.syncing = null;
    });
    this.syncing = { covers, done };
    return done;
  }

  private settle(covers: { made: number; seen: number | null }): void {
    this.synced = {
      made: Math.max(this.synced.made, covers.made),
      seen:
        covers.seen === null
          ? this.synced.seen
          : Math.max(this.synced.seen ?? covers.seen, covers.seen),
    };
  }

  /**
   * The log file's handle while the path still names the file it was opened
   * on; otherwise (deleted, replaced: SQLite writes where the path no longer
   * leads) it is let go and commits are FULL, synced by SQLite itself.
   */
  private walNow(): { fd: number; dev: number; ino: number } | null {
    const wal = this.wal;
    if (!wal) return null;
    let now: { dev: number; ino: number } | null = null;
    try {
      now = fileIdentity(`${this.path}-wal`);
    } catch {
      // gone: now stays null
    }
    if (now && now.dev === wal.dev && now.ino === wal.ino) return wal;
    this.releaseWal();
    return null;
  }

  private releaseWal(): void {
    const wal = this.wal;
    this.wal = null;
    // A sync in flight holds its own reference to the descriptor until it ends.
    if (wal)
      void (this.syncing?.done ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => closeSync(wal.fd));
  }

  close(): void {
    this.releaseWal();
    if (this.db.open) this.db.close();
  }
}

interface ReissueRow {
  id: number;
  device_id: string;
  reason: string;
  approved_by: string;
  approved_at: string;
  issuance_id: number | null;
  used_at: string | null;
}

function toReissue(r: ReissueRow): ReissueApproval {
  return {
    id: r.id,
    deviceId: r.device_id,
    reason: r.reason,
    approvedBy: r.approved_by,
    approvedAt: r.approved_at,
    issuanceId: r.issuance_id,
    usedAt: r.used_at,
  };
}

function toUploader(r: Record<string, unknown>): UploaderRecord {
  return {
    name: r.name as string,
    fingerprint: r.fingerprint as string,
    certDer: new Uint8Array(r.cert_der as Buffer),
    enrolledBy: r.enrolled_by as string,
    enrolledAt: r.enrolled_at as string,
  };
}

function fileIdentity(path: string): { dev: number; ino: number } {
  const st = statSync(path);
  return { dev: st.dev, ino: st.ino };
}

/**
 * The database's write-ahead log, opened read-only beside SQLite's handle
 * right after SQLite opened it (so the path names SQLite's file); null when
 * there is none (not in WAL mode) or it cannot be opened.
 */
function openWal(path: string): { fd: number; dev: number; ino: number } | null {
  let fd: number;
  try {
    fd = openSync(`${path}-wal`, "r");
  } catch {
    return null;
  }
  const st = fstatSync(fd);
  return { fd, dev: st.dev, ino: st.ino };
}

/** Wraps every method so that what escapes it is a LinesignError for storage faults. */
function mappingStorageErrors(store: SqliteStationStore, path: string): SqliteStationStore {
  const proto = Object.getPrototypeOf(store) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const fn = proto[name];
    if (name === "constructor" || typeof fn !== "function") continue;
    Object.defineProperty(store, name, {
      value: function (this: SqliteStationStore, ...args: unknown[]) {
        try {
          return (fn as (...a: unknown[]) => unknown).apply(this, args);
        } catch (e) {
          throw storageError(e, path);
        }
      },
    });
  }
  return store;
}

/**
 * Why the second copy at `path` could not be written, in the OS's words where
 * SQLite gives only its own (CANTOPEN for a missing or unwritable folder).
 */
function copyError(e: unknown, path: string): LinesignError {
  const dir = dirname(path);
  let cause = (e as { code?: unknown } | null)?.code;
  if (typeof cause !== "string" || /^SQLITE_(CANTOPEN|IOERR|READONLY|FULL)/.test(cause)) {
    const sqlite = typeof cause === "string" ? cause : "unknown";
    cause = sqlite;
    if (!existsSync(dir)) cause = "ENOENT";
    else {
      try {
        accessSync(dir, constants.W_OK);
        const fs = statfsSync(dir);
        if (fs.bavail * fs.bsize < 256 * 1024 || sqlite.startsWith("SQLITE_FULL")) cause = "ENOSPC";
      } catch (a) {
        cause = (a as { code?: string }).code ?? sqlite;
      }
    }
  }
  const code = cause as string;
  const fix =
    fileWriteFix(code) ??
    (code === "ENOENT" ? null : "check the disk and that this user may write the folder");
  return new LinesignError(
    "DB_COPY_FAILED",
    `The second copy of the station database could not be written to ${path} (${code}): ${fix ?? "check the path"}. ` +
      "The station goes on; the copy stays as it was (behind) until this is fixed.",
    { cause: e, details: { path, cause: code } },
  );
}
