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
  /** Stores `head` (the caller keeps it forward only). Throws the store's own errors. */
  write(head: TokenHead): Promise<void>;
}

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
  constructor(private readonly ctx: AppContext) {}

  get where(): string {
    return `a private data object "${HEAD_OBJECT_LABEL}" on token "${this.ctx.tokenLabel}"`;
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

  async write(head: TokenHead): Promise<void> {
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
  }
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

  async read(): Promise<TokenHead | null> {
    const text = this.file.read();
    if (text === null) return null;
    const broken = (why: string): LinesignError =>
      new LinesignError(
        "AUDIT_CHAIN_BROKEN",
        `The log head file ${this.file.path} ${why}. Put back the station's own head file, or have a security officer record the loss ("linesign audit accept-loss --reason ...").`,
        { details: { path: this.file.path } },
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw broken("is not a readable head");
    }
    const head = asHead(parsed);
    const sig = (parsed as Partial<SignedHeadFile> | null)?.signature;
    if (
      !head ||
      (parsed as SignedHeadFile).format !== "linesign-head/1" ||
      typeof sig !== "string" ||
      !/^[A-Za-z0-9+/]{1,2048}={0,2}$/.test(sig)
    )
      throw broken("is not a readable head");
    const spki = await this.auditSpki();
    if (!spki) throw broken("is signed, but the token holds no audit key to check it against");
    const ok = await this.verify(
      spki,
      signedHeadMessage(head.station, head.seq, head.hash),
      Buffer.from(sig, "base64"),
    );
    if (!ok)
      throw broken(
        "does not carry a valid signature of the token's audit key: it was altered, or made without this token",
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
