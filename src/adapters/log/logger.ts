/** Structured JSON-lines log in the station home, with secrets redacted. */
import pino from "pino";
import type { Logger } from "../../domain/logger.js";

const REDACT = [
  "pin",
  "*.pin",
  "soPin",
  "*.soPin",
  "userPin",
  "*.userPin",
  "passphrase",
  "*.passphrase",
  "password",
  "*.password",
];

/** A logger writing to `path` (created if missing); level from LINESIGN_LOG_LEVEL, default info. */
export function fileLogger(path: string, level = process.env.LINESIGN_LOG_LEVEL ?? "info"): Logger {
  const log = pino(
    {
      level,
      redact: { paths: REDACT, censor: "[redacted]" },
      base: { pid: process.pid },
      serializers: { err: pino.stdSerializers.err },
    },
    pino.destination({ dest: path, mkdir: true, sync: true }),
  );
  return {
    info: (fields, message) => log.info(fields, message),
    warn: (fields, message) => log.warn(fields, message),
    error: (fields, message) => log.error(fields, message),
  };
}

/** A logger that drops everything (before the home exists). */
export const nullLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
