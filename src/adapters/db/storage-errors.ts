/**
 * SQLite's and the file system's failures, in the station's words: which
 * file, what happened (the driver's code), and what to do. The adapter is
 * the only place that knows SQLite's codes.
 */
import { accessSync, constants, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { LinesignError, type ErrorCode } from "../../domain/errors.js";

/**
 * What the folder of `path` says when SQLite only reports that it cannot
 * open or write (a WAL or -shm file it could not create): read-only, or full.
 */
export function folderCause(path: string): "EROFS" | "ENOSPC" | null {
  const dir = dirname(path);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    if ((e as { code?: string }).code === "EROFS") return "EROFS";
  }
  try {
    const fs = statfsSync(dir);
    if (fs.bavail * fs.bsize < 64 * 1024) return "ENOSPC";
  } catch {
    // no answer: keep SQLite's own code
  }
  return null;
}

/** The driver's or the OS's code of an error (SQLITE_FULL, ENOSPC...), if it has one. */
export function causeCode(e: unknown): string | null {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : null;
}

const FIXES: Record<string, [ErrorCode, string]> = {
  SQLITE_FULL: [
    "DB_FULL",
    "the disk is full. Free space on it; the station goes on when there is room",
  ],
  ENOSPC: ["DB_FULL", "the disk is full. Free space on it; the station goes on when there is room"],
  SQLITE_READONLY: [
    "DB_READ_ONLY",
    'the file or its folder is read-only. Mount the station home writable (read-only commands such as "audit verify" and "audit log" still work)',
  ],
  EROFS: [
    "DB_READ_ONLY",
    'the file system is read-only. Mount the station home writable (read-only commands such as "audit verify" and "audit log" still work)',
  ],
  SQLITE_IOERR: [
    "DB_IO",
    "the disk reported an I/O error. Check the disk (dmesg, SMART); restore the station from its backup if it is failing",
  ],
  EIO: [
    "DB_IO",
    "the disk reported an I/O error. Check the disk (dmesg, SMART); restore the station from its backup if it is failing",
  ],
  SQLITE_CORRUPT: [
    "DB_CORRUPT",
    'the database file is damaged. Stop the station and restore station.db from its backup; then run "linesign audit verify"',
  ],
  SQLITE_NOTADB: [
    "DB_NOT_A_STATION",
    "the file is not an SQLite database. Put the station's own station.db back (from its backup)",
  ],
  SQLITE_BUSY: [
    "DB_LOCKED",
    "another process holds a lock on it. Let that process finish (or stop it); the station goes on when the lock goes",
  ],
  SQLITE_LOCKED: [
    "DB_LOCKED",
    "another process holds a lock on it. Let that process finish (or stop it); the station goes on when the lock goes",
  ],
  SQLITE_CANTOPEN: [
    "DB_IO",
    "it cannot be opened. Check that the station home and its files exist and are readable and writable by this user",
  ],
};

/**
 * Maps a driver or OS error on `path` to a LinesignError naming the file, the
 * cause and the fix; anything else (a LinesignError, a program error) is returned as it is.
 */
export function storageError(e: unknown, path: string): unknown {
  if (e instanceof LinesignError) return e;
  let code = causeCode(e);
  if (!code) return e;
  if (/^SQLITE_(CANTOPEN|IOERR|READONLY)/.test(code)) code = folderCause(path) ?? code;
  // SQLite's extended codes (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT) share their primary code's fix.
  const primary = Object.keys(FIXES).find((k) => code === k || code.startsWith(`${k}_`));
  if (!primary) {
    if (!code.startsWith("SQLITE_")) return e;
    return new LinesignError(
      "DB_ERROR",
      `The station database ${path} failed (${code}). Stop the station and check the disk; restore station.db from its backup if it is damaged.`,
      { cause: e, details: { path, cause: code } },
    );
  }
  const [errorCode, fix] = FIXES[primary]!;
  return new LinesignError(
    errorCode,
    `The station database ${path} cannot be used (${code}): ${fix}.`,
    {
      cause: e,
      details: { path, cause: code },
    },
  );
}
