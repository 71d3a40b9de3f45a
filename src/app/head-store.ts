/**
 * Where the log head is kept, apart from the database it binds.
 *
 * - "data-object": a private CKO_DATA object on the token (a register the
 *   station rewrites by label). The token is the one place a rollback of the
 *   station's disk cannot reach, so this catches every truncation and every
 *   older database put back, however it was put back.
 * - "signed-head": for tokens that keep no data objects (YubiHSM ignores
 *   CKA_APPLICATION and refuses private data objects; CloudHSM keeps key
 *   objects only). The head (station, sequence, hash) is signed by the audit
 *   key in the token and written to a file outside the database (by default
 *   beside it in the home, or on other media with audit.headFile). Without
 *   the token's audit key nobody can write a head the station accepts, and
 *   a head file older than the database's own signed checkpoints is named as
 *   stale. What it cannot see: the database and the head file rolled back
 *   together (a disk image or a whole home put back), because an older head
 *   file carries a genuine signature too. hsm/README.md says what narrows it.
 */
import type { HEAD_STORE_KINDS } from "../domain/config.js";
import { LinesignError } from "../domain/errors.js";
import type { HeadFile, Signer } from "../domain/ports.js";
import type { AppContext } from "./context.js";

/** Label of the token data object that holds the log head. */
export const HEAD_OBJECT_LABEL = "linesign-log-head";

/**
 * Name of the public register that holds the auditor's copy of the head: a
 * public data object (CKA_PRIVATE false) read without the user PIN, its value
 * the head with the audit key's signature over publicHeadMessage.
 */
export const PUBLIC_HEAD_NAME = "linesign-log-head-public";

/** The two places a station keeps its log head. */
export type HeadStoreKind = (typeof HEAD_STORE_KINDS)[number];

/** The head as the store keeps it. */
export interface TokenHead {
  station: string;
  seq: number;
  hash: string;
  ts: string;
}

/** Keeps the log head where a rollback of the database does not carry it along. */
export interface HeadStore {
  readonly kind: HeadStoreKind;
  /** Where the head is kept, in words (for status and messages). */
  readonly where: string;
  /**
   * The stored head, or null when none was ever written.
   * @throws LinesignError AUDIT_CHAIN_BROKEN when what is stored is unreadable or not genuine
   */
  read(): Promise<TokenHead | null>;
  /**
   * Stores `head` (the caller keeps it forward only). Throws the store's own errors.
   * `publish`: also bring the copy readers without the PIN see up to it now
   * (a checkpoint, a loss accepted, a rollover, the end of a command).
   */
  write(head: TokenHead, opts?: { publish?: boolean }): Promise<void>;
  /** Brings the copy readers without the PIN see up to `head`, when it lags (no-op otherwise). */
  publish(head: TokenHead): Promise<void>;
  /**
   * The head as a reader without the user PIN sees it (an auditor), its
   * signature checked against `trusted` (the audit key the log trusts, never
   * the token's say-so); null when the store keeps no such copy.
   * @throws LinesignError AUDIT_CHAIN_BROKEN (not genuine, unreadable),
   *   AUDIT_INCOMPLETE (no key to check it against), HSM_* (token absent)
   */
  readPublic(trusted: Uint8Array | null): Promise<PublicHead | null>;
  /** Where readers without the PIN find the head, in words. */
  readonly publicWhere: string;
  /** In how many ms a lagging public copy may be written (null: it does not lag, or none is kept). */
  publicDueInMs(): number | null;
}

/** A head read without the user PIN, with where it came from and whether its time is signed. */
export interface PublicHead extends TokenHead {
  source: "public-object" | "head-file";
  /** True when `ts` is covered by the signature (the public object's); false for the head file. */
  tsSigned: boolean;
}

/**
 * The exact bytes the audit key signs for the public copy of the head: its
 * own domain (neither a checkpoint's nor the head file's), and the time it
 * was written, so a reader can say how recent it is and an older copy put
 * back shows its own older time.
 */
export function publicHeadMessage(
  station: string,
  seq: number,
  hash: string,
  ts: string,
): Uint8Array {
  return new TextEncoder().encode(
    `linesign-public-head/1\nstation=${station}\nseq=${seq}\nhash=${hash}\nts=${ts}\n`,
  );
}

