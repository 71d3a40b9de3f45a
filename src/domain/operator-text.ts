/**
 * What a line operator reads when a device fails: a short title in plain
 * words and what to do next. The station's own message (which names the
 * device, the port or the rule) is shown under it.
 */
import type { ErrorCode } from "./errors.js";

export interface OperatorText {
  title: string;
  action: string;
}

const RESEAT =
  "Check the cable and that the device is in provisioning mode, then plug it in again.";
const SET_ASIDE = "Set the device aside and tell the line lead; do not ship it.";
const OFFICER = "Stop and call the security officer.";

/** Plain words for a failure code (a general text for codes the line does not expect). */
export function operatorText(code: string): OperatorText {
  switch (code as ErrorCode) {
    case "SERIAL_TIMEOUT":
      return { title: "The device stopped answering", action: RESEAT };
    case "SERIAL_PORT_LOST":
      return {
        title: "The port was disconnected",
        action: "Reconnect the adapter; the port comes back by itself.",
      };
    case "SERIAL_PORT_NOT_FOUND":
    case "SERIAL_PORT_UNAVAILABLE":
      return {
        title: "The port cannot be opened",
        action: "Check that the adapter is plugged in; if it is, call the line lead.",
      };
    case "SERIAL_PROTOCOL":
    case "SERIAL_LINE_NOISY":
    case "SERIAL_FRAME_TOO_LARGE":
      return { title: "The connection is garbled", action: RESEAT };
    case "SERIAL_VERSION_UNSUPPORTED":
      return { title: "The device firmware is not supported", action: SET_ASIDE };
    case "DEVICE_REPORTED_ERROR":
      return { title: "The device reported a fault", action: SET_ASIDE };
    case "CONFIRMATION_MISMATCH":
      return { title: "The device stored something else", action: SET_ASIDE };
    case "CSR_SIGNATURE_INVALID":
    case "CSR_MALFORMED":
    case "KEY_INVALID":
    case "CSR_TOO_LARGE":
    case "CSR_ALGORITHM_UNSUPPORTED":
    case "KEY_TYPE_NOT_ALLOWED":
    case "KEY_TYPE_UNSUPPORTED":
    case "CSR_REQUESTS_CA":
    case "CSR_EXTENSION_FORBIDDEN":
    case "SUBJECT_FORBIDDEN":
    case "SUBJECT_TOO_LARGE":
    case "SUBJECT_INVALID":
      return { title: "The device's request was refused", action: SET_ASIDE };
    case "DEVICE_ID_MISSING":
    case "DEVICE_ID_MISMATCH":
    case "DEVICE_ID_INVALID":
      return { title: "The device's id is not acceptable", action: SET_ASIDE };
    case "KEY_REUSED":
      return { title: "This key was used by another device", action: SET_ASIDE };
    case "DEVICE_ALREADY_ISSUED":
      return {
        title: "This device already has a certificate",
        action: "Set it aside; an officer decides on re-issue.",
      };
    case "WORK_ORDER_EXHAUSTED":
      return {
        title: "The work order is complete",
        action: "Stop the line and ask for the next work order.",
      };
    case "WORK_ORDER_DEVICE":
      return { title: "This device is not on the work order", action: SET_ASIDE };
    case "WORK_ORDER_WINDOW":
    case "WORK_ORDER_CLOSED":
    case "WORK_ORDER_UNKNOWN":
    case "WORK_ORDER_REQUIRED":
      return {
        title: "The work order does not allow this now",
        action: "Stop the line and ask the line lead.",
      };
    case "SIGNING_SESSION_REQUIRED":
      return {
        title: "No signing session is open",
        action: "Ask the security officer to open a signing session.",
      };
    case "CA_INACTIVE":
    case "CA_EXPIRED":
    case "CA_UNKNOWN":
    case "HSM_PIN_LOCKED":
    case "HSM_TOKEN_NOT_FOUND":
    case "HSM_KEY_NOT_FOUND":
    case "HSM_ERROR":
      return { title: "The station cannot sign", action: OFFICER };
    case "LINE_STOPPED":
      return { title: "The line was stopped", action: "Start the line again when ready." };
    default:
      return {
        title: "The device could not be provisioned",
        action: "Try the device once more; if it fails again, set it aside and tell the line lead.",
      };
  }
}
