/**
 * Structured JSON-lines log in the station home, with secrets redacted.
 *
 * The structured log is for maintainers; the event log in the database is
 * the record. A log line that cannot be written (disk full, read-only home,
 * an I/O error) must never take the station down: the line is dropped, the
 * first such failure is said once on stderr with the file and the cause, and
 * writing is tried again later.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
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

/** Lines dropped while the file could not be written are counted; writing is retried after this long. */
const RETRY_MS = 5000;

/** A pino destination that appends to `path` and never throws. */
export class SafeLogFile {
  private fd: number | null = null;
  private failedAt = 0;
  private warned = false;
  /** Lines that could not be written. */
  dropped = 0;

  constructor(
    private readonly path: string,
    private readonly warn: (text: string) => void = (t) => process.stderr.write(t),
  ) {}

  write(line: string): boolean {
    if (this.failedAt && Date.now() - this.failedAt < RETRY_MS) {
      this.dropped++;
      return true;
    }
    try {
      if (this.fd === null) {
        mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
        this.fd = openSync(this.path, "a", 0o600);
      }
      const bytes = Buffer.from(line);
      let off = 0;
      while (off < bytes.length) off += writeSync(this.fd, bytes, off, bytes.length - off);
      if (this.failedAt) {
        this.failedAt = 0;
        this.warned = false;
      }
    } catch (e) {
      this.dropped++;
      this.failedAt = Date.now();
      if (this.fd !== null) {
        try {
          closeSync(this.fd);
        } catch {
          // already unusable
        }
        this.fd = null;
      }
      if (!this.warned) {
        this.warned = true;
        const code = (e as { code?: string }).code ?? String(e);
        this.warn(
          `linesign: the station's structured log ${this.path} cannot be written (${code}); its lines are dropped until it can. ` +
            "The event log in the database is unaffected where the disk allows. Free space on the disk or make the home writable.\n",
        );
      }
    }
    return true;
  }
}

/** A logger writing to `path` (created if missing, 0600); level from LINESIGN_LOG_LEVEL, default info. */
export function fileLogger(path: string, level = process.env.LINESIGN_LOG_LEVEL ?? "info"): Logger {
  const log = pino(
    {
      level,
      redact: { paths: REDACT, censor: "[redacted]" },
      base: { pid: process.pid },
      serializers: { err: pino.stdSerializers.err },
    },
    new SafeLogFile(path),
  );
  const safe =
    (fn: (fields: Record<string, unknown>, message: string) => void) =>
    (fields: Record<string, unknown>, message: string): void => {
      try {
        fn(fields, message);
      } catch {
        // serialising a strange value must not take a failure path down either
      }
    };
  return {
    info: safe((f, m) => log.info(f, m)),
    warn: safe((f, m) => log.warn(f, m)),
    error: safe((f, m) => log.error(f, m)),
  };
}

/** A logger that drops everything (before the home exists). */
export const nullLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