type VerifyFn = (spki: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean>;

/** How the data-object store keeps the public copy of the head. */
export interface PublicCopyOptions {
  /** The audit key, when the token holds the one the log trusts (never made here); null: none yet. */
  signer: () => Promise<Signer | null>;
  verify: VerifyFn;
  /**
   * At most one public copy per this many ms on the issuance path's head
   * moves (0: every move); checkpoints, losses accepted, rollovers and the
   * end of every command publish at once.
   */
  everyMs: number;
  now: () => number;
}

const SIGNATURE_B64 = /^[A-Za-z0-9+/]{1,2048}={0,2}$/;

/** The exact bytes the audit key signs for a head kept outside the token (not a checkpoint's). */
export function signedHeadMessage(station: string, seq: number, hash: string): Uint8Array {
  return new TextEncoder().encode(
    `linesign-head/1\nstation=${station}\nseq=${seq}\nhash=${hash}\n`,
  );
}

/** A head as JSON, or null when `v` is not one. */
export function asHead(v: unknown): TokenHead | null {
  if (
    v &&
    typeof v === "object" &&
    typeof (v as TokenHead).station === "string" &&
    Number.isSafeInteger((v as TokenHead).seq) &&
    (v as TokenHead).seq > 0 &&
    typeof (v as TokenHead).hash === "string" &&
    /^[0-9a-f]{64}$/.test((v as TokenHead).hash) &&
    typeof (v as TokenHead).ts === "string"
  )
    return v as TokenHead;
  return null;
}

function parseHead(bytes: Uint8Array): TokenHead | null {
  try {
    return asHead(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as unknown);
  } catch {
    return null;
  }
}

/** The head in a private data object of the station's token. */
export class DataObjectHeadStore implements HeadStore {
  readonly kind = "data-object" as const;
  /** The public copy this process last wrote (seq), and when. */
  private published: { seq: number; at: number } | null = null;
  /** When the public copy was last tried (written or not), for its pace. */
  private triedAt: number | null = null;
  /** Set while the public copy cannot be written (logged once, not per move). */
  private publicFailing = false;
  /** The private head this process last wrote (seq). */
  private written = 0;

  /** @param publicCopy how the auditor's copy is kept; without it, none is written. */
  constructor(
    private readonly ctx: AppContext,
    private readonly publicCopy: PublicCopyOptions | null = null,
  ) {}

  get where(): string {
    return `a private data object "${HEAD_OBJECT_LABEL}" on token "${this.ctx.tokenLabel}"`;
  }

  get publicWhere(): string {
    return `the public data object "${PUBLIC_HEAD_NAME}" on token "${this.ctx.tokenLabel}", signed by the audit key`;
  }

  async read(): Promise<TokenHead | null> {
    const data = this.ctx.tokenData();
    const enc = new TextEncoder();
    const values: Uint8Array[] = [
      ...(await data.readRegister(this.ctx.tokenLabel, HEAD_OBJECT_LABEL))
        .filter((v) => v !== "")
        .map((v) => enc.encode(v)),
      // A station made before the head became a register kept it in a data object's value.
      ...(await data.readData(this.ctx.tokenLabel, HEAD_OBJECT_LABEL)),
    ];
    let best: TokenHead | null = null;
    let unreadable = 0;
    for (const bytes of values) {
      const head = parseHead(bytes);
      if (!head) unreadable++;
      else if (!best || head.seq > best.seq) best = head;
    }
    // The register keeps the previous head beside the newest, so a write the token
    // failed to store leaves a readable one; none readable is a fault.
    if (!best && unreadable > 0)
      throw new LinesignError(
        "AUDIT_CHAIN_BROKEN",
        "The log head stored in the token is unreadable.",
        { details: { objects: values.length } },
      );
    return best;
  }

  async write(head: TokenHead, opts: { publish?: boolean } = {}): Promise<void> {
    const text = JSON.stringify(head);
    try {
      await this.ctx.tokenData().writeRegister(this.ctx.tokenLabel, HEAD_OBJECT_LABEL, text);
    } catch (first) {
      // A register the token will not rewrite now: keep the head in a new data object
      // instead (slower, made before the old one goes); the reader takes the highest.
      this.ctx.logger.warn({ err: first }, "the log head register could not be written");
      await this.ctx
        .tokenData()
        .writeData(this.ctx.tokenLabel, HEAD_OBJECT_LABEL, new TextEncoder().encode(text));
    }
    this.written = head.seq;
    // The private head binds; the public copy follows it, in the same session.
    const pc = this.publicCopy;
    // Paced on tries, not successes: a copy that cannot be written costs a head move no more often.
    if (pc && (opts.publish || this.triedAt === null || pc.now() - this.triedAt >= pc.everyMs))
      await this.writePublic(head);
  }

  async publish(head: TokenHead): Promise<void> {
    if (this.publicCopy && (!this.published || this.published.seq < head.seq))
      await this.writePublic(head);
  }

  publicDueInMs(): number | null {
    const pc = this.publicCopy;
    if (!pc || !this.published || this.published.seq >= this.written) return null;
    return Math.max(0, this.published.at + pc.everyMs - pc.now());
  }

  /**
   * Writes the auditor's copy. Never fails the head move: the private head is
   * what binds the station; a copy that cannot be written is logged once and
   * shows to the auditor as missing or old (with its signed time).
   */
  private async writePublic(head: TokenHead): Promise<void> {
    const pc = this.publicCopy!;
    this.triedAt = pc.now();
    try {
      const signer = await pc.signer();
      if (!signer) return; // no audit key yet (made at the first checkpoint)
      const signature = await signer.sign(
        publicHeadMessage(head.station, head.seq, head.hash, head.ts),
      );
      const value: SignedPublicHead = {
        format: "linesign-public-head/1",
        ...head,
        signature: Buffer.from(signature).toString("base64"),
      };
      await this.ctx
        .tokenData()
        .writeRegister(this.ctx.tokenLabel, PUBLIC_HEAD_NAME, JSON.stringify(value), {
          public: true,
        });
      this.published = { seq: head.seq, at: pc.now() };
      if (this.publicFailing) {
        this.publicFailing = false;
        this.ctx.logger.info({ seq: head.seq }, "the public copy of the log head is written again");
      }
    } catch (err) {
      if (!this.publicFailing)
        this.ctx.logger.warn(
          { err, seq: head.seq },
          "the public copy of the log head (for auditors without the PIN) could not be written; the private head still binds",
        );
      this.publicFailing = true;
    }
  }

  async readPublic(trusted: Uint8Array | null): Promise<PublicHead | null> {
    const values = (
      await this.ctx.tokenData().readPublicRegister(this.ctx.tokenLabel, PUBLIC_HEAD_NAME)
    ).filter((v) => v !== "");
    if (values.length === 0) return null;
    const broken = (why: string): LinesignError =>
      new LinesignError(
        "AUDIT_CHAIN_BROKEN",
        `The public copy of the log head on token "${this.ctx.tokenLabel}" ${why}. Anyone holding the token can rewrite a public object; ` +
          'the station writes it again at its next signed command. Compare the private head with the user PIN (a security officer\'s "linesign audit verify").',
        { details: { token: this.ctx.tokenLabel, object: PUBLIC_HEAD_NAME } },
      );
    if (!trusted)
      throw new LinesignError(
        "AUDIT_INCOMPLETE",
        `The public copy of the log head on token "${this.ctx.tokenLabel}" cannot be checked: the database holds no signed checkpoint, so no audit key is on record to check its signature against.`,
        { details: { token: this.ctx.tokenLabel } },
      );
    let best: PublicHead | null = null;
    for (const text of values) {
      const { head, sig } = signedHeadOf(text, "linesign-public-head/1", broken);
      const ok = await this.publicCopy!.verify(
        trusted,
        publicHeadMessage(head.station, head.seq, head.hash, head.ts),
        Buffer.from(sig, "base64"),
      );
      if (!ok)
        throw broken(
          `(entry ${head.seq}) does not carry a valid signature of the audit key this station's log trusts: it was altered or forged`,
        );
      if (!best || head.seq > best.seq)
        best = {
          station: head.station,
          seq: head.seq,
          hash: head.hash,
          ts: head.ts,
          source: "public-object",
          tsSigned: true,
        };
    }
    return best;
  }
}

/**
 * The head and the signature of a signed head's JSON (`format`: the file's or
 * the token's public copy); anything else is `broken`.
 */
function signedHeadOf(
  text: string,
  format: SignedHeadFile["format"] | SignedPublicHead["format"],
  broken: (why: string) => LinesignError,
): { head: TokenHead; sig: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw broken("is not a readable head");
  }
  const head = asHead(parsed);
  const sig = (parsed as { signature?: unknown } | null)?.signature;
  if (
    !head ||
    (parsed as { format?: unknown }).format !== format ||
    typeof sig !== "string" ||
    !SIGNATURE_B64.test(sig)
  )
    throw broken("is not a readable head");
  return { head, sig };
}

