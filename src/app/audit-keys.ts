/**
 * The chain of audit keys. A station's checkpoints are signed by its audit
 * key, which lives in its token; when the token dies, a new audit key is
 * introduced by one log entry (`audit.key.rollover`) carrying the new key's
 * public key, the log head it follows, the new key's own signature over the
 * rollover (it holds the key), and one endorsement:
 *
 * - "previous-key": the old audit key's signature over the same rollover
 *   message, when the old key is still available (another token);
 * - "ceremony": an officer's recorded act (the entry's actor, an officer
 *   added earlier in the log) and the offline root's signature on a new
 *   station certificate for the new key, as the station certificate is issued
 *   in the key ceremony.
 *
 * Verification (on the station and for an export elsewhere) follows the
 * chain: the first key is the one that signed the first checkpoint; each
 * rollover must name the key in force as its previous key and carry a valid
 * endorsement; each checkpoint verifies against the key in force at its
 * sequence (the new key from the rollover entry on).
 */
import { createHash } from "node:crypto";
import type { EventRecord } from "../domain/event-log.js";
import { isLinesignError } from "../domain/errors.js";
import { checkChain } from "./pki/certificates.js";
import { x509 } from "./pki/x509.js";

/** The action of the entry that introduces a new audit key. */
export const ROLLOVER_ACTION = "audit.key.rollover";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The exact bytes both keys sign for a rollover that follows entry `after`. */
export function rolloverMessage(
  station: string,
  after: { seq: number; hash: string },
  previousSpki: Uint8Array,
  newSpki: Uint8Array,
): Uint8Array {
  return new TextEncoder().encode(
    `linesign-audit-rollover/1\nstation=${station}\nafter=${after.seq}:${after.hash}\n` +
      `previous=${sha(previousSpki)}\nnew=${sha(newSpki)}\n`,
  );
}

export type RolloverEndorsement =
  | { by: "previous-key"; signature: string }
  | { by: "ceremony"; officer: string; root: string; rootFingerprint: string; stationCert: string };

/** What a rollover entry's details carry (base64 for keys and signatures). */
export interface RolloverDetails {
  previousSpki: string;
  newSpki: string;
  after: { seq: number; hash: string };
  newKeySignature: string;
  endorsement: RolloverEndorsement;
}

/** A period of the chain: `spki` signs the checkpoints from entry `fromSeq` on. */
export interface KeyPeriod {
  fromSeq: number;
  spki: string;
  /** The rollover that introduced it (null for the first key). */
  via: RolloverEndorsement["by"] | null;
}

