/**
 * Opens the station's SQLite file: WAL, synchronous=FULL (a committed record
 * survives power loss before a certificate leaves the station), foreign keys,
 * and the schema brought up to date by numbered transactional migrations.
 */
import { copyFileSync, existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { LinesignError } from "../../domain/errors.js";
import { folderCause, storageError } from "./storage-errors.js";
import { MIGRATIONS, type Migration } from "./migrations/index.js";

export type Db = Database.Database;

/**
 * On a read-only file system SQLite cannot make the WAL's -shm file, so it
 * cannot even read. The file cannot change there either: the log is read
 * from a copy in a private temporary folder, opened read-only, so that
 * reading commands (audit log, audit verify) still work; writes are refused
 * as SQLITE_READONLY, named as the station's own file.
 */
function readOnlySnapshot(db: Db, path: string): Db {
  db.close();
  const dir = mkdtempSync(join(tmpdir(), "linesign-readonly-"));
  for (const suffix of ["", "-wal"]) {
    if (existsSync(path + suffix)) copyFileSync(path + suffix, join(dir, "station.db" + suffix));
  }
  const copy = new Database(join(dir, "station.db"), { fileMustExist: true });
  // Fold the WAL in on the copy and leave WAL mode, so a read-only connection needs no -shm.
  copy.pragma("journal_mode = DELETE");
  copy.close();
  return new Database(join(dir, "station.db"), { readonly: true, fileMustExist: true });
}

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Opens (creating if `create`) the database at `path` and migrates it.
 * @throws LinesignError DB_NEWER_VERSION when the file was written by a newer Linesign;
 *   HOME_NOT_INITIALISED when it does not exist and `create` is false; DB_ERROR otherwise.
 */
export function openDatabase(
  path: string,
  options: { create: boolean; migrations?: readonly Migration[] },
): Db {
  const migrations = options.migrations ?? MIGRATIONS;
  if (!options.create && existsSync(path) && statSync(path).size === 0) {
    // SQLite would take an empty file as a new database and migrate it into an empty log.
    throw new LinesignError(
      "DB_NOT_A_STATION",
      `The station database ${path} is empty (0 bytes): the station's records are not there. ` +
        "Nothing was changed. Put the station's own station.db back (from its backup); do not run init over it.",
      { details: { path } },
    );
  }
  let db: Db;
  try {
    db = new Database(path, { fileMustExist: !options.create });
    // Reading a WAL database needs its -shm file: on a read-only or full disk, read a copy.
    if (!options.create && folderCause(path) !== null) db = readOnlySnapshot(db, path);
  } catch (cause) {
    if (!options.create) {
      throw new LinesignError(
        "HOME_NOT_INITIALISED",
        `There is no station database at ${path}. Run "linesign init" first (or pass the right --home).`,
        { cause, details: { path } },
      );
    }
    const mapped = storageError(cause, path);
    if (mapped instanceof LinesignError) throw mapped;
    throw new LinesignError("DB_ERROR", `Cannot open the station database ${path}.`, {
      cause,
      details: { path },
    });
  }
  try {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (!options.create && version === 0) {
      throw new LinesignError(
        "DB_NOT_A_STATION",
        `${path} is not a Linesign station database (it has no Linesign schema). ` +
          "Nothing was changed. Put the station's own station.db back (from its backup); do not run init over it.",
        { details: { path } },
      );
    }
    if (version > migrations.length) {
      throw new LinesignError(
        "DB_NEWER_VERSION",
        `The station database ${path} was written by a newer Linesign (schema ${version}; this build knows up to ${migrations.length}). ` +
          `Nothing was changed. Upgrade Linesign on this station, or restore the database that matches this version.`,
        { details: { path, version, supported: migrations.length } },
      );
    }
    if (db.readonly) {
      if (version < migrations.length)
        throw new LinesignError(
          "DB_READ_ONLY",
          `The station database ${path} is on a read-only file system and needs its schema brought up to date (schema ${version}, this build ${migrations.length}): mount it writable once.`,
          { details: { path } },
        );
      return db;
    }
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    for (const m of migrations.slice(version)) {
      db.transaction(() => {
        db.exec(m.sql);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    }
    return db;
  } catch (e) {
    db.close();
    if (e instanceof LinesignError) throw e;
    const mapped = storageError(e, path);
    if (mapped instanceof LinesignError) throw mapped;
    throw new LinesignError("DB_ERROR", `Cannot prepare the station database ${path}.`, {
      cause: e,
      details: { path },
    });
  }
}
