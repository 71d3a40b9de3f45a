/**
 * The interfaces through which use cases reach the world. Adapters implement
 * them; src/compose.ts picks which. Nothing here knows a driver.
 */
import type { StationConfig } from "./config.js";
import type { EncodedEvent, EventInput, EventRecord, RangeWalk, StoredEvent } from "./event-log.js";
import type { KeyType } from "./keys.js";
import type { DecodeEvent } from "./serial/frame.js";
import type { WorkOrder } from "./work-order.js";
import type { Role } from "./roles.js";
import type { LineShiftCounts } from "./shift.js";

/** A token seen through the PKCS#11 module. */
export interface TokenInfo {
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
}

/**
 * What a token says of a private key it holds (null: the token does not keep
 * that attribute). `faults` make the key unfit to be a CA or audit key;
 * `weaknesses` are hardening the token did not accept, recorded with the key.
 */
export interface KeyCustody {
  /** Which template made it ("strict" ... "minimal"), or "adopted" for a key made elsewhere. */
  template: string;
  sensitive: boolean | null;
  alwaysSensitive: boolean | null;
  extractable: boolean | null;
  neverExtractable: boolean | null;
  sign: boolean | null;
  decrypt: boolean | null;
  unwrap: boolean | null;
  derive: boolean | null;
  signRecover: boolean | null;
  modifiable: boolean | null;
  copyable: boolean | null;
  /** CKM_* names, or null when the token does not keep CKA_ALLOWED_MECHANISMS. */
  allowedMechanisms: string[] | null;
  faults: string[];
  weaknesses: string[];
}

/** A key pair that lives in a token (or, for development only, in a file). */
export interface KeyInfo {
  /** RFC 7512 URI for token keys; `file:` URL for development software keys. */
  uri: string;
  keyType: KeyType;
  /** DER SubjectPublicKeyInfo of the public half. */
  spki: Uint8Array;
  /** Token keys: the custody read back when the key was made or adopted. */
  custody?: KeyCustody;
}

/**
 * Signs with a private key that stays where it is. `sign` takes the message
 * (the signer hashes it with the key type's hash) and returns the signature in
 * WebCrypto form: r||s for ECDSA, the PKCS#1 v1.5 block for RSA.
 */