export interface KeyChainInput {
  station: string;
  /** The rollover entries, in sequence order (their chain already checked). */
  rollovers: EventRecord[];
  /** The first checkpoint's key (base64 DER SPKI), or null when there is none. */
  firstCheckpointSpki: string | null;
  firstCheckpointSeq: number | null;
  /** The entry at `seq`, for the head a rollover follows and the officer's addition. */
  eventAt: (seq: number) => EventRecord | null;
  /** Whether `actor` was added as an officer before entry `beforeSeq`. */
  isOfficer: (actor: string, beforeSeq: number) => boolean;
  /** The root certificate (DER) recorded under `label`, or null. */
  rootCert: (label: string) => Uint8Array | null;
  /** A root the auditor pins (--root): a ceremony's certificate must chain to it. */
  pinnedRoot?: Uint8Array;
  verify: (spki: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean>;
}

export interface KeyChain {
  periods: KeyPeriod[];
  /** The first rollover that does not hold, in words, with its entry. */
  problem: { seq: number; why: string } | null;
}

/** The key in force at entry `seq` (base64 SPKI), or null before any. */
export function keyAt(periods: KeyPeriod[], seq: number): string | null {
  let key: string | null = null;
  for (const p of periods) if (p.fromSeq <= seq) key = p.spki;
  return key;
}

function detailsOf(e: EventRecord): RolloverDetails | null {
  const d = e.details as Partial<RolloverDetails>;
  const str = (v: unknown) => typeof v === "string" && v.length > 0 && v.length < 16_384;
  if (!str(d.previousSpki) || !str(d.newSpki) || !str(d.newKeySignature)) return null;
  if (!d.after || typeof d.after.seq !== "number" || typeof d.after.hash !== "string") return null;
  const en = d.endorsement as Partial<Record<string, unknown>> | undefined;
  if (en?.by === "previous-key" && str(en.signature)) return d as RolloverDetails;
  if (
    en?.by === "ceremony" &&
    str(en.officer) &&
    str(en.root) &&
    str(en.rootFingerprint) &&
    str(en.stationCert)
  )
    return d as RolloverDetails;
  return null;
}

/**
 * Follows the chain of audit keys through the log's rollover entries.
 * Never throws: a rollover that does not hold is the chain's `problem`.
 */
export async function auditKeyChain(input: KeyChainInput): Promise<KeyChain> {
  const ok = input.rollovers.filter((e) => e.outcome === "ok");
  const firstRollover = ok[0];
  const first =
    input.firstCheckpointSpki !== null &&
    (firstRollover === undefined || (input.firstCheckpointSeq ?? 0) < firstRollover.seq)
      ? input.firstCheckpointSpki
      : ((firstRollover?.details as { previousSpki?: unknown } | undefined)?.previousSpki ?? null);
  const periods: KeyPeriod[] =
    typeof first === "string" ? [{ fromSeq: 1, spki: first, via: null }] : [];
  for (const e of ok) {
    const bad = (why: string): KeyChain => ({
      periods,
      problem: { seq: e.seq, why: `the audit-key rollover at entry ${e.seq} ${why}` },
    });
    const d = detailsOf(e);
    if (!d) return bad("does not say which keys and endorsement it carries");
    const inForce = keyAt(periods, e.seq);
    if (d.previousSpki !== inForce)
      return bad("names a previous key that is not the audit key in force");
    const before = input.eventAt(e.seq - 1);
    if (d.after.seq !== e.seq - 1 || !before || before.hash !== d.after.hash)
      return bad(
        "was not made for its place in the log (the head it names is not the entry before it)",
      );
    const message = rolloverMessage(
      input.station,
      d.after,
      unb64(d.previousSpki),
      unb64(d.newSpki),
    );
    if (!(await input.verify(unb64(d.newSpki), message, unb64(d.newKeySignature))))
      return bad("is not signed by the new key it introduces");
    const en = d.endorsement;
    if (en.by === "previous-key") {
      if (!(await input.verify(unb64(d.previousSpki), message, unb64(en.signature))))
        return bad("is not signed by the previous audit key");
    } else {
      if (en.officer !== e.actor || !input.isOfficer(e.actor, e.seq))
        return bad(`was not made by an officer of the station ("${e.actor}")`);
      const why = await ceremonyProblem(en, d.newSpki, input);
      if (why) return bad(why);
    }
    periods.push({ fromSeq: e.seq, spki: d.newSpki, via: en.by });
  }
  return { periods, problem: null };
}

/** Why a ceremony's station certificate does not introduce the new key, or null when it does. */
async function ceremonyProblem(
  en: Extract<RolloverEndorsement, { by: "ceremony" }>,
  newSpki: string,
  input: KeyChainInput,
): Promise<string | null> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(en.stationCert);
  } catch {
    return "carries a station certificate that cannot be read";
  }
  if (b64(new Uint8Array(cert.publicKey.rawData)) !== newSpki)
    return "carries a station certificate for another key than the new one";
  const rootDer = input.rootCert(en.root);
  if (!rootDer) return `names root "${en.root}", whose certificate is not known here`;
  if (sha(rootDer) !== en.rootFingerprint)
    return `names root "${en.root}" with another fingerprint than its certificate's`;
  if (input.pinnedRoot && sha(input.pinnedRoot) !== en.rootFingerprint)
    return "was endorsed by another root than the trusted one (--root)";
  try {
    await checkChain(cert, [new x509.X509Certificate(rootDer)]);
  } catch (e) {
    return `carries a station certificate the root "${en.root}" did not issue (${isLinesignError(e) ? e.message.replace(/\.$/, "") : "unreadable"})`;
  }
  return null;
}
