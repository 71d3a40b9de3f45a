/**
 * One error family for the whole station. Every failure an operator, officer or
 * script can meet has a stable code; the message is safe to show (no PINs, no
 * driver internals) and says what to do; the cause is for the log only.
 */
export const ERROR_CODES = [
  // configuration and station home
  "CONFIG_INVALID",
  "CONFIG_MISSING",
  "HOME_NOT_INITIALISED",
  "USAGE",
  // PKCS#11 / token
  "HSM_MODULE_NOT_FOUND",
  "HSM_MODULE_INVALID",
  "HSM_TOKEN_NOT_FOUND",
  "HSM_NO_FREE_SLOT",
  "HSM_PIN_INCORRECT",
  "HSM_PIN_LOCKED",
  "HSM_PIN_REQUIRED",
  "HSM_KEY_NOT_FOUND",
  "HSM_MECHANISM_UNSUPPORTED",
  "HSM_KEY_CUSTODY",
  "HSM_ERROR",
  // CA lifecycle
  "CA_LABEL_EXISTS",
  "CA_UNKNOWN",
  "CA_INACTIVE",
  "CA_NO_CERTIFICATE",
  "CA_CERT_KEY_MISMATCH",
  "CA_CERT_NOT_CA",
  "CA_CERT_UNSUITABLE",
  "CA_CHAIN_INVALID",
  "CA_CERT_UNREADABLE",
  "CA_STATE",
  "CA_NOT_FOR_DEVICES",
  "CA_IN_USE",
  "SUBJECT_INVALID",
  "KEY_TYPE_UNSUPPORTED",
  "REGISTRATION_CODE_INVALID",
  // issuance: the rejection reasons, in the order the checks run
  "PROFILE_UNKNOWN",
  "PROFILE_EXISTS",
  "CONFIG_CHANGED",
  "CSR_TOO_LARGE",
  "CSR_MALFORMED",
  "KEY_INVALID",
  "CSR_ALGORITHM_UNSUPPORTED",
  "CSR_SIGNATURE_INVALID",
  "KEY_TYPE_NOT_ALLOWED",
  "KEY_TYPE_MISMATCH",
  "DEVICE_ID_MISSING",
  "DEVICE_ID_MISMATCH",
  "DEVICE_ID_INVALID",
  "SUBJECT_TOO_LARGE",
  "SUBJECT_FORBIDDEN",
  "CSR_REQUESTS_CA",
  "CSR_EXTENSION_FORBIDDEN",
  "KEY_REUSED",
  "DEVICE_ALREADY_ISSUED",
  "CA_EXPIRED",
  "ISSUANCE_UNKNOWN",
  "ISSUANCE_STATE",
  "CONFIRMATION_MISMATCH",
  "WORK_ORDER_UNKNOWN",
  "WORK_ORDER_CLOSED",
  "WORK_ORDER_WINDOW",
  "WORK_ORDER_DEVICE",
  "WORK_ORDER_EXHAUSTED",
  "WORK_ORDER_REQUIRED",
  // people
  "AUTH_REQUIRED",
  "AUTH_FAILED",
  "AUTH_LOCKED",
  "AUTH_DISABLED",
  "ROLE_FORBIDDEN",
  "PASSPHRASE_WEAK",
  "LAST_OFFICER",
  "SIGNING_SESSION_REQUIRED",
  "SIGNING_SESSION_OPEN",
  // the station service's API
  "API_REQUEST_INVALID",
  // the serial line
  "SERIAL_PORT_NOT_FOUND",
  "SERIAL_PORT_UNAVAILABLE",
  "SERIAL_PORT_LOST",
  "PORT_DISCOVERY_UNAVAILABLE",
  "SERIAL_TIMEOUT",
  "SERIAL_PROTOCOL",
  "SERIAL_VERSION_UNSUPPORTED",
  "SERIAL_FRAME_TOO_LARGE",
  "SERIAL_LINE_NOISY",
  "DEVICE_REPORTED_ERROR",
  "LINE_STOPPED",
  // AWS IoT sync and offline bundles
  "TARGET_EXISTS",
  "TARGET_UNKNOWN",
  "TARGET_INVALID",
  "AWS_REFUSED",
  "AWS_UNAVAILABLE",
  "AWS_CREDENTIALS",
  "AWS_CA_INACTIVE",
  "BUNDLE_INVALID",
  "RECEIPT_INVALID",
  "BACKUP_INVALID",
  "BACKUP_DIR_UNSET",
  "EXPORT_DIR_UNAVAILABLE",
  "EXPORT_FILE_REFUSED",
  "RESTORE_TARGET_EXISTS",
  "RESTORE_BEHIND_TOKEN",
  "RESTORE_HEAD_MISSING",
  "RESTORE_TOKEN_MISMATCH",
  // storage and audit
  "DB_NEWER_VERSION",
  "DB_ERROR",
  "DB_FULL",
  "DB_READ_ONLY",
  "DB_IO",
  "DB_CORRUPT",
  "DB_LOCKED",
  "DB_REPLACED",
  "DB_NOT_A_STATION",
  "DB_COPY_FAILED",
  "STATION_ID_CHANGED",
  "AUDIT_CHAIN_BROKEN",
  "AUDIT_HEAD_MISMATCH",
  "AUDIT_HEAD_WRITE_FAILED",
  "AUDIT_CHECKPOINT_FAILED",
  "AUDIT_INCOMPLETE",
  "AUDIT_KEY_ROLLOVER_REQUIRED",
  "CA_KEY_MISSING",
  "FILE_WRITE_FAILED",
  "FILE_READ_FAILED",
  "HOME_UNSAFE",
  "DRIVERS_UNAVAILABLE",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface LinesignErrorOptions {
  /** Underlying error or driver code, for the log only; never shown to an operator. */
  cause?: unknown;
  /** Extra machine-readable facts (labels, paths), safe to show. */
  details?: Record<string, unknown>;
}

/** A failure with a stable code and an operator-safe message that says what to do. */
export class LinesignError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: LinesignErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LinesignError";
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `e` is a LinesignError, optionally with the given code. */
export function isLinesignError(e: unknown, code?: ErrorCode): e is LinesignError {
  return e instanceof LinesignError && (code === undefined || e.code === code);
}

/**
 * Wraps anything thrown into a LinesignError. Unknown failures become INTERNAL
 * with a generic message; the original goes into `cause` for the log.
 */
export function toLinesignError(e: unknown): LinesignError {
  if (e instanceof LinesignError) return e;
  return new LinesignError(
    "INTERNAL",
    "An unexpected error occurred. The station log has the details; report it to the station's maintainer.",
    { cause: e },
  );
}

/**
 * Whether an error means the station refused (bad input, a rule, a wrong PIN)
 * or failed (a fault in the HSM, the disk, or the station itself). Used for
 * the event log's outcome.
 */
export function outcomeOf(code: ErrorCode): "refused" | "failed" {
  switch (code) {
    case "HSM_MODULE_NOT_FOUND":
    case "HSM_MODULE_INVALID":
    case "HSM_TOKEN_NOT_FOUND":
    case "HSM_ERROR":
    case "DB_ERROR":
    case "DB_FULL":
    case "DB_READ_ONLY":
    case "DB_IO":
    case "DB_CORRUPT":
    case "DB_LOCKED":
    case "DB_REPLACED":
    case "DB_COPY_FAILED":
    case "AUDIT_HEAD_WRITE_FAILED":
    case "AUDIT_CHECKPOINT_FAILED":
    case "FILE_WRITE_FAILED":
    case "FILE_READ_FAILED":
    case "HOME_UNSAFE":
    case "DRIVERS_UNAVAILABLE":
    case "INTERNAL":
    case "SERIAL_PORT_UNAVAILABLE":
    case "SERIAL_PORT_LOST":
    case "PORT_DISCOVERY_UNAVAILABLE":
    case "AWS_UNAVAILABLE":
      return "failed";
    case "CONFIG_INVALID":
    case "CONFIG_MISSING":
    case "HOME_NOT_INITIALISED":
    case "USAGE":
    case "HSM_NO_FREE_SLOT":
    case "HSM_PIN_INCORRECT":
    case "HSM_PIN_LOCKED":
    case "HSM_PIN_REQUIRED":
    case "HSM_KEY_NOT_FOUND":
    case "HSM_MECHANISM_UNSUPPORTED":
    case "HSM_KEY_CUSTODY":
    case "CA_LABEL_EXISTS":
    case "CA_UNKNOWN":
    case "CA_INACTIVE":
    case "CA_NO_CERTIFICATE":
    case "CA_CERT_KEY_MISMATCH":
    case "CA_CERT_NOT_CA":
    case "CA_CERT_UNSUITABLE":
    case "CA_CHAIN_INVALID":
    case "CA_CERT_UNREADABLE":
    case "CA_STATE":
    case "CA_NOT_FOR_DEVICES":
    case "CA_IN_USE":
    case "SUBJECT_INVALID":
    case "KEY_TYPE_UNSUPPORTED":
    case "REGISTRATION_CODE_INVALID":
    case "DB_NEWER_VERSION":
    case "DB_NOT_A_STATION":
    case "STATION_ID_CHANGED":
    case "AUDIT_CHAIN_BROKEN":
    case "AUDIT_HEAD_MISMATCH":
    case "AUDIT_INCOMPLETE":
    case "AUDIT_KEY_ROLLOVER_REQUIRED":
    case "CA_KEY_MISSING":
    case "PROFILE_UNKNOWN":
    case "PROFILE_EXISTS":
    case "CONFIG_CHANGED":
    case "CSR_TOO_LARGE":
    case "CSR_MALFORMED":
    case "KEY_INVALID":
    case "CSR_ALGORITHM_UNSUPPORTED":
    case "CSR_SIGNATURE_INVALID":
    case "KEY_TYPE_NOT_ALLOWED":
    case "KEY_TYPE_MISMATCH":
    case "DEVICE_ID_MISSING":
    case "DEVICE_ID_MISMATCH":
    case "DEVICE_ID_INVALID":
    case "SUBJECT_TOO_LARGE":
    case "SUBJECT_FORBIDDEN":
    case "CSR_REQUESTS_CA":
    case "CSR_EXTENSION_FORBIDDEN":
    case "KEY_REUSED":
    case "DEVICE_ALREADY_ISSUED":
    case "CA_EXPIRED":
    case "ISSUANCE_UNKNOWN":
    case "ISSUANCE_STATE":
    case "CONFIRMATION_MISMATCH":
    case "WORK_ORDER_UNKNOWN":
    case "WORK_ORDER_CLOSED":
    case "WORK_ORDER_WINDOW":
    case "WORK_ORDER_DEVICE":
    case "WORK_ORDER_EXHAUSTED":
    case "WORK_ORDER_REQUIRED":
    case "AUTH_REQUIRED":
    case "AUTH_FAILED":
    case "AUTH_LOCKED":
    case "AUTH_DISABLED":
    case "ROLE_FORBIDDEN":
    case "PASSPHRASE_WEAK":
    case "LAST_OFFICER":
    case "SIGNING_SESSION_REQUIRED":
    case "SIGNING_SESSION_OPEN":
    case "API_REQUEST_INVALID":
    case "SERIAL_PORT_NOT_FOUND":
    case "SERIAL_TIMEOUT":
    case "SERIAL_PROTOCOL":
    case "SERIAL_VERSION_UNSUPPORTED":
    case "SERIAL_FRAME_TOO_LARGE":
    case "SERIAL_LINE_NOISY":
    case "DEVICE_REPORTED_ERROR":
    case "LINE_STOPPED":
    case "TARGET_EXISTS":
    case "TARGET_UNKNOWN":
    case "TARGET_INVALID":
    case "AWS_REFUSED":
    case "AWS_CREDENTIALS":
    case "AWS_CA_INACTIVE":
    case "BUNDLE_INVALID":
    case "RECEIPT_INVALID":
    case "BACKUP_INVALID":
    case "BACKUP_DIR_UNSET":
    case "EXPORT_DIR_UNAVAILABLE":
    case "EXPORT_FILE_REFUSED":
    case "RESTORE_TARGET_EXISTS":
    case "RESTORE_BEHIND_TOKEN":
    case "RESTORE_HEAD_MISSING":
    case "RESTORE_TOKEN_MISMATCH":
      return "refused";
    default: {
      const never: never = code;
      return never;
    }
  }
}

/**
 * Faults of the station itself, not of a device or a person: its storage or
 * its log head. While one stands the station signs nothing and the line
 * waits, instead of failing every device that comes.
 */
export function isStationFault(code: ErrorCode): boolean {
  return (
    code === "DB_ERROR" ||
    code === "DB_FULL" ||
    code === "DB_READ_ONLY" ||
    code === "DB_IO" ||
    code === "DB_CORRUPT" ||
    code === "DB_LOCKED" ||
    code === "DB_REPLACED" ||
    code === "AUDIT_HEAD_MISMATCH" ||
    code === "AUDIT_HEAD_WRITE_FAILED"
  );
}
