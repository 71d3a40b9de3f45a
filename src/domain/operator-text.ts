/**
 * The words the kiosk and the line show for every refusal code: a short
 * title, what an operator does next (never an environment variable, a
 * command or a code: an operator's next step is on the line or a person to
 * call), and what a security officer does next (who may be pointed at a
 * kiosk screen or a station command). The station's own message, which
 * names the device, the port or the rule, is shown to officers under it.
 *
 * The table is keyed by every code the kiosk can receive, so the compiler
 * refuses a new code without words, and test/unit/domain/operator-text.test.ts
 * checks the words themselves.
 */
import { ERROR_CODES, type ErrorCode } from "./errors.js";

export interface OperatorText {
  title: string;
  /** The operator's next step. */
  action: string;
}

export interface RefusalText extends OperatorText {
  /** The security officer's next step. */
  officer: string;
}

/** Codes the kiosk page makes itself (the service did not answer). */
export const KIOSK_CODES = ["SERVICE_UNREACHABLE", "KIOSK_NOT_CONNECTED"] as const;
export type KioskCode = ErrorCode | (typeof KIOSK_CODES)[number];
/** Every code a kiosk screen can be shown. */
export const ALL_KIOSK_CODES: readonly KioskCode[] = [...ERROR_CODES, ...KIOSK_CODES];

const RESEAT =
  "Check the cable and that the device is in provisioning mode, then plug it in again.";
const SET_ASIDE = "Set the device aside and tell the line lead; do not ship it.";
const CALL_OFFICER = "Stop and call the security officer.";
const ASK_OFFICER = "Ask the security officer.";
const LEAD = "Call the line lead.";
const DEVICE_OFFICER =
  "Look the device up on the Audit screen; its record says which rule refused it.";
const STATION_FAULT =
  "The station log has the details; check the station's disk and token, then restart the service.";

const t = (title: string, action: string, officer: string): RefusalText => ({
  title,
  action,
  officer,
});

