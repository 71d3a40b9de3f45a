import { wellFormed, wellFormedDeep } from "./text.js";

/**
 * The tamper-evident log's hash chain. Pure: the SHA-256 step is passed in
 * (`ChainHash`), as PeculiarVentures/x509 takes its crypto, so the station
 * hashes with node's native SHA-256 (src/compose.ts) and the domain needs no
 * platform module.
 */

/**
 * The chain's hash step: SHA-256 over the 32 bytes spelled by `prevHashHex`
 * (64 lowercase hex digits) followed by `body` encoded as UTF-8, returned as
 * 64 lowercase hex digits. Must be deterministic; never throws for those inputs.
 */
export type ChainHash = (prevHashHex: string, body: string) => string;

/** How an act ended: done, refused by a rule (bad input, wrong role), or failed (a fault). */
export type Outcome = "ok" | "refused" | "failed";

/** What a caller records; the log adds sequence, time and the chain hashes. */
export interface EventInput {
  /** Who did it: a user name, `station` for the station itself, or `cli` before roles exist. */
  actor: string;
  /** What was done, dotted: `ca.create`, `token.login`, `audit.verify`... */
  action: string;
  /** What it was done to: a CA label, a token label, a serial number. */
  subject?: string | null;
  outcome: Outcome;
  /** The LinesignError code when refused or failed. */
  code?: string | null;
  /** Why, in plain words (the operator-safe message). */
  message?: string | null;
  /** Machine-readable facts; never secrets. */
  details?: Record<string, unknown>;
}

/** One entry of the tamper-evident log, as stored. */
export interface EventRecord {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  subject: string | null;
  outcome: Outcome;
  code: string | null;
  message: string | null;
  details: Record<string, unknown>;
  /** Hex SHA-256 of the previous entry (64 zeros for the first). */
  prevHash: string;
  /** Hex SHA-256 over prevHash and this entry's canonical encoding. */
  hash: string;
}

/** The hash the first entry chains from. */
export const GENESIS_HASH = "0".repeat(64);

/** Version tag inside the hashed encoding, so the encoding can change without ambiguity. */
const ENCODING_VERSION = 1;

/** JSON with object keys sorted at every level, so equal values hash equally. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(obj[k])).join(",") + "}";
}

/** The UTF-8 text an entry's hash covers (after the previous hash): a canonical JSON array. */
export function eventBody(e: Omit<EventRecord, "hash" | "prevHash">): string {
  return canonicalJson([
    ENCODING_VERSION,
    e.seq,
    e.ts,
    e.actor,
    e.action,
    e.subject,
    e.outcome,
    e.code,
    e.message,
    e.details,
  ]);
}

/** Computes an entry's hash from its predecessor's hash and its own fields. */
export function hashEvent(e: Omit<EventRecord, "hash">, hash: ChainHash): string {
  return hash(e.prevHash, eventBody(e));
}

/**
 * Builds the next entry of the chain after `head` (null for an empty log).
 * Every string is made well-formed first (a lone surrogate becomes U+FFFD):
 * one that is not cannot be stored as UTF-8 and would read back as other
 * text than was hashed. Boundaries refuse such text; this is the last guard.
 */
export function chainEvent(
  input: EventInput,
  head: { seq: number; hash: string } | null,
  ts: string,
  hash: ChainHash,
): EventRecord {
  const text = (v: string | null | undefined) => (v == null ? null : wellFormed(v));
  const draft: Omit<EventRecord, "hash"> = {
    seq: head ? head.seq + 1 : 1,
    ts,
    actor: wellFormed(input.actor),
    action: wellFormed(input.action),
    subject: text(input.subject),
    outcome: input.outcome,
    code: text(input.code),
    message: text(input.message),
    details: (wellFormedDeep(input.details ?? {}) as Record<string, unknown>) ?? {},
    prevHash: head ? head.hash : GENESIS_HASH,
  };
  return { ...draft, hash: hashEvent(draft, hash) };
}

export type ChainBreak =
  | { kind: "sequence"; seq: number; expected: number }
  | { kind: "link"; seq: number }
  | { kind: "hash"; seq: number };

/** Where a ChainWalker begins: see its constructor. */
export type ChainStart = null | "range" | { seq: number; hash: string; count: number };

export type ChainVerdict =
  | { ok: true; count: number; head: { seq: number; hash: string } | null }
  | { ok: false; count: number; firstBad: ChainBreak };

/**
 * An entry as the store holds it, in this column order, with `details` as the
 * JSON text the store wrote, and last the store's own position for it (a page
 * of the walk starts after the last position of the previous page). A tuple
 * rather than an object: verifying a year's log reads a million of them.
 */
export type StoredEvent = readonly [
  seq: number,
  ts: string,
  actor: string,
  action: string,
  subject: string | null,
  outcome: string,
  code: string | null,
  message: string | null,
  details: string,
  prevHash: string,
  hash: string,
  position: number,
];