export interface Signer {
  readonly key: KeyInfo;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/**
 * Around every PIN presented to a token, user or security officer. Another
 * process of the station may present a PIN to the same token at the same
 * moment: the guard runs one presentation at a time across processes, and the
 * token's own counters are read inside it, just before the PIN goes.
 */
export interface LoginGuard {
  /** Throws HSM_PIN_LOCKED when the station stopped presenting `who`'s PIN to the token. */
  beforeLogin(tokenLabel: string, who?: "user" | "so"): void;
  /**
   * Runs `attempt` (which reads the token's counters and presents one PIN)
   * while no other process of the station presents one, after `beforeLogin`
   * (unless `checkStop` is false), and records how it went: a failure for
   * which `isWrongPin` holds counts towards the stop. Rethrows what `attempt` threw.
   */
  present<T>(
    tokenLabel: string,
    who: "user" | "so",
    attempt: () => T,
    isWrongPin: (e: unknown) => boolean,
    opts?: { checkStop?: boolean },
  ): T;
}

/** Which file a copy is: another file put at its path, or the file changed, is not the copy written. */
export interface CopyFileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

/** The station's PKCS#11 token(s). PINs come from the PIN source given at construction. */
export interface KeyStore {
  /** Tokens present, by label. Throws HSM_MODULE_* when the module cannot be used. */
  listTokens(): TokenInfo[];
  /** Generates a non-extractable signing key pair in the token. Throws CA_LABEL_EXISTS if the label is taken. */
  generateKeyPair(tokenLabel: string, label: string, keyType: KeyType): Promise<KeyInfo>;
  /** Finds a key by its URI; null when the token has no such key. */
  findKey(uri: string): Promise<KeyInfo | null>;
  /**
   * Takes a key made elsewhere (the HSM vendor's tool) after reading its
   * attributes back. Throws HSM_KEY_NOT_FOUND, HSM_KEY_CUSTODY (it could leave
   * the token, decrypt, unwrap or derive), HSM_MECHANISM_UNSUPPORTED.
   */
  adoptKey(uri: string): Promise<KeyInfo>;
  /** Removes a key pair the station made (a step that failed after it): both halves. */
  destroyKey(uri: string): Promise<void>;
  /** A signer for the private key at `uri`. Throws HSM_KEY_NOT_FOUND. */
  signer(uri: string): Promise<Signer>;
  /** Logs in to the token now (asking the PIN source), so a wrong PIN shows at once. */
  login(tokenLabel: string): Promise<void>;
  /**
   * Logs out of the token: no private key can be used until the next login,
   * which asks the PIN source again. Signers already handed out stay valid and
   * log in again on their next use.
   */
  logout(tokenLabel: string): void;
  /** Ends sessions and finalises the module, after the signatures in flight have returned. */
  close(): Promise<void>;
}

/** What `token probe` reports of a token. */
export interface TokenProbe {
  token: TokenInfo;
  /** The token's RFC 7512 URI. */
  uri: string;
  mechanisms: { name: string; minKeySize: number; maxKeySize: number; flags: string[] }[];
  /** The token's own PIN counters (CKF_*_PIN_COUNT_LOW, FINAL_TRY, LOCKED) and PIN lengths. */
  pin: {
    userCountLow: boolean;
    userFinalTry: boolean;
    userLocked: boolean;
    soCountLow: boolean;
    soFinalTry: boolean;
    soLocked: boolean;
    minLength: number;
    maxLength: number;
  };
  /** Per key type: whether the token can generate and sign with it, and how it signs. */
  keyTypes: (
    | { keyType: KeyType; fit: true; signWith: string }
    | { keyType: KeyType; fit: false; reason: string }
  )[];
  /** Whether a private CKO_DATA object with CKA_APPLICATION is kept (null: not tried, needs the PIN). */
  dataObjects: { kept: boolean; reason: string | null } | null;
  /**
   * With `login`: whether a public data object made in the user session is found
   * again in a public session (no login), where an auditor without the user PIN reads.
   */
  publicDataObjects?: { kept: boolean; reason: string | null } | null;
  /** The template a throwaway key was made from and its custody read back (null: not tried, needs the PIN). */
  template: {
    keyType: KeyType;
    accepted: string | null;
    custody: KeyCustody | null;
    reason: string | null;
  } | null;
}

/** Optional capability: describe what a token offers. */
export interface TokenProber {
  /** With `login`, also tries a data object and a throwaway key (asks for the PIN). */
  probe(tokenLabel: string, opts: { login: boolean }): Promise<TokenProbe>;
}

/** Optional capability: initialise a fresh token (development and SoftHSM only). */
export interface TokenProvisioner {
  /** Initialises a free slot's token with `label` and sets its user PIN. Throws HSM_NO_FREE_SLOT. */
  initToken(label: string, soPin: string, userPin: string): void;
}

/** Optional capability: security-officer acts on a token. */
export interface TokenOfficer {
  /**
   * Logs in as SO (proving the SO PIN) and, when `newUserPin` is given, sets
   * the user PIN (which unlocks a locked user PIN on HSMs that lock).
   * Throws HSM_PIN_INCORRECT for a wrong SO PIN.
   */
  officerReset(
    tokenLabel: string,
    soPin: string,
    newUserPin?: string,
    opts?: { finalTry?: boolean },
  ): void;
  /**
   * Changes the user or SO PIN, proving the current one (C_SetPIN).
   * Throws HSM_PIN_INCORRECT for a wrong current PIN (nothing changes).
   */
  changePin(tokenLabel: string, who: "user" | "so", oldPin: string, newPin: string): void;
}

/** A token's wrong-PIN record, as the station keeps it. */
export interface PinGuardState {
  failures: number;
  lockedAt: string | null;
}

/** Software keys kept in the station home, for the development root only. */
export interface SoftwareKeyStore {
  generate(path: string, keyType: KeyType): Promise<Signer>;
  load(path: string): Promise<Signer>;
}

export type CaKind = "root" | "intermediate";
export type CaStatus = "pending" | "active" | "inactive";

/** A CA known to the station. */
export interface CaRecord {
  label: string;
  kind: CaKind;
  status: CaStatus;
  keyType: KeyType;
  keyUri: string;
  /** True for the software-keyed development root: never for production use. */
  development: boolean;
  subject: string;
  /** Null while pending an offline root's signature (`ca create --csr-out`). */
  certDer: Uint8Array | null;
  /** Issuer chain above this CA, nearest first, up to and including the root. */
  chainDer: Uint8Array[];
  parentLabel: string | null;
  notBefore: string | null;
  notAfter: string | null;
  /** Hex SHA-256 of the certificate DER, when there is one. */
  fingerprint: string | null;
  createdAt: string;
  /**
   * When the CA stopped signing here (a rotation moved its profiles on); it
   * stays ACTIVE at AWS IoT for the devices it already signed. Null or absent: it signs.
   */
  retiredAt?: string | null;
}

/** station.json: read fresh and validated, written whole or not at all. */
export interface StationConfigFile {
  readonly path: string;
  /** @throws LinesignError CONFIG_INVALID, CONFIG_MISSING */
  read(): Readonly<StationConfig>;
  /** @throws LinesignError FILE_WRITE_FAILED */
  write(config: StationConfig): void;
}

/** The station configuration as the station last wrote or accepted it. */
export interface RecordedConfig {
  /** Hex SHA-256 of the canonical JSON of the parsed configuration. */
  sha256: string;
  config: unknown;
  recordedAt: string;
}

/** Entries of the log by the store's position: after `after`, up to and including `upTo`. */
export interface LogRange {
  after: number;
  upTo: number;
}

/**
 * Walks ranges of the log at once, each on a thread of its own with its own
 * read-only connection to the store's file (an optional capability of a store
 * kept in a file).
 */
export interface LogRangeWalker {
  /**
   * The positions of the log's first and last entries now, or null when the
   * log cannot be walked in ranges here (empty, kept in memory, or read inside
   * an open transaction whose entries other connections cannot see).
   */
  span(): { first: number; last: number } | null;
  /**
   * Walks each range with a ChainWalker started with `"range"`, noting the
   * hash of each entry whose sequence is in `checkpointSeqs`; resolves in the
   * order of `ranges`, or null when the threads could not start (walk in the
   * calling thread instead).
   * @throws LinesignError when a thread fails while it walks (DB_* for the
   *   store's own failures, INTERNAL otherwise); never waits on a thread that stopped
   */
  walk(ranges: readonly LogRange[], checkpointSeqs: readonly number[]): Promise<RangeWalk[] | null>;
}

/** The station database: the tamper-evident log and the station's records. */
export interface StationStore {
  /** Appends one entry to the log (inside the current transaction, if any). */
  appendEvent(input: EventInput): EventRecord;
  /** All entries in sequence order. */
  events(): Iterable<EventRecord>;
  /**
   * Up to `limit` entries after position `after` (0: from the start; else the
   * last entry's position from the previous page), in stored order, as stored:
   * one page of a walk over the log that holds no more than a page in memory
   * and leaves the database free between pages.
   */
  storedEvents(after: number, limit: number): StoredEvent[];
  /** The same page as storedEvents(), each entry encoded for the walk (see EncodedEvent). */
  encodedEvents(after: number, limit: number): EncodedEvent[];
  head(): { seq: number; hash: string } | null;
  /**
   * A consistent copy of the whole database written to `path` (SQLite's online
   * backup, so the line may go on writing), and the log head the copy ends at.
   */
  backupTo(path: string): Promise<{ seq: number; hash: string } | null>;
  /**
   * Writes a copy of the whole database to `path`, whole or not at all (a
   * temporary file beside it, synced and renamed over it), and returns the
   * log head the copy ends at, with the identity of the file it wrote.
   * @throws LinesignError DB_COPY_FAILED naming the path and the cause (ENOENT, EACCES, ENOSPC...)
   */
  writeCopy(path: string): Promise<{
    head: { seq: number; hash: string; ts: string } | null;
    file: CopyFileIdentity;
  }>;
  /** Entries matching every given filter, oldest first; `limit` keeps the newest ones. */
  queryEvents(q: EventQuery): EventRecord[];
  getCa(label: string): CaRecord | null;
  listCas(): CaRecord[];
  insertCa(ca: CaRecord): void;
  updateCa(label: string, patch: Partial<Omit<CaRecord, "label">>): void;
  /** The configuration last recorded (null on a station made before it was kept). */
  recordedConfig(): RecordedConfig | null;
  setRecordedConfig(rec: RecordedConfig): void;
  insertIssuance(rec: Omit<IssuanceRecord, "id">): number;
  getIssuance(id: number): IssuanceRecord | null;
  getIssuanceBySerial(serial: string): IssuanceRecord | null;
  findIssuanceBySpki(spkiSha256: string): IssuanceRecord | null;
  liveIssuanceForDevice(deviceId: string): IssuanceRecord | null;
  setIssuanceState(id: number, state: IssuanceState, reason: string | null): void;
  insertRejection(rec: Omit<RejectionRecord, "id">): number;
  queryIssuances(q: AuditQuery): IssuanceRecord[];
  queryRejections(q: AuditQuery): RejectionRecord[];
  /** Issuances not yet uploaded (or left to just-in-time registration) at `target`, oldest first. */
  queuedForUpload(target: string, limit: number): IssuanceRecord[];
  /** Records what a target answered for an issuance (written only after the target answered). */
  recordUpload(rec: UploadRecord): void;
  /** A page of `target`'s queue: issuances in `states` after id `afterId` with no done/left-to-jitr row there. */
  uploadQueue(
    target: string,
    states: IssuanceState[],
    afterId: number,
    limit: number,
  ): IssuanceRecord[];
  /** Upload rows of a target (all, or those of one issuance). */
  uploads(target: string, issuanceId?: number): UploadRecord[];
  /** Issuances REVOKED here whose registration at `target` is not yet revoked. */
  revocationsDue(target: string): { issuance: IssuanceRecord; upload: UploadRecord }[];
  /** A page of certificates registered at `target` (after issuance id `afterId`) whose identity steps are not complete. */
  identityDue(
    target: string,
    afterId: number,
    limit: number,
  ): { issuance: IssuanceRecord; upload: UploadRecord }[];
  /** Revoked at `target` with a principal or policy attachment the target made still in place. */
  detachDue(target: string): { issuance: IssuanceRecord; upload: UploadRecord }[];
  /** The identity steps recorded for an issuance at a target. */
  identitySteps(target: string, issuanceId: number): IdentityStepRecord[];
  /** Written only after AWS answered. */
  putIdentityStep(rec: IdentityStepRecord): void;
  /** A policy a target made from its document (once). */
  targetPolicy(target: string, name: string): { arn: string; created: boolean } | null;
  putTargetPolicy(target: string, name: string, arn: string, created: boolean, at: string): void;
  insertTarget(t: TargetRecord): void;
  getTarget(name: string): TargetRecord | null;
  listTargets(): TargetRecord[];
  /** Forgets a target with its upload rows and CA registrations (the event log keeps the history). */
  deleteTarget(name: string): void;
  caRegistration(caLabel: string, target: string): CaRegistration | null;
  caRegistrations(target?: string): CaRegistration[];
  putCaRegistration(r: CaRegistration): void;
  insertRevocation(r: RevocationRecord): void;
  /** Throws ISSUANCE_STATE when the device already has an unused approval. */
  insertReissueApproval(a: Omit<ReissueApproval, "id" | "issuanceId" | "usedAt">): number;
  /** The device's unused approval, or null. */
  openReissueApproval(deviceId: string): ReissueApproval | null;
  useReissueApproval(id: number, issuanceId: number, at: string): void;
  reissueApprovals(): ReissueApproval[];
  /** Revoked issuances of a CA with why and when, oldest first. */
  revokedUnder(caLabel: string): { issuance: IssuanceRecord; revocation: RevocationRecord }[];
  insertCrl(c: CrlRecord): void;
  lastCrl(caLabel: string): CrlRecord | null;
  /** Every CRL the station signed, by CA and number. */
  crls(): CrlRecord[];
  insertWorkOrder(w: WorkOrder): void;
  getWorkOrder(id: string): WorkOrder | null;
  listWorkOrders(): WorkOrder[];
  setWorkOrderStatus(id: string, status: WorkOrder["status"]): void;
  /** Devices that got a certificate under a work order (a re-issued device counts once). */
  countIssuedFor(workOrder: string): number;
  /**
   * The line's exchanges (line.session entries) with a time in [from, to),
   * counted per clock hour, port, outcome and code; devices tried, confirmed
   * at their first try and confirmed at all, per port; and the progress of
   * the open work orders and of those the line ran in the window.
   */
  lineShift(from: string, to: string): LineShiftCounts;
  /** How many certificates the station has issued, in every state. */
  issuanceCount(): number;
  workOrderHasDevice(workOrder: string, deviceId: string): boolean;
  /** Changes whenever another connection (another process) has committed to the database. */
  dataVersion(): number;
  insertUser(u: UserRecord): void;
  getUser(name: string): UserRecord | null;
  listUsers(): UserRecord[];
  updateUser(
    name: string,
    patch: Partial<Omit<UserRecord, "name" | "createdAt" | "createdBy">>,
  ): void;
  insertBundle(b: BundleRecord): void;
  getBundle(id: string): BundleRecord | null;
  markBundleReceipt(id: string, receiptSha256: string, at: string): void;
  insertUploader(u: UploaderRecord): void;
  uploaderByFingerprint(fingerprint: string): UploaderRecord | null;
  listUploaders(): UploaderRecord[];
  insertBundleReceipt(r: BundleReceiptRecord): void;
  getBundleReceipt(id: string): BundleReceiptRecord | null;
  insertCheckpoint(rec: Omit<CheckpointRecord, "id">): void;
  checkpoints(): CheckpointRecord[];
  /** The entry with sequence number `seq`, or null. */
  eventAt(seq: number): EventRecord | null;
  pinGuard(token: string): PinGuardState;
  setPinGuard(token: string, state: PinGuardState): void;
  /** Inside a transaction: runs `fn` in a savepoint, rolled back alone if it throws. Outside: a transaction. */
  savepoint<T>(fn: () => T): T;
  /** Runs `fn` in one durable transaction: all of it is committed, or none. */
  transaction<T>(fn: () => T): T;
  /**
   * Runs `fn` in one transaction, all of it or none, committed without waiting
   * for the disk: it is durable once durable() resolves. Readers see it at
   * once, so nothing it holds may leave the station before then.
   */
  commitDeferred<T>(fn: () => T): T;
  /**
   * Resolves once every commit this store can see is on disk: its own, and
   * those of other connections (another station process's commitDeferred
   * shows before it is synced). The disk's sync runs off the event loop, one
   * at a time. Call it after reading what is to leave the station, before it
   * leaves. Rejects with DB_IO, for good, when the disk failed it.
   */
  durable(): Promise<void>;
  /** Throws (DB_REPLACED, DB_READ_ONLY, DB_FULL, DB_LOCKED...) when a write could not be made now. */
  probe(): void;
  /** How long a write blocks waiting for another process's lock (0: not at all). */
  setLockWait(ms: number): void;
  /** Runs `fn` with writes waiting at least `ms` for another process's lock (blocking), then as before. */
  withLockWait<T>(ms: number, fn: () => T): T;
  close(): void;
}

/** Optional capability: small application data objects in a token (private, token-resident). */
export interface TokenDataStore {
  /** Every value stored under `label` (normally one; two if a replacement was interrupted). */
  readData(tokenLabel: string, label: string): Promise<Uint8Array[]>;
  /** Replaces the object's value (creating it first, then removing the old). */
  writeData(tokenLabel: string, label: string, value: Uint8Array): Promise<void>;
}

/**
 * Optional capability: a small named value on the token that is rewritten in
 * place, cheaply enough to move with every commit (the log head). Two slots
 * are kept, written in turn, so a write that fails leaves the previous value.
 */
export interface TokenRegisterStore {
  /** The values the register's slots hold (none, one or two; an empty slot reads ""). */
  readRegister(tokenLabel: string, name: string): Promise<string[]>;
  /**
   * Writes `value` into the slot not written last (creating the slots on first use).
   * With `public`, the slots are public objects (CKA_PRIVATE false): readable
   * without the user PIN by readPublicRegister, so anyone with the token can also rewrite them.
   */
  writeRegister(
    tokenLabel: string,
    name: string,
    value: string,
    opts?: { public?: boolean },
  ): Promise<void>;
  /**
   * A public register's values, read in a public session (no login, no PIN asked):
   * what an auditor without the user PIN sees.
   */
  readPublicRegister(tokenLabel: string, name: string): Promise<string[]>;
}

export type IssuanceState =
  "ISSUED" | "DELIVERED" | "CONFIRMED" | "DELIVERY_FAILED" | "SUPERSEDED" | "REVOKED";
/** States in which a certificate counts as the device's live one. */
export const LIVE_STATES: readonly IssuanceState[] = ["ISSUED", "DELIVERED", "CONFIRMED"];

/** The write-ahead record of one signed certificate. */
export interface IssuanceRecord {
  id: number;
  serial: string;
  deviceId: string;
  spkiSha256: string;
  keyType: string;
  profile: string;
  caLabel: string;
  certDer: Uint8Array;
  /** Hex SHA-256 of certDer. */
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  /** True when validity was cut at the CA's notAfter. */
  validityCut: boolean;
  state: IssuanceState;
  stateReason: string | null;
  supersedes: number | null;
  operator: string;
  station: string;
  /** Where it went: `serial:/dev/ttyUSB0`, `file:/path`, ... */
  origin: string;
  workOrder: string | null;
  csrSha256: string;
  /** The model and firmware the device reported when it identified on the line (null otherwise). */
  deviceModel?: string | null;
  deviceFirmware?: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RejectionRecord {
  id: number;
  reason: string;
  message: string;
  deviceId: string | null;
  csrSha256: string;
  profile: string | null;
  operator: string;
  station: string;
  origin: string;
  workOrder: string | null;
  createdAt: string;
}

/** An AWS IoT account and region the station registers with; `config` is TargetConfig as JSON. */
export interface TargetRecord {
  name: string;
  config: string;
  createdAt: string;
}

/** A CA as registered at one target. */
export interface CaRegistration {
  caLabel: string;
  target: string;
  awsCertificateId: string;
  awsArn: string;
  mode: "DEFAULT" | "SNI_ONLY";
  remoteStatus: "ACTIVE" | "INACTIVE";
  updatedAt: string;
}

export interface UserRecord {
  name: string;
  role: Role;
  /** scrypt$N$r$p$salt$hash (base64 parts); never the passphrase. */
  hash: string;
  failures: number;
  lockedAt: string | null;
  disabled: boolean;
  createdBy: string;
  createdAt: string;
}

/** An officer's approval of one re-issue for a device that has a live certificate. */
export interface ReissueApproval {
  id: number;
  deviceId: string;
  reason: string;
  approvedBy: string;
  approvedAt: string;
  /** The issuance that used it, once used. */
  issuanceId: number | null;
  usedAt: string | null;
}

export interface RevocationRecord {
  issuanceId: number;
  reason: string;
  revokedAt: string;
  actor: string;
}

export interface CrlRecord {
  caLabel: string;
  number: number;
  thisUpdate: string;
  nextUpdate: string;
  entries: number;
  der: Uint8Array;
}

/** An offline bundle the station exported, and the receipt imported for it. */
/** An online uploader an officer enrolled: its receipts are trusted. */
export interface UploaderRecord {
  name: string;
  /** SHA-256 of the certificate's DER. */
  fingerprint: string;
  certDer: Uint8Array;
  enrolledBy: string;
  enrolledAt: string;
}

export interface BundleReceiptRecord {
  id: string;
  bundleId: string;
  sha256: string;
  uploader: string;
  importedAt: string;
}

export interface BundleRecord {
  id: string;
  target: string;
  manifestSha256: string;
  /** JSON list of the bundle's items (kind, ref, sha256). */
  items: string;
  createdAt: string;
  receiptSha256: string | null;
  receiptImportedAt: string | null;
}

/** Per-target upload state of one issuance: issuances minus these rows are each target's queue. */
export interface UploadRecord {
  issuanceId: number;
  target: string;
  /** done: registered; failed: refused or not answered (stays queued); left-to-jitr; revoked: revoked there too. */
  state: "done" | "failed" | "left-to-jitr" | "revoked";
  awsCertificateId: string | null;
  awsArn: string | null;
  attempts: number;
  lastError: string | null;
  updatedAt: string;
}

/** One step of a device's identity at a target (its Thing, attachments, groups), after AWS answered. */
export interface IdentityStepRecord {
  issuanceId: number;
  target: string;
  /** complete: every step the target asks for is done (name ""). */
  step: "thing" | "principal" | "policy" | "group" | "complete";
  /** The Thing's, policy's or group's name. */
  name: string;
  /** detached: revoked, and the attachment removed there (the Thing is left). */
  state: "done" | "failed" | "detached";
  arn: string | null;
  attempts: number;
  lastError: string | null;
  updatedAt: string;
}

export interface CheckpointRecord {
  id: number;
  seq: number;
  hash: string;
  ts: string;
  keyUri: string;
  spki: Uint8Array;
  signature: Uint8Array;
}

export interface EventQuery {
  /** An action, or a prefix ending in "." ("signing." matches signing.open and signing.close). */
  action?: string;
  actor?: string;
  outcome?: "ok" | "refused" | "failed";
  since?: string;
  until?: string;
  /** Only entries before this sequence number (paging back). */
  beforeSeq?: number;
  limit?: number;
}

export interface AuditQuery {
  since?: string;
  until?: string;
  deviceId?: string;
  /** An issuance state, or REJECTED. */
  status?: string;
}

/** Where the time comes from (tests may fix it). */
export interface Clock {
  now(): Date;
}

/** One open serial port: bytes out, decoded frames in. */
export interface SerialLink {
  readonly path: string;
  /** Writes bytes; resolves when the driver has handed them to the line. */
  write(bytes: Uint8Array): Promise<void>;
  /** Called for every chunk that arrives: its size, and the frames (or damage) it completed. */
  onData(listener: (bytes: number, events: DecodeEvent[]) => void): void;
  /** Called once when the port closes; `lost` when it went away (cable pulled, adapter removed). */
  onClose(listener: (lost: boolean) => void): void;
  close(): Promise<void>;
}

/** A port found by discovery. */
export interface SerialPortInfo {
  path: string;
  manufacturer?: string;
  serialNumber?: string;
  vendorId?: string;
  productId?: string;
}

/** The machine's serial ports. */
export interface SerialPorts {
  /** Throws SERIAL_PORT_NOT_FOUND or SERIAL_PORT_UNAVAILABLE. */
  open(path: string, baudRate: number): Promise<SerialLink>;
  /** Whether the port's device node exists (to re-arm a port that came back). */
  exists(path: string): boolean;
  /** Discovery; throws PORT_DISCOVERY_UNAVAILABLE where the system cannot enumerate ports. */
  list(): Promise<SerialPortInfo[]>;
}

/** A failure AWS IoT answered (or the network gave), as the sync job needs to judge it. */
export interface IotFailure {
  /** AWS's error type (ThrottlingException, ...), or NetworkError for no answer. */
  name: string;
  message: string;
  httpStatus: number | null;
  /** With ResourceAlreadyExistsException: the id AWS gave the existing resource. */
  resourceId?: string;
  resourceArn?: string;
}

export type IotResult<T> = { ok: true; value: T } | { ok: false; failure: IotFailure };

export interface IotRegistered {
  certificateId: string;
  certificateArn: string;
}

/** AWS IoT's control plane for one target (account and region). Every call is one request. */
export interface IotGateway {
  getRegistrationCode(): Promise<IotResult<string>>;
  registerCaCertificate(p: {
    caPem: string;
    verificationPem?: string;
    mode: "DEFAULT" | "SNI_ONLY";
    setAsActive: boolean;
    allowAutoRegistration: boolean;
    registrationConfig?: { templateBody: string; roleArn: string };
  }): Promise<IotResult<IotRegistered>>;
  updateCaCertificate(id: string, status: "ACTIVE" | "INACTIVE"): Promise<IotResult<null>>;
  describeCaCertificate(
    id: string,
  ): Promise<IotResult<{ pem: string; status: string; mode: string; arn: string }>>;
  registerCertificate(p: {
    pem: string;
    caPem?: string;
    /** REVOKED: a revoked certificate made known to AWS so that it refuses it (just-in-time targets). */
    status: "ACTIVE" | "INACTIVE" | "REVOKED";
  }): Promise<IotResult<IotRegistered>>;
  registerCertificateWithoutCa(p: {
    pem: string;
    status: "ACTIVE" | "INACTIVE";
  }): Promise<IotResult<IotRegistered>>;
  updateCertificate(
    id: string,
    status: "ACTIVE" | "INACTIVE" | "REVOKED",
  ): Promise<IotResult<null>>;
  describeCertificate(id: string): Promise<IotResult<{ pem: string; status: string }>>;
  /** CreateThing: AWS answers as for the first call when the Thing exists with the same configuration. */
  createThing(p: {
    name: string;
    thingType?: string;
    attributes: Record<string, string>;
  }): Promise<IotResult<{ arn: string }>>;
  describeThing(
    name: string,
  ): Promise<
    IotResult<{ arn: string; thingType: string | null; attributes: Record<string, string> }>
  >;
  attachThingPrincipal(thing: string, principal: string): Promise<IotResult<null>>;
  detachThingPrincipal(thing: string, principal: string): Promise<IotResult<null>>;
  createPolicy(name: string, document: string): Promise<IotResult<{ arn: string }>>;
  getPolicy(name: string): Promise<IotResult<{ arn: string; document: string }>>;
  attachPolicy(policy: string, target: string): Promise<IotResult<null>>;
  detachPolicy(policy: string, target: string): Promise<IotResult<null>>;
  addThingToThingGroup(group: string, thing: string): Promise<IotResult<null>>;
  /** STS GetCallerIdentity: which account the credentials belong to (changes nothing). */
  identity(): Promise<IotResult<{ account: string; arn: string }>>;
  /** Where requests go and whose credentials sign them, as resolved before any request. */
  readonly where: IotWhere;
}

export interface IotWhere {
  endpoint: string;
  /** What chose the endpoint: the target, AWS_ENDPOINT_URL_IOT, AWS_ENDPOINT_URL, a profile, or AWS's default. */
  endpointSource: string;
  /** The AWS profile whose credentials are used, or null for the default chain. */
  profile: string | null;
  region: string;
}

/** Makes the gateway for a target. */
export type IotGatewayFactory = (t: {
  region: string;
  endpoint?: string;
  awsProfile?: string;
  /**
   * The rate ceiling: awaited right before each request goes on the wire
   * (after signing), with the request's operation ("CreateThing"); what it
   * resolves to is called once the request's answer or failure is seen.
   */
  pace?: (operation: string) => Promise<() => void>;
}) => Promise<IotGateway>;

/** The file that holds a signed head (the station's file system, bounded and atomic). */
export interface HeadFile {
  readonly path: string;
  /** Its text, or null when there is none. Throws FILE_READ_FAILED when it cannot be read. */
  read(): string | null;
  /** Replaces it whole (a crash leaves the old one or the new one). Throws FILE_WRITE_FAILED. */
  write(text: string): void;
}
