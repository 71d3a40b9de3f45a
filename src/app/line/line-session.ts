/**
 * One device's exchange on a port, as the event log keeps it: the
 * `line.session` entry written when the exchange ends, and the plain words
 * for the errors a device can report.
 */
import type { ErrorCode } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";
import type { EventInput } from "../../domain/event-log.js";

export interface Session {
  id: number;
  deviceId: string | null;
  startedAt: number;
  keyType: KeyType | null;
  /** What the device reported when it identified (its Thing's name and attributes at AWS). */
  model?: string | null;
  firmware?: string | null;
  issuanceId: number | null;
  serial: string | null;
  wireBytes: number;
  badFrames: number;
  resends: number;
}

/** The `line.session` entry for an exchange that ended (session null: it never started). */
export function sessionEntry(
  actor: string,
  port: string,
  workOrder: string | null,
  session: Session | null,
  outcome: "ok" | "refused" | "failed",
  code: ErrorCode | null,
  message: string | null,
  details: Record<string, unknown> = {},
): EventInput {
  return {
    actor,
    action: "line.session",
    subject: session?.deviceId ?? null,
    outcome,
    ...(code ? { code, message: message ?? "" } : {}),
    details: {
      port,
      issuance: session?.issuanceId ?? null,
      serial: session?.serial ?? null,
      keyType: session?.keyType ?? null,
      ms: session ? Date.now() - session.startedAt : null,
      wireBytes: session?.wireBytes ?? null,
      badFrames: session?.badFrames ?? null,
      resends: session?.resends ?? null,
      workOrder,
      ...details,
    },
  };
}

/** Plain words for the errors a device can report. */
export const DEVICE_ERRORS: Readonly<Record<string, string>> = {
  PROTOCOL: "The device could not follow the station's messages.",
  VERSION_UNSUPPORTED: "The device does not speak this station's protocol version.",
  FRAME_TOO_LARGE: "The device could not take a message that large.",
  TIMEOUT: "The device gave up waiting for the station.",
  LINE_NOISY: "The device saw too many damaged messages: check the cable.",
  ABORTED: "The device stopped provisioning.",
  DEVICE_KEY_TYPE_UNSUPPORTED: "The device cannot make the key type asked for.",
  DEVICE_KEYGEN_FAILED: "The device could not generate its key: set it aside.",
  DEVICE_STORAGE_FAILED: "The device could not store its certificate: set it aside.",
  DEVICE_CHAIN_UNTRUSTED:
    "The device does not trust the certificate chain it received: check that it carries the right root.",
};