/**
 * An entry as a store encodes it for the walk: `body` is the hashed array
 * built by the store from the stored columns exactly as storedBody() below
 * builds it (each text column as a JSON string literal, details as stored),
 * so verifying reads one string per entry instead of nine. Last, as in
 * StoredEvent, the store's position for it.
 */
export type EncodedEvent = readonly [
  seq: number,
  prevHash: string,
  hash: string,
  body: string | null,
  position: number,
];

/**
 * The text a store writes for an entry's details: the canonical JSON that
 * the entry's hash covers, so verifying needs no decoding (see ChainWalker).
 */
export function storedDetails(details: Record<string, unknown>): string {
  return canonicalJson(details);
}

const S = JSON.stringify;

/**
 * The hashed body built straight from the stored columns, details as stored.
 * Equal to eventBody() exactly when the stored details text is canonical.
 */
export function storedBody(e: StoredEvent): string {
  return (
    "[" +
    ENCODING_VERSION +
    "," +
    e[0] +
    "," +
    S(e[1]) +
    "," +
    S(e[2]) +
    "," +
    S(e[3]) +
    "," +
    S(e[4]) +
    "," +
    S(e[5]) +
    "," +
    S(e[6]) +
    "," +
    S(e[7]) +
    "," +
    e[8] +
    "]"
  );
}

/**
 * Walks the log in stored order, one entry at a time (so a caller can stream
 * it in pages with flat memory), and keeps the first entry that breaks the
 * chain: a sequence gap or reordering, a prevHash that does not match the
 * entry before, or a hash that does not match the entry's own content.
 *
 * A stored entry is checked with one hash over its columns as stored: the
 * station writes details as canonical JSON, so the stored text is the text
 * that was hashed, and a matching hash means the stored bytes are the hashed
 * bytes (the encoded array has exactly ten values, so no column can borrow
 * from another). Details stored in any other form (entries written before
 * details were stored canonically) are decoded and re-encoded canonically;
 * the walker tries that form first while consecutive entries need it.
 */
export class ChainWalker {
  private prev: { seq: number; hash: string } | null = null;
  private broken: ChainBreak | null = null;
  private checked = 0;
  private reencode = false;
  private readonly range: boolean;
  private firstSeen: { seq: number; prevHash: string } | null = null;

  /**
   * @param start where the walk begins: the log's first entry (the default);
   *   `"range"`, a part of the log whose first entry is taken where it stands
   *   (its sequence and prevHash are checked where the parts join, see
   *   joinRangeWalks); or after an entry already checked, with the count of
   *   entries checked up to it.
   */
  constructor(
    private readonly hash: ChainHash,
    start: ChainStart = null,
  ) {
    this.range = start === "range";
    if (start !== null && start !== "range") {
      this.prev = { seq: start.seq, hash: start.hash };
      this.checked = start.count;
    }
  }

  /** The first entry met (its sequence and prevHash), whether or not it chained. */
  get first(): { seq: number; prevHash: string } | null {
    return this.firstSeen;
  }

  /** Entries that chained correctly so far. */
  get count(): number {
    return this.checked;
  }

  /** The last entry that chained correctly. */
  get head(): { seq: number; hash: string } | null {
    return this.prev;
  }

  /**
   * Checks the next entry as the store encoded it: one hash settles an entry
   * whose body matches; any other is read in full (`full(position)`) and
   * checked as stored() does. False once the chain is broken.
   */
  encoded(e: EncodedEvent, full: (position: number) => StoredEvent | null): boolean {
    if (this.broken || !this.linked(e[0], e[1])) return false;
    if (typeof e[3] === "string" && this.hash(e[1], e[3]) === e[2]) {
      this.reencode = false;
      this.accept(e[0], e[2]);
      return true;
    }
    const row = full(e[4]);
    if (!row || row[0] !== e[0] || row[9] !== e[1] || row[10] !== e[2]) {
      this.broken = { kind: "hash", seq: e[0] };
      return false;
    }
    return this.checkStored(row);
  }

  /** Checks the next entry as stored; false once the chain is broken (later entries are not checked). */
  stored(e: StoredEvent): boolean {
    if (this.broken || !this.linked(e[0], e[9])) return false;
    return this.checkStored(e);
  }

  private checkStored(e: StoredEvent): boolean {
    let ok: boolean;
    if (!this.reencode) {
      ok = this.hash(e[9], storedBody(e)) === e[10];
      if (!ok && this.reencoded(e) === "matches") ok = this.reencode = true;
    } else {
      const r = this.reencoded(e);
      ok = r !== "differs" || this.hash(e[9], storedBody(e)) === e[10];
      // Canonical text again (entries written since the station stored details canonically).
      if (r === "matches, stored canonically") this.reencode = false;
    }
    if (!ok) {
      this.broken = { kind: "hash", seq: e[0] };
      return false;
    }
    this.accept(e[0], e[10]);
    return true;
  }

