/**
 * Officer-written patterns run against ids devices send. A pattern that makes
 * a backtracking engine take exponential time (`([A-Z0-9]+-?)+` against 32
 * letters and one character it refuses takes minutes there, doubling per
 * letter) is matched in linear time; a pattern the linear engine cannot run
 * (lookaround, back-references) is refused when the officer writes it.
 */
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { refusalCode as refusal } from "../../helpers/refusal.js";
import type { Station } from "../../../src/compose.js";
import { openStation } from "../../../src/compose.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";

const EVIL = "([A-Z0-9]+-?)+";
const csr = (id: string) => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] });

describe("officer-written patterns", () => {
  let es: EngineStation;
  let s: Station;
  beforeAll(async () => {
    es = await engineStation({ evil: { ca: "dev-ica", deviceIdRule: EVIL } });
    s = es.open();
  });
  afterAll(async () => {
    await s.close();
  });

  it("a work order's pattern is matched in linear time against a hostile id", async () => {
    await s.workOrders.create({ id: "evil-wo", profile: "default", quantity: 5, pattern: EVIL });
    expect(
      await refusal(
        s.issuance.issue({ csr: csr(`${"A".repeat(32)}.`), origin: "t", workOrder: "evil-wo" }),
      ),
    ).toBe("WORK_ORDER_DEVICE");
    const ok = await s.issuance.issue({ csr: csr("AB-12-CD"), origin: "t", workOrder: "evil-wo" });
    expect(ok.issuance.deviceId).toBe("AB-12-CD");
  });

  it("a profile's device-id rule is matched in linear time too", async () => {
    expect(
      await refusal(
        s.issuance.issue({ csr: csr(`${"A".repeat(32)}_`), origin: "t", profile: "evil" }),
      ),
    ).toBe("DEVICE_ID_INVALID");
    const ok = await s.issuance.issue({ csr: csr("ZZ-9"), origin: "t", profile: "evil" });
    expect(ok.issuance.deviceId).toBe("ZZ-9");
  });

  it("a pattern the linear engine cannot run is refused with what to change", async () => {
    await expect(
      s.workOrders.create({ id: "look", profile: "default", quantity: 1, pattern: "(?=A)A+" }),
    ).rejects.toThrow(/cannot be used: .*lookahead/);
    await expect(
      s.workOrders.create({ id: "back", profile: "default", quantity: 1, pattern: "(a)\\1" }),
    ).rejects.toThrow(/cannot be used/);
    // In station.json, the profile's field is named.
    const path = join(es.home, "station.json");
    const cfg = JSON.parse(readFileSync(path, "utf8")) as {
      profiles: Record<string, { deviceIdRule?: string }>;
    };
    cfg.profiles.evil!.deviceIdRule = "(?<=x)y";
    writeFileSync(path, JSON.stringify(cfg));
    expect(() => openStation({ home: es.home, env: process.env })).toThrow(
      /deviceIdRule.*cannot be used/,
    );
  });
});
