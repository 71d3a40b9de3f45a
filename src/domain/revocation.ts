/**
 * Revocation reasons (RFC 5280, 5.3.1) a station may record. certificateHold
 * and removeFromCRL are left out: a device certificate is revoked for good.
 */
import { LinesignError } from "./errors.js";

export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

export function parseRevocationReason(value: string): RevocationReason {
  if (Object.hasOwn(REVOCATION_REASONS, value)) return value as RevocationReason;
  throw new LinesignError(
    "USAGE",
    `"${value}" is not a revocation reason. Use one of: ${Object.keys(REVOCATION_REASONS).join(", ")}.`,
  );
}
