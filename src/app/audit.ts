/** Checking the event log's hash chain, and recording that it was checked. */
import { describeBreak, verifyChain, type ChainBreak } from "../domain/event-log.js";
import type { AppContext } from "./context.js";

export interface AuditVerdict {
  ok: boolean;
  /** Entries checked before the first break (all of them when ok). */
  checked: number;
  head: { seq: number; hash: string } | null;
  firstBad: ChainBreak | null;
  /** Plain words: what was found. */
  message: string;
}

export class AuditService {
  constructor(private readonly ctx: AppContext) {}

  /** Verifies the whole chain; records the result (ok or refused) as `audit.verify`. */
  verify(): AuditVerdict {
    const verdict = verifyChain(this.ctx.store.events());
    const result: AuditVerdict = verdict.ok
      ? {
          ok: true,
          checked: verdict.count,
          head: verdict.head,
          firstBad: null,
          message: `The event log is intact: ${verdict.count} entries chain correctly.`,
        }
      : {
          ok: false,
          checked: verdict.count,
          head: null,
          firstBad: verdict.firstBad,
          message: `The event log has been tampered with: ${describeBreak(verdict.firstBad)}.`,
        };
    this.ctx.store.appendEvent({
      actor: this.ctx.actor,
      action: "audit.verify",
      outcome: result.ok ? "ok" : "refused",
      code: result.ok ? null : "AUDIT_CHAIN_BROKEN",
      message: result.message,
      details: { checked: result.checked, firstBad: result.firstBad },
    });
    if (!result.ok) this.ctx.logger.error({ firstBad: result.firstBad }, result.message);
    return result;
  }
}
