/**
 * The interfaces through which use cases reach the world. Adapters implement
 * them; src/compose.ts picks which. Nothing here knows a driver.
 */
import type { EventInput, EventRecord } from "./event-log.js";
import type { KeyType } from "./keys.js";

/** A token seen through the PKCS#11 module. */
export interface TokenInfo {
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
}

/** A key pair that lives in a token (or, for development only, in a file). */
export interface KeyInfo {
  /** RFC 7512 URI for token keys; `file:` URL for development software keys. */
  uri: string;
  keyType: KeyType;
  /** DER SubjectPublicKeyInfo of the public half. */
  spki: Uint8Array;
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
 * Called around every user login. `beforeLogin` throws HSM_PIN_LOCKED when the
 * station has stopped presenting PINs to the token.
 */
export interface LoginGuard {
  beforeLogin(tokenLabel: string): void;
  loginFailed(tokenLabel: string): void;
  loginSucceeded(tokenLabel: string): void;
}

/** The station's PKCS#11 token(s). PINs come from the PIN source given at construction. */
export interface KeyStore {
  /** Tokens present, by label. Throws HSM_MODULE_* when the module cannot be used. */
  listTokens(): TokenInfo[];
  /** Generates a non-extractable signing key pair in the token. Throws CA_LABEL_EXISTS if the label is taken. */
  generateKeyPair(tokenLabel: string, label: string, keyType: KeyType): Promise<KeyInfo>;
  /** Finds a key by its URI; null when the token has no such key. */
  findKey(uri: string): Promise<KeyInfo | null>;
  /** A signer for the private key at `uri`. Throws HSM_KEY_NOT_FOUND. */
  signer(uri: string): Promise<Signer>;
  /** Ends sessions and finalises the module. */
  close(): void;
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
  officerReset(tokenLabel: string, soPin: string, newUserPin?: string): void;
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
}

/** The station database: the tamper-evident log and the station's records. */
export interface StationStore {
  /** Appends one entry to the log (inside the current transaction, if any). */
  appendEvent(input: EventInput): EventRecord;
  /** All entries in sequence order. */
  events(): Iterable<EventRecord>;
  head(): { seq: number; hash: string } | null;
  getCa(label: string): CaRecord | null;
  listCas(): CaRecord[];
  insertCa(ca: CaRecord): void;
  updateCa(label: string, patch: Partial<Omit<CaRecord, "label">>): void;
  pinGuard(token: string): PinGuardState;
  setPinGuard(token: string, state: PinGuardState): void;
  /** Runs `fn` in one durable transaction: all of it is committed, or none. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

/** Where the time comes from (tests may fix it). */
export interface Clock {
  now(): Date;
}