interface SignedPublicHead extends TokenHead {
  format: "linesign-public-head/1";
  /** The audit key's signature over publicHeadMessage(station, seq, hash, ts), base64. */
  signature: string;
}

interface SignedHeadFile extends TokenHead {
  format: "linesign-head/1";
  /** The audit key's signature over signedHeadMessage(station, seq, hash), base64. */
  signature: string;
}

/** The head signed by the token's audit key, in a file outside the database. */
export class SignedHeadStore implements HeadStore {
  readonly kind = "signed-head" as const;

  /**
   * @param file the head file (outside the database; best on other media than the database).
   * @param signer the audit key (made on first use).
   * @param auditSpki the audit key's public half as the token holds it (null when there is none).
   * @param verify checks an audit key signature.
   */
  constructor(
    private readonly file: HeadFile,
    private readonly signer: () => Promise<Signer>,
    private readonly auditSpki: () => Promise<Uint8Array | null>,
    private readonly verify: (
      spki: Uint8Array,
      message: Uint8Array,
      signature: Uint8Array,
    ) => Promise<boolean>,
  ) {}

  get where(): string {
    return `the file ${this.file.path}, signed by the token's audit key`;
  }

  get publicWhere(): string {
    return `the file ${this.file.path}, signed by the audit key`;
  }

