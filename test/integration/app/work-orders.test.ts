import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { isLinesignError } from "../../../src/domain/errors.js";
import type { Station } from "../../../src/compose.js";
import { engineStation } from "../../helpers/engine.js";

const csr = (id: string) => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] });

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isLinesignError(e)) return e.code;
    throw e;
  }
  throw new Error("expected a refusal");
}

describe("work orders", () => {
  let s: Station;
  beforeAll(async () => {
    s = (await engineStation()).open();
  });
  afterAll(async () => {
    await s.close();
  });

  it("init --dev opened the development work order", () => {
    expect(s.workOrders.list()).toMatchObject([{ id: "dev", status: "open", profile: "default" }]);
  });

  it("never lets ports racing each other overrun the quantity", async () => {
    await s.workOrders.create({ id: "q3", profile: "default", quantity: 3 });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        s.issuance.issue({ csr: csr(`race-${i}`), origin: `serial:p${i}`, workOrder: "q3" }),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason.code] : []));
    expect(refused).toEqual(Array(7).fill("WORK_ORDER_EXHAUSTED"));
    expect(s.ctx.store.countIssuedFor("q3")).toBe(3);
    expect(s.workOrders.list().find((w) => w.id === "q3")).toMatchObject({
      issued: 3,
      remaining: 0,
    });
    // Rejections are recorded with the work order.
    const rej = s.ctx.store.queryRejections({}).filter((r) => r.workOrder === "q3");
    expect(rej.map((r) => r.reason)).toEqual(Array(7).fill("WORK_ORDER_EXHAUSTED"));
  });

  it("refuses devices outside the pattern or the list, after the window, or on a closed order", async () => {
    await s.workOrders.create({ id: "pat", profile: "default", quantity: 5, pattern: "good-\\d+" });
    expect(
      await refusal(s.issuance.issue({ csr: csr("bad-1"), origin: "t", workOrder: "pat" })),
    ).toBe("WORK_ORDER_DEVICE");
    const ok = await s.issuance.issue({ csr: csr("good-1"), origin: "t", workOrder: "pat" });
    expect(ok.issuance.workOrder).toBe("pat");
    await s.workOrders.create({
      id: "list",
      profile: "default",
      quantity: 5,
      devices: ["only-this"],
    });
    expect(
      await refusal(s.issuance.issue({ csr: csr("other"), origin: "t", workOrder: "list" })),
    ).toBe("WORK_ORDER_DEVICE");
    await s.workOrders.create({
      id: "old",
      profile: "default",
      quantity: 5,
      notAfter: "2020-01-01T00:00:00.000Z",
    });
    expect(
      await refusal(s.issuance.issue({ csr: csr("late-1"), origin: "t", workOrder: "old" })),
    ).toBe("WORK_ORDER_WINDOW");
    await s.workOrders.close("pat");
    expect(
      await refusal(s.issuance.issue({ csr: csr("good-2"), origin: "t", workOrder: "pat" })),
    ).toBe("WORK_ORDER_CLOSED");
    expect(await refusal(s.issuance.issue({ csr: csr("x"), origin: "t", workOrder: "nope" }))).toBe(
      "WORK_ORDER_UNKNOWN",
    );
    // A manual issue needs no work order and is recorded without one.
    expect(
      (await s.issuance.issue({ csr: csr("manual-1"), origin: "file:x" })).issuance.workOrder,
    ).toBeNull();
  });

  it("the line needs exactly one open work order, or one named", async () => {
    expect(() => s.line({ ports: ["/dev/null"] })).toThrow(/Several work orders are open/);
    expect(() => s.line({ ports: ["/dev/null"], workOrder: "pat" })).toThrow(/closed/);
    for (const w of s.workOrders.list().filter((x) => x.status === "open"))
      await s.workOrders.close(w.id);
    expect(() => s.line({ ports: ["/dev/null"] })).toThrow(/work-order create/);
  });
});
