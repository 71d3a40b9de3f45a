import { LinesignError } from "./errors.js";

const CODE = /^[0-9a-f]{64}$/;

/**
 * Checks that `code` looks like an AWS IoT registration code: 64 hexadecimal
 * characters, as GetRegistrationCode returns. Case is normalised to lower.
 * Throws REGISTRATION_CODE_INVALID saying what a code looks like and where it comes from.
 */
export function parseRegistrationCode(code: string): string {
  const trimmed = code.trim().toLowerCase();
  if (CODE.test(trimmed)) return trimmed;
  const shown = code.length > 80 ? `${code.slice(0, 77)}...` : code;
  throw new LinesignError(
    "REGISTRATION_CODE_INVALID",
    `"${shown}" is not an AWS IoT registration code. A code is 64 hexadecimal characters ` +
      `(0-9, a-f), unique to your AWS account; get it with "aws iot get-registration-code" ` +
      `or in the AWS IoT console under Security > CAs > Register CA.`,
    { details: { length: code.length } },
  );
}