  /** The head file is readable without the PIN already, and signed. */
  publish(): Promise<void> {
    return Promise.resolve();
  }

  publicDueInMs(): null {
    return null;
  }

  async readPublic(trusted: Uint8Array | null): Promise<PublicHead | null> {
    const head = await this.readWith(async () => {
      if (!trusted)
        throw new LinesignError(
          "AUDIT_INCOMPLETE",
          `The log head file ${this.file.path} cannot be checked: the database holds no signed checkpoint, so no audit key is on record to check its signature against.`,
          { details: { path: this.file.path } },
        );
      return trusted;
    }, "the audit key this station's log trusts");
    return head ? { ...head, source: "head-file", tsSigned: false } : null;
  }

  read(): Promise<TokenHead | null> {
    return this.readWith(async () => {
      const spki = await this.auditSpki();
      if (!spki)
        throw this.broken("is signed, but the token holds no audit key to check it against");
      return spki;
    }, "the token's audit key");
  }

  private broken(why: string): LinesignError {
    return new LinesignError(
      "AUDIT_CHAIN_BROKEN",
      `The log head file ${this.file.path} ${why}. Put back the station's own head file, or have a security officer record the loss ("linesign audit accept-loss --reason ...").`,
      { details: { path: this.file.path } },
    );
  }

  private async readWith(
    keyOf: () => Promise<Uint8Array>,
    whose: string,
  ): Promise<TokenHead | null> {
    const text = this.file.read();
    if (text === null) return null;
    const broken = (why: string): LinesignError => this.broken(why);
    const { head, sig } = signedHeadOf(text, "linesign-head/1", broken);
    const spki = await keyOf();
    const ok = await this.verify(
      spki,
      signedHeadMessage(head.station, head.seq, head.hash),
      Buffer.from(sig, "base64"),
    );
    if (!ok)
      throw broken(
        `does not carry a valid signature of ${whose}: it was altered, or made without this token`,
      );
    return { station: head.station, seq: head.seq, hash: head.hash, ts: head.ts };
  }

  async write(head: TokenHead): Promise<void> {
    const signer = await this.signer();
    const signature = await signer.sign(signedHeadMessage(head.station, head.seq, head.hash));
    const file: SignedHeadFile = {
      format: "linesign-head/1",
      ...head,
      signature: Buffer.from(signature).toString("base64"),
    };
    this.file.write(JSON.stringify(file) + "\n");
  }
}