  /** Checks the next entry in decoded form (an export's events); false once the chain is broken. */
  record(e: EventRecord): boolean {
    if (this.broken || !this.linked(e.seq, e.prevHash)) return false;
    if (hashEvent(e, this.hash) !== e.hash) {
      this.broken = { kind: "hash", seq: e.seq };
      return false;
    }
    this.accept(e.seq, e.hash);
    return true;
  }

  verdict(): ChainVerdict {
    return this.broken
      ? { ok: false, count: this.checked, firstBad: this.broken }
      : { ok: true, count: this.checked, head: this.prev };
  }

  private linked(seq: number, prevHash: string): boolean {
    if (this.firstSeen === null) {
      this.firstSeen = { seq, prevHash };
      // A range's first entry: its place is checked where the ranges join.
      if (this.range) return true;
    }
    const expected = this.prev ? this.prev.seq + 1 : 1;
    if (seq !== expected) {
      this.broken = { kind: "sequence", seq, expected };
      return false;
    }
    if (prevHash !== (this.prev ? this.prev.hash : GENESIS_HASH)) {
      this.broken = { kind: "link", seq };
      return false;
    }
    return true;
  }

  private accept(seq: number, hash: string): void {
    this.checked++;
    this.prev = { seq, hash };
  }

  /** Whether the hash over the canonical re-encoding of the stored details matches. */
  private reencoded(e: StoredEvent): "matches" | "matches, stored canonically" | "differs" {
    let details: Record<string, unknown>;
    try {
      details = JSON.parse(e[8]) as Record<string, unknown>;
    } catch {
      return "differs";
    }
    const text = canonicalJson(details);
    const body = storedBody([
      e[0],
      e[1],
      e[2],
      e[3],
      e[4],
      e[5],
      e[6],
      e[7],
      text,
      e[9],
      e[10],
      e[11],
    ]);
    if (this.hash(e[9], body) !== e[10]) return "differs";
    return text === e[8] ? "matches, stored canonically" : "matches";
  }

  /** Whether the next entry is better read in full (details stored in another form): see encoded(). */
  get wantsColumns(): boolean {
    return this.reencode;
  }
}

/**
 * What a walk over one range of the log found (a ChainWalker started with
 * `"range"`): the entries that chained, the first entry met and the last that
 * chained, the hash of each entry met at a checkpoint's sequence (in order),
 * and the first break inside the range.
 */
export interface RangeWalk {
  count: number;
  first: { seq: number; prevHash: string } | null;
  last: { seq: number; hash: string } | null;
  atCheckpoints: [seq: number, hash: string][];
  firstBad: ChainBreak | null;
}

/**
 * Joins the walks of consecutive ranges of the log (in stored order) into the
 * verdict one walk over all of them gives: each range's first entry must
 * follow the last entry of the ranges before it (its sequence, then its
 * prevHash, as ChainWalker checks them), and the first break, in a range or
 * where two join, ends the walk. Hashes at checkpoints count up to the break.
 */
export function joinRangeWalks(walks: readonly RangeWalk[]): {
  verdict: ChainVerdict;
  atCheckpoints: [seq: number, hash: string][];
} {
  let prev: { seq: number; hash: string } | null = null;
  let count = 0;
  const atCheckpoints: [number, string][] = [];
  const broken = (firstBad: ChainBreak) => ({
    verdict: { ok: false as const, count, firstBad },
    atCheckpoints,
  });
  for (const w of walks) {
    if (w.first === null) continue; // an empty range
    const expected: number = prev ? prev.seq + 1 : 1;
    if (w.first.seq !== expected) return broken({ kind: "sequence", seq: w.first.seq, expected });
    if (w.first.prevHash !== (prev ? prev.hash : GENESIS_HASH))
      return broken({ kind: "link", seq: w.first.seq });
    count += w.count;
    atCheckpoints.push(...w.atCheckpoints);
    if (w.firstBad) return broken(w.firstBad);
    prev = w.last;
  }
  return { verdict: { ok: true, count, head: prev }, atCheckpoints };
}

/**
 * Walks decoded entries in the given order and reports the first that breaks
 * the chain (see ChainWalker).
 */
export function verifyChain(entries: Iterable<EventRecord>, hash: ChainHash): ChainVerdict {
  const walker = new ChainWalker(hash);
  for (const e of entries) if (!walker.record(e)) break;
  return walker.verdict();
}

/** Plain words for a chain break, naming the entry. */
export function describeBreak(b: ChainBreak): string {
  switch (b.kind) {
    case "sequence":
      return `entry ${b.seq} stands where entry ${b.expected} should: entries were deleted or reordered`;
    case "link":
      return `entry ${b.seq} does not link to the entry before it: an earlier entry was changed, removed or reordered`;
    case "hash":
      return `entry ${b.seq} was changed after it was written (its content no longer matches its hash)`;
    default: {
      const never: never = b;
      return String(never);
    }
  }
}
