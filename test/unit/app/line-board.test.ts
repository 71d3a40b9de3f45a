import { describe, expect, it } from "vitest";
import { LineBoard } from "../../../src/app/line/board.js";

describe("the line board", () => {
  it("follows a device through its steps, keeps a failure until acknowledged, and counts the shift", async () => {
    const b = new LineBoard(() => new Date("2026-11-23T10:00:00Z"));
    b.reset(["/dev/a", "/dev/b"]);
    const v0 = b.version;
    b.apply({ event: "port.open", port: "/dev/a" });
    b.apply({
      event: "device.identified",
      port: "/dev/a",
      deviceId: "d1",
      model: "m",
      firmware: "1",
      keyTypes: ["ec-p256"],
    });
    expect(b.view()[0]).toMatchObject({ state: "identified", deviceId: "d1" });
    b.apply({ event: "device.signing", port: "/dev/a", deviceId: "d1", csrBytes: 300 });
    b.apply({
      event: "device.injecting",
      port: "/dev/a",
      deviceId: "d1",
      serial: "ab",
      redelivery: false,
    });
    b.apply({
      event: "device.confirmed",
      port: "/dev/a",
      deviceId: "d1",
      serial: "ab",
      ms: 190,
      wireBytes: 2169,
    });
    expect(b.view()[0]).toMatchObject({
      state: "confirmed",
      serial: "ab",
      confirmed: 1,
      failure: null,
    });
    b.apply({
      event: "device.failed",
      port: "/dev/b",
      deviceId: "d2",
      stage: "signing",
      code: "KEY_REUSED",
      message: "The key of d2 was used by d0.",
      serial: null,
    });
    expect(b.view()[1]).toMatchObject({
      state: "failed",
      failed: 1,
      failure: {
        code: "KEY_REUSED",
        title: "This key was used by another device",
        message: "The key of d2 was used by d0.",
        deviceId: "d2",
        at: "2026-11-23T10:00:00.000Z",
      },
    });
    expect(b.view()[1]!.failure!.action).toContain("do not ship");
    // The next device on that port does not hide the failure.
    b.apply({
      event: "device.identified",
      port: "/dev/b",
      deviceId: "d3",
      model: "m",
      firmware: "1",
      keyTypes: [],
    });
    expect(b.view()[1]).toMatchObject({ state: "identified", failure: { deviceId: "d2" } });
    expect(b.acknowledge("/dev/b")).toBe(true);
    expect(b.acknowledge("/dev/b")).toBe(false);
    expect(b.view()[1]!.failure).toBeNull();
    expect(b.shift).toMatchObject({ confirmed: 1, failed: 1 });
    expect(b.version).toBeGreaterThan(v0 + 6);
    // Unknown ports are ignored.
    const v = b.version;
    b.apply({ event: "port.open", port: "/dev/zz" });
    expect(b.version).toBe(v);
  });

  it("wakes a watcher on the next change, or lets it go after its wait", async () => {
    const b = new LineBoard();
    b.reset(["/dev/a"]);
    const at = b.version;
    const woken = b.waitFor(at, 60_000);
    b.apply({ event: "port.open", port: "/dev/a" });
    await woken;
    expect(b.version).toBe(at + 1);
    await b.waitFor(b.version, 1); // nothing changes: returns after its wait
    await b.waitFor(at, 60_000); // already past: returns at once
  });
});

describe("a re-try on the board", () => {
  it("takes a failure down when the same device then gets through, and keeps another device's", () => {
    const b = new LineBoard(() => new Date("2026-11-23T10:00:00Z"));
    b.reset(["/dev/a"]);
    const fail = (deviceId: string) =>
      b.apply({
        event: "device.failed",
        port: "/dev/a",
        deviceId,
        stage: "injecting",
        code: "SERIAL_TIMEOUT",
        message: `${deviceId} went silent.`,
        serial: null,
      });
    const confirm = (deviceId: string) =>
      b.apply({
        event: "device.confirmed",
        port: "/dev/a",
        deviceId,
        serial: "ab",
        ms: 1,
        wireBytes: 1,
      });
    fail("d1");
    confirm("d2");
    expect(b.view()[0]!.failure).toMatchObject({ deviceId: "d1" });
    confirm("d1");
    expect(b.view()[0]).toMatchObject({ state: "confirmed", failure: null, failed: 1 });
  });
});

describe("a misbehaving port on the board", () => {
  it("shows what the line said until a device on that port gets through", () => {
    const b = new LineBoard(() => new Date("2026-11-23T10:00:00Z"));
    b.reset(["/dev/a", "/dev/b"]);
    expect(b.view()[0]!.misbehaving).toBeNull();
    b.apply({
      event: "port.misbehaving",
      port: "/dev/a",
      refused: 20,
      message: "The device on this port was refused 20 times within a minute.",
    });
    expect(b.view()[0]!.misbehaving).toBe(
      "The device on this port was refused 20 times within a minute.",
    );
    expect(b.view()[1]!.misbehaving).toBeNull();
    // More refusals and a good device on another port leave it shown.
    b.apply({
      event: "device.failed",
      port: "/dev/a",
      deviceId: "flood-9",
      stage: "identified",
      code: "SERIAL_PROTOCOL",
      message: "Another device answered.",
      serial: null,
    });
    b.apply({
      event: "device.confirmed",
      port: "/dev/b",
      deviceId: "good",
      serial: "ab",
      ms: 1,
      wireBytes: 1,
    });
    expect(b.view()[0]!.misbehaving).not.toBeNull();
    b.apply({
      event: "device.confirmed",
      port: "/dev/a",
      deviceId: "d1",
      serial: "cd",
      ms: 1,
      wireBytes: 1,
    });
    expect(b.view()[0]!.misbehaving).toBeNull();
  });
});
