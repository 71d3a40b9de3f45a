/**
 * How the sync job judges an AWS IoT failure (../shared/docs/aws-iot.md,
 * "Errors"): by error type, never by HTTP status alone (throttling has been
 * documented as both 400 and 429).
 */
import type { IotFailure } from "./ports.js";

export type FailureKind =
  /** ResourceAlreadyExistsException: done, once the existing resource is checked to be ours. */
  | "exists"
  /** Throttling, 5xx, no answer: retry with backoff and jitter. */
  | "retry"
  /** The certificate's state (or its CA's) does not allow the operation. */
  | "state"
  /** Bad or missing credentials: nothing else at this target can work. */
  | "credentials"
  /** Validation errors, LimitExceededException, not found: recorded, not retried. */
  | "permanent";

const RETRY = new Set([
  "ThrottlingException",
  "TooManyRequestsException",
  "InternalFailureException",
  "InternalException",
  "InternalServerException",
  "ServiceUnavailableException",
  "NetworkError",
]);

/**
 * Refusals of the caller, not of the item: AWS's common errors for a bad or
 * expired key, a wrong secret (the signature does not match), a missing
 * signature, and an IAM policy that does not allow the action. Every further
 * request to the target would be refused the same way.
 */
const CREDENTIALS = new Set([
  "UnauthorizedException",
  "CredentialsProviderError",
  "ExpiredTokenException",
  "ExpiredToken",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "InvalidClientTokenId",
  "IncompleteSignatureException",
  "MissingAuthenticationTokenException",
  "AccessDeniedException",
  "AccessDenied",
]);

export function classifyFailure(f: IotFailure): FailureKind {
  if (f.name === "ResourceAlreadyExistsException") return "exists";
  if (RETRY.has(f.name) || (f.httpStatus !== null && f.httpStatus >= 500)) return "retry";
  if (f.name === "CertificateStateException") return "state";
  if (CREDENTIALS.has(f.name)) return "credentials";
  return "permanent";
}

/** Account and region from an AWS IoT ARN (arn:aws:iot:REGION:ACCOUNT:...), or nulls. */
export function arnParts(arn: string): { region: string | null; account: string | null } {
  const m = /^arn:[^:]+:iot:([^:]*):(\d*):/.exec(arn);
  return { region: m?.[1] || null, account: m?.[2] || null };
}

/** Delay before retry `attempt` (1-based): full jitter over an exponential ceiling. */
export function backoffMs(attempt: number, random: number, baseMs = 100, capMs = 5000): number {
  return Math.floor(random * Math.min(capMs, baseMs * 2 ** (attempt - 1)));
}
