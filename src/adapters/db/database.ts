/**
 * Opens the station's SQLite file: WAL, synchronous=FULL (a committed record
 * survives power loss before a certificate leaves the station), foreign keys,
 * and the schema brought up to date by numbered transactional migrations.
 */
import Database from "better-sqlite3";
import { LinesignError } from "../../domain/errors.js";
import { MIGRATIONS, type Migration } from "./migrations/index.js";

export type Db = Database.Database;

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
  let db: Db;
  try {
    db = new Database(path, { fileMustExist: !options.create });
  } catch (cause) {
    if (!options.create) {
      throw new LinesignError(
        "HOME_NOT_INITIALISED",
        `There is no station database at ${path}. Run "linesign init" first (or pass the right --home).`,
        { cause, details: { path } },
      );
    }
    throw new LinesignError("DB_ERROR", `Cannot open the station database ${path}.`, {
      cause,
      details: { path },
    });
  }
  try {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > migrations.length) {
      throw new LinesignError(
        "DB_NEWER_VERSION",
        `The station database ${path} was written by a newer Linesign (schema ${version}; this build knows up to ${migrations.length}). ` +
          `Nothing was changed. Upgrade Linesign on this station, or restore the database that matches this version.`,
        { details: { path, version, supported: migrations.length } },
      );
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
    throw new LinesignError("DB_ERROR", `Cannot prepare the station database ${path}.`, {
      cause: e,
      details: { path },
    });
  }
}
