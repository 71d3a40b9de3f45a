import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { refusal } from "../../helpers/refusal.js";
import type { Station } from "../../../src/compose.js";
import { DEV_PROFILE } from "../../../src/compose.js";
import { engineStation } from "../../helpers/engine.js";

const csr = (id: string) => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] });
const issue = (s: Station, id: string) =>
  s.issuance.issue({ csr: csr(id), origin: "test", profile: "strict" });

describe("re-issue approvals", () => {
  let s: Station;
  beforeAll(async () => {
    s = (await engineStation({ strict: { ...DEV_PROFILE, allowReissue: false } })).open();
  });
  afterAll(async () => {
    await s.close();
  });

  it("lets one more certificate through for an approved device, once", async () => {
    const first = await issue(s, "ri-1");
    const again = await refusal(issue(s, "ri-1"));
    expect(again.code).toBe("DEVICE_ALREADY_ISSUED");
    expect(again.message).toContain("linesign reissue approve --device-id ri-1");

    expect((await refusal(s.reissue.approve("ri-1", "  "))).code).toBe("USAGE");
    expect((await refusal(s.reissue.approve("nobody", "replaced board"))).code).toBe(
      "ISSUANCE_UNKNOWN",
    );
    const approval = await s.reissue.approve("ri-1", "main board replaced after test failure");
    expect(approval).toMatchObject({ deviceId: "ri-1", approvedBy: "test-officer", usedAt: null });
    expect((await refusal(s.reissue.approve("ri-1", "twice"))).code).toBe("ISSUANCE_STATE");

    const second = await issue(s, "ri-1");
    expect(second.issuance.supersedes).toBe(first.issuance.id);
    expect(s.ctx.store.getIssuance(first.issuance.id)!.state).toBe("SUPERSEDED");
    expect(s.reissue.list()).toEqual([
      expect.objectContaining({ id: approval.id, issuanceId: second.issuance.id }),
    ]);
    const event = s.ctx.store.queryEvents({ action: "issuance.issue" }).at(-1)!;
    expect(event.details).toMatchObject({
      reissueApproval: approval.id,
      supersedes: first.issuance.id,
    });
    expect(s.ctx.store.queryEvents({ action: "reissue.approve" }).map((e) => e.outcome)).toEqual([
      "refused",
      "refused",
      "ok",
      "refused",
    ]);

    // Used once: the third is refused again.
    expect((await refusal(issue(s, "ri-1"))).code).toBe("DEVICE_ALREADY_ISSUED");
  });
});