const TEXT: Record<KioskCode, RefusalText> = {
  CONFIG_INVALID: t(
    "The station is not set up correctly",
    CALL_OFFICER,
    "Fix station.json (the message names the field), then restart the service.",
  ),
  CONFIG_MISSING: t(
    "The station is not set up",
    CALL_OFFICER,
    "Create the station's configuration (linesign init), then restart the service.",
  ),
  HOME_NOT_INITIALISED: t(
    "The station is not set up",
    CALL_OFFICER,
    "Initialise the station home (linesign init), then restart the service.",
  ),
  USAGE: t(
    "That cannot be done now",
    "Check the screen and try again; if it repeats, call the line lead.",
    "Read the message below: it names what was missing or in the way.",
  ),
  HSM_MODULE_NOT_FOUND: t(
    "The station cannot reach its security token",
    CALL_OFFICER,
    "Check the PKCS#11 module path in station.json and that the token's software is installed.",
  ),
  HSM_MODULE_INVALID: t(
    "The station cannot reach its security token",
    CALL_OFFICER,
    "The PKCS#11 module in station.json is not a usable module; point it at the token's library.",
  ),
  HSM_TOKEN_NOT_FOUND: t(
    "The security token is missing",
    CALL_OFFICER,
    "Check that the token is plugged in and its label matches station.json.",
  ),
  HSM_NO_FREE_SLOT: t(
    "The security token has no room",
    CALL_OFFICER,
    "Free a slot on the token or use another token.",
  ),
  HSM_PIN_INCORRECT: t(
    "The PIN was not accepted",
    CALL_OFFICER,
    "Type the token's user PIN again; the screen shows how many attempts are left.",
  ),
  HSM_PIN_LOCKED: t(
    "The token's PIN is locked",
    CALL_OFFICER,
    "Unlock the token's PIN with its SO PIN (linesign token unlock), then open a signing session.",
  ),
  HSM_PIN_REQUIRED: t(
    "The PIN is needed",
    CALL_OFFICER,
    "Type the token's user PIN to open the signing session.",
  ),
  HSM_KEY_NOT_FOUND: t(
    "The station cannot sign",
    CALL_OFFICER,
    "The CA's key is not on the token: check that the right token is plugged in (CAs screen).",
  ),
  HSM_MECHANISM_UNSUPPORTED: t(
    "The security token cannot do this",
    CALL_OFFICER,
    "The token does not support this key type or algorithm; choose another (see hsm/README.md).",
  ),
  HSM_KEY_CUSTODY: t(
    "The security token will not keep the key safely",
    CALL_OFFICER,
    "The token refused every key template that keeps the key on it; make the key with the vendor's tool and adopt it (see hsm/README.md).",
  ),
  HSM_ERROR: t("The station cannot sign", CALL_OFFICER, STATION_FAULT),
  CA_LABEL_EXISTS: t("That CA name is taken", ASK_OFFICER, "Choose another label for the new CA."),
  CA_UNKNOWN: t(
    "The station cannot sign",
    CALL_OFFICER,
    "The profile names a CA the station does not have: check the CAs screen and station.json.",
  ),
  CA_INACTIVE: t(
    "The station cannot sign",
    CALL_OFFICER,
    "The profile's CA is not active: activate it on the CAs screen.",
  ),
  CA_NO_CERTIFICATE: t(
    "The CA is not finished",
    CALL_OFFICER,
    "Import the CA's certificate, then activate it.",
  ),
  CA_CERT_KEY_MISMATCH: t(
    "The CA certificate does not fit its key",
    CALL_OFFICER,
    "Import the certificate issued for this CA's own request.",
  ),
  CA_CERT_NOT_CA: t(
    "That certificate is not a CA",
    CALL_OFFICER,
    "Import a CA certificate (basicConstraints cA true).",
  ),
  CA_CERT_UNSUITABLE: t(
    "That certificate cannot serve as this CA",
    CALL_OFFICER,
    "Have the CA certificate issued again with keyCertSign and cRLSign and SHA-256 or stronger; the message names what it lacks.",
  ),
  CA_NOT_FOR_DEVICES: t(
    "That CA does not sign devices",
    CALL_OFFICER,
    "Choose an intermediate CA made for devices for the profile; roots and CAs that sign other CAs never sign devices.",
  ),
  CA_IN_USE: t(
    "The CA still issues for a profile",
    CALL_OFFICER,
    "Move the profiles the message names to another CA first (rotate), then change this one.",
  ),
  CA_CHAIN_INVALID: t(
    "The CA's chain does not check out",
    CALL_OFFICER,
    "Import the CA certificate with the issuer it was signed by.",
  ),
  CA_CERT_UNREADABLE: t(
    "The certificate file cannot be read",
    CALL_OFFICER,
    "Use a PEM or DER certificate file.",
  ),
  CA_STATE: t(
    "The CA cannot do that in its state",
    CALL_OFFICER,
    "Check the CA's status on the CAs screen; the message says which state is needed.",
  ),
  SUBJECT_INVALID: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  KEY_TYPE_UNSUPPORTED: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  REGISTRATION_CODE_INVALID: t(
    "The registration code is not valid",
    ASK_OFFICER,
    "Copy the registration code again from AWS IoT.",
  ),
  PROFILE_UNKNOWN: t(
    "The work order names no known profile",
    "Stop the line and ask the security officer for another work order.",
    "Choose one of the station's profiles for the work order.",
  ),
  PROFILE_EXISTS: t(
    "That profile already exists",
    ASK_OFFICER,
    "Choose another name, or change the existing profile.",
  ),
  CSR_TOO_LARGE: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  CSR_MALFORMED: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  KEY_INVALID: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  CSR_ALGORITHM_UNSUPPORTED: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  CSR_SIGNATURE_INVALID: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  KEY_TYPE_NOT_ALLOWED: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  KEY_TYPE_MISMATCH: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  DEVICE_ID_MISSING: t("The device's id is not acceptable", SET_ASIDE, DEVICE_OFFICER),
  DEVICE_ID_MISMATCH: t("The device's id is not acceptable", SET_ASIDE, DEVICE_OFFICER),
  DEVICE_ID_INVALID: t("The device's id is not acceptable", SET_ASIDE, DEVICE_OFFICER),
  SUBJECT_TOO_LARGE: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  SUBJECT_FORBIDDEN: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  CSR_REQUESTS_CA: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  CSR_EXTENSION_FORBIDDEN: t("The device's request was refused", SET_ASIDE, DEVICE_OFFICER),
  KEY_REUSED: t(
    "This key was used by another device",
    SET_ASIDE,
    "Two devices share a key: treat it as a compromise and look both up on the Audit screen.",
  ),
  DEVICE_ALREADY_ISSUED: t(
    "This device already has a certificate",
    "Set it aside; an officer decides on re-issue.",
    "If the device should get a new certificate, approve one re-issue on the Revoke screen.",
  ),
  CA_EXPIRED: t(
    "The station cannot sign",
    CALL_OFFICER,
    "The profile's CA has expired: rotate to a new CA on the CAs screen.",
  ),
  ISSUANCE_UNKNOWN: t(
    "The station has no record of this",
    LEAD,
    "No certificate matches: check the serial or device id.",
  ),
  ISSUANCE_STATE: t(
    "That certificate cannot change now",
    LEAD,
    "The certificate's state does not allow this (already revoked, or not yet delivered).",
  ),
  CONFIRMATION_MISMATCH: t(
    "The certificate was damaged on its way to the device",
    "Plug the device in again to provision it once more; if it fails again, set it aside and tell the line lead.",
    "The device confirmed a different certificate than it was sent; look it up on the Audit screen.",
  ),
  WORK_ORDER_UNKNOWN: t(
    "The work order does not allow this now",
    "Stop the line and ask the line lead.",
    "Check the work order's id on the Work orders screen.",
  ),
  WORK_ORDER_CLOSED: t(
    "The work order does not allow this now",
    "Stop the line and ask the line lead.",
    "The work order is closed: create the next one on the Work orders screen.",
  ),
  WORK_ORDER_WINDOW: t(
    "The work order does not allow this now",
    "Stop the line and ask the line lead.",
    "The work order's time window is not open now: check its dates.",
  ),
  WORK_ORDER_DEVICE: t(
    "This device is not on the work order",
    SET_ASIDE,
    "The device's id is outside the work order's pattern or list.",
  ),
  WORK_ORDER_EXHAUSTED: t(
    "The work order is complete",
    "Stop the line and ask for the next work order.",
    "Create the next work order on the Work orders screen.",
  ),
  WORK_ORDER_REQUIRED: t(
    "The work order does not allow this now",
    "Stop the line and ask the line lead.",
    "The line needs an open work order: create one on the Work orders screen.",
  ),
  AUTH_REQUIRED: t(
    "Please sign in",
    "Sign in again with your name and passphrase.",
    "Sign in again with your name and passphrase.",
  ),
  AUTH_FAILED: t(
    "Sign-in failed",
    "Check your name and passphrase and try again.",
    "Check the name and passphrase and try again.",
  ),
  AUTH_LOCKED: t(
    "This account is locked",
    "Ask the security officer to unlock your account.",
    "Too many wrong passphrases: unlock the account (linesign user unlock) once you know why.",
  ),
  AUTH_DISABLED: t(
    "This account is switched off",
    "Ask the security officer.",
    "The account is disabled; enable it only if the person should sign in again.",
  ),
  ROLE_FORBIDDEN: t(
    "That is not part of your role",
    "Ask the security officer to do it.",
    "Sign in with an account that has the role the message names.",
  ),
  LAST_OFFICER: t(
    "That would leave no officer",
    ASK_OFFICER,
    "Add another officer before disabling or locking this one.",
  ),
  PASSPHRASE_WEAK: t(
    "That passphrase is too weak",
    "Choose a longer passphrase.",
    "Choose a longer passphrase.",
  ),
  SIGNING_SESSION_REQUIRED: t(
    "No signing session is open",
    "Call an officer to reopen the signing session.",
    "Open a signing session on the Signing session screen.",
  ),
  SIGNING_SESSION_OPEN: t(
    "A signing session is already open",
    "Carry on: the line can sign.",
    "A session is open already; close it first to open another.",
  ),
  API_REQUEST_INVALID: t(
    "The screen sent something the station did not accept",
    "Reload the screen; if it repeats, call the line lead.",
    "Check the values you typed: the message names the field.",
  ),
  SERIAL_PORT_NOT_FOUND: t(
    "The port cannot be opened",
    "Check that the adapter is plugged in; if it is, call the line lead.",
    "The serial port named in station.json does not exist on this machine.",
  ),
  SERIAL_PORT_UNAVAILABLE: t(
    "The port cannot be opened",
    "Check that the adapter is plugged in; if it is, call the line lead.",
    "Another program holds the port, or the station may not open it.",
  ),
  SERIAL_PORT_LOST: t(
    "The port was disconnected",
    "Reconnect the adapter; the port comes back by itself.",
    "The adapter went away; it comes back by itself when reconnected.",
  ),
  PORT_DISCOVERY_UNAVAILABLE: t(
    "The station cannot list its ports",
    LEAD,
    "Name the ports in station.json instead.",
  ),
  SERIAL_TIMEOUT: t(
    "The device stopped answering",
    RESEAT,
    "A device went silent; repeated on one port, check its cable.",
  ),
  SERIAL_PROTOCOL: t(
    "The connection is garbled",
    RESEAT,
    "The device broke the protocol; repeated, its firmware is at fault.",
  ),
  SERIAL_VERSION_UNSUPPORTED: t(
    "The device firmware is not supported",
    SET_ASIDE,
    "The device speaks a protocol version the station does not; update its firmware.",
  ),
  SERIAL_FRAME_TOO_LARGE: t(
    "The connection is garbled",
    RESEAT,
    "The device sent an oversized message; repeated, its firmware is at fault.",
  ),
  SERIAL_LINE_NOISY: t(
    "The connection is garbled",
    RESEAT,
    "Too many damaged messages on this port: check the cable and connectors.",
  ),
  DEVICE_REPORTED_ERROR: t(
    "The device reported a fault",
    SET_ASIDE,
    "The device reported its own fault; the message has its words.",
  ),
  LINE_STOPPED: t(
    "The line was stopped",
    "Start the line again when ready.",
    "The line was stopped while the device was in progress.",
  ),
  TARGET_EXISTS: t("That target name is taken", ASK_OFFICER, "Choose another target name."),
  TARGET_UNKNOWN: t(
    "There is no such target",
    ASK_OFFICER,
    "Check the target's name on the Targets screen.",
  ),
  TARGET_INVALID: t(
    "The target is not set up correctly",
    ASK_OFFICER,
    "Fix the target's settings (the message names the field).",
  ),
  AWS_REFUSED: t(
    "AWS IoT refused the upload",
    ASK_OFFICER,
    "AWS IoT refused a request; the message has its reason.",
  ),
  AWS_UNAVAILABLE: t(
    "AWS IoT cannot be reached",
    ASK_OFFICER,
    "The network or AWS is down; sync again later or use an offline bundle.",
  ),
  AWS_CREDENTIALS: t(
    "The AWS credentials were not accepted",
    ASK_OFFICER,
    "Check the AWS profile the target uses.",
  ),
  AWS_CA_INACTIVE: t(
    "The CA is not active in AWS IoT",
    ASK_OFFICER,
    "Activate the CA in AWS IoT, then sync again.",
  ),
  BUNDLE_INVALID: t(
    "The bundle file is not valid",
    ASK_OFFICER,
    "Use a bundle exported by this station, unchanged.",
  ),
  BACKUP_INVALID: t(
    "The backup file is not valid",
    ASK_OFFICER,
    "Use a backup written by linesign backup, unchanged; the message names what does not match.",
  ),
  BACKUP_DIR_UNSET: t(
    "No backup folder is set for this station",
    ASK_OFFICER,
    "Set the station's backup folder (on another disk or removable media) in its configuration, or back up from the terminal.",
  ),
  EXPORT_DIR_UNAVAILABLE: t(
    "The export folder cannot be used",
    ASK_OFFICER,
    "Insert the removable medium the station exports to, or check the export folder the message names (export.dir in the station's configuration).",
  ),
  EXPORT_FILE_REFUSED: t(
    "That file cannot be taken from the export folder",
    ASK_OFFICER,
    "Choose a file listed from the export folder: a plain file, not a link, within the size the message names.",
  ),
  RESTORE_TARGET_EXISTS: t(
    "A station is already there",
    ASK_OFFICER,
    "Restore into an empty folder: a restore never writes over a station.",
  ),
  RESTORE_BEHIND_TOKEN: t(
    "The restored records end before the token's",
    CALL_OFFICER,
    "The message names the missing entries: restore a newer backup, or examine them and run linesign audit accept-loss.",
  ),
  RESTORE_HEAD_MISSING: t(
    "The station's signed log head file is not there",
    CALL_OFFICER,
    "Put the head file from its other media where the message says, or run linesign audit accept-loss.",
  ),
  RESTORE_TOKEN_MISMATCH: t(
    "This is not the station's token",
    CALL_OFFICER,
    "Connect the token whose audit key signed the backup, then restore again.",
  ),
  RECEIPT_INVALID: t(
    "The receipt file is not valid",
    ASK_OFFICER,
    "Use the receipt written for this station's bundle, unchanged.",
  ),
  DB_NEWER_VERSION: t(
    "The station's records are from a newer version",
    CALL_OFFICER,
    "Update the station software to the version that wrote the database.",
  ),
  DB_ERROR: t("The station cannot record", CALL_OFFICER, STATION_FAULT),
  AUDIT_KEY_ROLLOVER_REQUIRED: t(
    "The station's token was replaced",
    CALL_OFFICER,
    "Introduce the new token's audit key with linesign audit rollover (the offline root's token, or the old token if it still works).",
  ),
  CA_KEY_MISSING: t(
    "The CA's key is not in the token",
    CALL_OFFICER,
    "The token was replaced and this CA's key is gone: create a new CA in the token and rotate the profile to it.",
  ),
  DB_COPY_FAILED: t(
    "The second copy of the records is behind",
    "Go on: the line is not affected. Tell the security officer.",
    "Fix the folder or disk the message names (it is missing, not writable or full); the copy catches up by itself.",
  ),
  DB_FULL: t(
    "The station's disk is full",
    "Wait: the line goes on by itself once the station can record again. If it does not, call the security officer.",
    "Free space on the disk named in the message; the line goes on by itself.",
  ),
  DB_READ_ONLY: t(
    "The station cannot write its records",
    "Wait: the line goes on by itself once the station can record again. If it does not, call the security officer.",
    "Make the station's home writable again (the message names it); the line goes on by itself.",
  ),
  DB_IO: t(
    "The station's disk is failing",
    "Wait: the line goes on by itself once the station can record again. If it does not, call the security officer.",
    "Check the disk named in the message; the line goes on once it can be written again.",
  ),
  DB_CORRUPT: t(
    "The station's records are damaged",
    CALL_OFFICER,
    "Keep the station as it is, restore station.db from the last backup and follow the site's incident procedure.",
  ),
  DB_LOCKED: t(
    "The station is busy",
    "Wait: the line goes on by itself in a moment.",
    "Another program on the station holds its records; let it finish or stop it.",
  ),
  DB_REPLACED: t(
    "The station's records were moved or replaced",
    CALL_OFFICER,
    "The line has stopped. Put the station's own station.db back, then restart the service.",
  ),
  DB_NOT_A_STATION: t(
    "The station's records are missing",
    CALL_OFFICER,
    "The file named in the message is not a station database: put the station's own station.db back.",
  ),
  STATION_ID_CHANGED: t(
    "The station is not set up correctly",
    CALL_OFFICER,
    "Put back the station id the message names in station.json, then restart the service.",
  ),
  CONFIG_CHANGED: t(
    "The station's setup was changed",
    CALL_OFFICER,
    "station.json was edited outside the station: check the change the message names, then accept it (linesign config accept) or put the file back.",
  ),
  HOME_UNSAFE: t(
    "The station is not set up safely",
    CALL_OFFICER,
    "The station's home can be reached by other users or belongs to another: fix its owner and mode as the message says, then start again.",
  ),
  DRIVERS_UNAVAILABLE: t(
    "The station's software is incomplete",
    CALL_OFFICER,
    "A driver the station needs (PKCS#11, SQLite) does not load on this machine: install the station again as the message says.",
  ),
  AUDIT_CHAIN_BROKEN: t(
    "The station's log does not check out",
    CALL_OFFICER,
    "The event log was changed: keep the station as it is and follow the site's incident procedure.",
  ),
  AUDIT_HEAD_MISMATCH: t(
    "The station's log and its token disagree",
    CALL_OFFICER,
    "Signing has stopped: the message names the missing entries. Restore them, or record the loss with linesign audit accept-loss.",
  ),
  AUDIT_HEAD_WRITE_FAILED: t(
    "The station's token cannot keep the log",
    CALL_OFFICER,
    "Check the token named in the message; the certificate waits and is handed out once the token takes the log again.",
  ),
  AUDIT_CHECKPOINT_FAILED: t(
    "The station could not sign its log",
    CALL_OFFICER,
    "Check the audit key (audit.keyType must be a type the token supports) and the token, then verify the log.",
  ),
  AUDIT_INCOMPLETE: t(
    "The station's log could not be fully checked",
    CALL_OFFICER,
    "Nothing was found changed, but part of the log is not covered: verify where the token is, or see why checkpoints fail.",
  ),
  FILE_WRITE_FAILED: t(
    "The station could not save a file",
    CALL_OFFICER,
    "Check the disk or the removable medium named in the message.",
  ),
  FILE_READ_FAILED: t(
    "The station could not read a file",
    CALL_OFFICER,
    "Check the file named in the message.",
  ),
  INTERNAL: t("Something went wrong in the station", CALL_OFFICER, STATION_FAULT),
  SERVICE_UNREACHABLE: t(
    "The station service is not answering",
    "Wait: the screen reconnects by itself. If it does not within a minute, call the line lead.",
    "Wait: the screen reconnects by itself. If it does not, check that the station service is running.",
  ),
  KIOSK_NOT_CONNECTED: t(
    "This screen is not connected to the station",
    CALL_OFFICER,
    'Start the kiosk from the station: "linesign kiosk" beside "linesign serve --ui", or Electron\'s kiosk.',
  ),
};

/** Whether the table has words of its own for this code. */
export function hasWords(code: string): boolean {
  return Object.prototype.hasOwnProperty.call(TEXT, code);
}

/** The words for any code: a known code's, or general words for one the kiosk does not know. */
export function refusalText(code: string): RefusalText {
  if (hasWords(code)) return TEXT[code as KioskCode];
  return t(
    "The device could not be provisioned",
    "Try the device once more; if it fails again, set it aside and tell the line lead.",
    "The station gave a code this screen does not know; the message below has its words.",
  );
}

/** Plain words for a failure code: its title and the operator's next step. */
export function operatorText(code: string): OperatorText {
  const r = refusalText(code);
  return { title: r.title, action: r.action };
}
