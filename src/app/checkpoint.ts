/**
 * Checkpoints make truncation visible. The hash chain shows an edited,
 * deleted or reordered entry, but not a tail cut off or an older copy of the
 * whole database swapped in. So every N entries and at shutdown the station
 * signs the log head (sequence, hash) with a dedicated audit key in the token
 * and writes the head into a private data object on the token: a database
 * that ends before, or disagrees with, the token's head has been cut.
 */
import { LinesignError } from "../domain/errors.js";
import { formatPkcs11Uri } from "../domain/pkcs11-uri.js";
import type { Signer } from "../domain/ports.js";
import type { AppContext } from "./context.js";

/** Label of the token data object that holds the last checkpointed head. */
export const HEAD_OBJECT_LABEL = "linesign-log-head";

/** The head as written into the token. */
export interface TokenHead {
  station: string;
  seq: number;
  hash: string;
  ts: string;
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

  /**
   * @param every checkpoint when this many entries were added since the last one.
   * @param keyLabel label of the audit key in the station's token (made on first use).
   */
  constructor(
    private readonly ctx: AppContext,
    private readonly every: number,
    private readonly keyLabel: string,
  ) {}

  /** Checkpoints when `every` entries have been added since the last checkpoint. */
  async maybe(): Promise<void> {
    const head = this.ctx.store.head();
    if (head && head.seq - this.last() >= this.every) await this.checkpoint();
  }

  /** Signs the current head and writes it to the token, unless it is already checkpointed. */
  async checkpoint(): Promise<{ seq: number; hash: string } | null> {
    const head = this.ctx.store.head();
    if (!head || head.seq === this.last()) return null;
    const signer = await this.signer();
    const signature = await signer.sign(checkpointMessage(this.ctx.stationId, head.seq, head.hash));
    const ts = this.ctx.clock.now().toISOString();
    this.ctx.store.insertCheckpoint({
      seq: head.seq,
      hash: head.hash,
      ts,
      keyUri: signer.key.uri,
      spki: signer.key.spki,
      signature,
    });
    const tokenHead: TokenHead = {
      station: this.ctx.stationId,
      seq: head.seq,
      hash: head.hash,
      ts,
    };
    await this.ctx
      .tokenData()
      .writeData(
        this.ctx.tokenLabel,
        HEAD_OBJECT_LABEL,
        new TextEncoder().encode(JSON.stringify(tokenHead)),
      );
    this.lastSeq = head.seq;
    return head;
  }

  /** The head stored in the token, or null when none was ever written. */
  async tokenHead(): Promise<TokenHead | null> {
    const values = await this.ctx.tokenData().readData(this.ctx.tokenLabel, HEAD_OBJECT_LABEL);
    let best: TokenHead | null = null;
    for (const bytes of values) {
      let head: TokenHead;
      try {
        head = JSON.parse(new TextDecoder().decode(bytes)) as TokenHead;
      } catch (cause) {
        throw new LinesignError(
          "AUDIT_CHAIN_BROKEN",
          "The log head stored in the token is unreadable.",
          { cause },
        );
      }
      if (!best || head.seq > best.seq) best = head;
    }
    return best;
  }

  /** The audit key's public half (DER SPKI) as the token holds it, or null when none exists yet. */
  async tokenAuditKeySpki(): Promise<Uint8Array | null> {
    const key = await this.ctx.keys().findKey(this.keyUri());
    return key?.spki ?? null;
  }

  private keyUri(): string {
    return formatPkcs11Uri({ token: this.ctx.tokenLabel, object: this.keyLabel, id: "" });
  }

  private last(): number {
    if (this.lastSeq === undefined) this.lastSeq = this.ctx.store.checkpoints().at(-1)?.seq ?? 0;
    return this.lastSeq;
  }

  /** The audit key in the token (made on first use). */
  signer(): Promise<Signer> {
    this.auditSigner ??= (async () => {
      const keys = this.ctx.keys();
      const existing = await keys.findKey(this.keyUri());
      if (existing) return keys.signer(existing.uri);
      const made = await keys.generateKeyPair(this.ctx.tokenLabel, this.keyLabel, "ec-p256");
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "audit.key-create",
        subject: this.keyLabel,
        outcome: "ok",
        details: { keyUri: made.uri },
      });
      return keys.signer(made.uri);
    })();
    this.auditSigner.catch(() => (this.auditSigner = null));
    return this.auditSigner;
  }
}
