/**
 * Re-issue approvals: an officer lets one device that already has a live
 * certificate get one more (a replaced board, a re-flashed device), where its
 * profile does not allow re-issue. The next issuance for that device uses
 * the approval and supersedes the live certificate; the approval is used once.
 */
import { LinesignError } from "../domain/errors.js";
import type { ReissueApproval } from "../domain/ports.js";
import { act, type AppContext } from "./context.js";

export class ReissueService {
  constructor(private readonly ctx: AppContext) {}

  /**
   * @throws LinesignError ISSUANCE_UNKNOWN (no live certificate: nothing to approve), ISSUANCE_STATE (an unused approval exists), USAGE (no reason)
   */
  approve(deviceId: string, reason: string): Promise<ReissueApproval> {
    return act(this.ctx, "reissue.approve", deviceId, async () => {
      const why = reason.trim();
      if (!why || why.length > 500)
        throw new LinesignError(
          "USAGE",
          "Say why the device needs another certificate (--reason, up to 500 characters).",
        );
      const live = this.ctx.store.liveIssuanceForDevice(deviceId);
      if (!live)
        throw new LinesignError(
          "ISSUANCE_UNKNOWN",
          `Device "${deviceId}" has no live certificate: it can be provisioned without an approval.`,
        );
      let id = 0;
      this.ctx.store.transaction(() => {
        id = this.ctx.store.insertReissueApproval({
          deviceId,
          reason: why,
          approvedBy: this.ctx.actor,
          approvedAt: this.ctx.clock.now().toISOString(),
        });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "reissue.approve",
          subject: deviceId,
          outcome: "ok",
          details: { approval: id, reason: why, liveSerial: live.serial },
        });
      });
      return this.ctx.store.reissueApprovals().find((a) => a.id === id)!;
    });
  }

  list(): ReissueApproval[] {
    return this.ctx.store.reissueApprovals();
  }
}
