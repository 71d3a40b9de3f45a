import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { refusalCode as refusal } from "../../helpers/refusal.js";
import type { Station } from "../../../src/compose.js";
import { engineStation } from "../../helpers/engine.js";
import { buildReport } from "../../../src/app/report.js";

const csr = (id: string) => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] });

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
  it("reports per work order, operator and port, listing certificates that left unconfirmed", async () => {
    const q3 = s.ctx.store.queryIssuances({}).filter((i) => i.workOrder === "q3");
    await s.issuance.markDelivered(q3[0]!.id);
    await s.issuance.confirm(q3[1]!.id, q3[1]!.fingerprint);
    const r = buildReport(s.ctx, {});
    expect(r.byWorkOrder.q3).toMatchObject({
      issued: 3,
      confirmed: 1,
      unconfirmed: 2,
      rejected: { WORK_ORDER_EXHAUSTED: 7 },
    });
    expect(r.byWorkOrder.manual).toMatchObject({ issued: 1 });
    const ports = Object.entries(r.byPort).filter(([k]) => /^serial:p\d$/.test(k));
    expect(ports).toHaveLength(10);
    expect(ports.reduce((n, [, g]) => n + g.issued, 0)).toBe(3);
    expect(ports.reduce((n, [, g]) => n + (g.rejected.WORK_ORDER_EXHAUSTED ?? 0), 0)).toBe(7);
    expect(r.totals.issued).toBe(5);
    expect(r.unconfirmed.map((u) => u.serial)).toContain(q3[0]!.serial);
    expect(r.unconfirmed.find((u) => u.serial === q3[0]!.serial)).toMatchObject({
      state: "DELIVERED",
      workOrder: "q3",
    });
    expect(Object.keys(r.byOperator)).toHaveLength(1);
  });
});
