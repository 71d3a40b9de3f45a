/**
 * What a port of the line reports as it goes: one event per step of a
 * device's exchange, for the terminal, --json and the kiosk.
 */
import type { ErrorCode } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";

export type PortStage =
  "closed" | "idle" | "identified" | "signing" | "injecting" | "confirming" | "stopped";

/** What the line reports as it goes; one per step, for the terminal, --json and the kiosk. */
export type LineEvent =
  | { event: "port.open"; port: string }
  | { event: "port.waiting"; port: string; code: ErrorCode; message: string }
  /** The station has a fault of its own (storage, log head): no device is greeted until it goes. */
  | { event: "port.paused"; port: string; code: ErrorCode; message: string }
  | { event: "port.resumed"; port: string }
  /** The port refuses more than a device could earn in one interval: a flooding or broken device. */
  | { event: "port.misbehaving"; port: string; refused: number; message: string }
  | { event: "port.lost"; port: string }
  | { event: "port.stopped"; port: string }
  | {
      event: "device.identified";
      port: string;
      deviceId: string;
      model: string;
      firmware: string;
      keyTypes: KeyType[];
    }
  | { event: "device.csr-requested"; port: string; deviceId: string; keyType: KeyType }
  | { event: "device.signing"; port: string; deviceId: string; csrBytes: number }
  | {
      event: "device.injecting";
      port: string;
      deviceId: string;
      serial: string;
      redelivery: boolean;
    }
  | {
      event: "device.confirmed";
      port: string;
      deviceId: string;
      serial: string;
      ms: number;
      wireBytes: number;
    }
  | {
      event: "device.failed";
      port: string;
      deviceId: string | null;
      stage: PortStage;
      code: ErrorCode;
      message: string;
      serial: string | null;
    };
