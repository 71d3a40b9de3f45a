import { describe, expect, it } from "vitest";
import { describeLineEvent } from "../../../src/cli/line.js";

describe("the CLI line's words", () => {
  it("gives a failure the kiosk's title and next step beside the station's message", () => {
    const text = describeLineEvent({
      event: "device.failed",
      port: "/dev/ttyUSB0",
      deviceId: "dev-7",
      code: "CSR_SIGNATURE_INVALID",
      message: "The request's signature does not verify with its own key.",
      stage: "signing",
      serial: null,
    });
    expect(text).toBe(
      "dev-7: FAILED: The device's request was refused: The request's signature does not verify with its own key. [CSR_SIGNATURE_INVALID] Next: Set the device aside and tell the line lead; do not ship it.",
    );
  });

  it("names each step of a good device", () => {
    const port = "/dev/ttyUSB0";
    expect(describeLineEvent({ event: "port.open", port })).toBe("waiting for a device");
    expect(
      describeLineEvent({
        event: "device.confirmed",
        port,
        deviceId: "dev-7",
        serial: "0a1b",
        ms: 1234,
        wireBytes: 900,
      }),
    ).toBe("dev-7: CONFIRMED serial 0a1b in 1.23 s");
  });

  it("says which port misbehaves, and what to do", () => {
    expect(
      describeLineEvent({
        event: "port.misbehaving",
        port: "/dev/ttyUSB3",
        refused: 20,
        message: "The device on this port was refused 20 times within a minute. Unplug it.",
      }),
    ).toBe("MISBEHAVING: The device on this port was refused 20 times within a minute. Unplug it.");
  });
});
