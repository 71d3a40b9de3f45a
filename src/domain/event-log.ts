import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { wellFormed, wellFormedDeep } from "./text.js";

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

/** Computes an entry's hash from its predecessor's hash and its own fields. */
export function hashEvent(e: Omit<EventRecord, "hash">): string {
  const body = canonicalJson([
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
  const prev = hexToBytes(e.prevHash);
  const encoded = utf8ToBytes(body);
  const buf = new Uint8Array(prev.length + encoded.length);
  buf.set(prev, 0);
  buf.set(encoded, prev.length);
  return bytesToHex(sha256(buf));
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
  return { ...draft, hash: hashEvent(draft) };
}

export type ChainBreak =
  | { kind: "sequence"; seq: number; expected: number }
  | { kind: "link"; seq: number }
  | { kind: "hash"; seq: number };

export type ChainVerdict =
  | { ok: true; count: number; head: { seq: number; hash: string } | null }
  | { ok: false; count: number; firstBad: ChainBreak };

/**
 * Walks the log in stored order and reports the first entry that breaks the
 * chain: a sequence gap or reordering, a prevHash that does not match the
 * entry before, or a hash that does not match the entry's own content.
 */
export function verifyChain(entries: Iterable<EventRecord>): ChainVerdict {
  let count = 0;
  let prev: { seq: number; hash: string } | null = null;
  for (const e of entries) {
    const expectedSeq: number = prev ? prev.seq + 1 : 1;
    if (e.seq !== expectedSeq) {
      return {
        ok: false,
        count,
        firstBad: { kind: "sequence", seq: e.seq, expected: expectedSeq },
      };
    }
    if (e.prevHash !== (prev ? prev.hash : GENESIS_HASH)) {
      return { ok: false, count, firstBad: { kind: "link", seq: e.seq } };
    }
    if (hashEvent(e) !== e.hash) {
      return { ok: false, count, firstBad: { kind: "hash", seq: e.seq } };
    }
    count++;
    prev = { seq: e.seq, hash: e.hash };
  }
  return { ok: true, count, head: prev };
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
