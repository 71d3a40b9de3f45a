/**
 * The station home: one folder holding station.json, the SQLite database,
 * logs, and (development stations only) the SoftHSM config, tokens and the
 * development root key.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { homedir } from "node:os";
import { parseStationConfig, type StationConfig } from "../../domain/config.js";
import { LinesignError } from "../../domain/errors.js";
import { reserveFile, writeFileAtomic, type ReservedFile } from "./atomic.js";
import { READ_LIMITS, readTextBounded } from "./bounded-read.js";

export class StationHome {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /** `--home`, else LINESIGN_HOME, else ~/.linesign. */
  static locate(explicit: string | undefined, env: NodeJS.ProcessEnv): StationHome {
    return new StationHome(explicit ?? env.LINESIGN_HOME ?? join(homedir(), ".linesign"));
  }

  get configPath(): string {
    return join(this.dir, "station.json");
  }
  get databasePath(): string {
    return join(this.dir, "station.db");
  }
  get logPath(): string {
    return join(this.dir, "logs", "linesign.log");
  }
  get devRootKeyPath(): string {
    return join(this.dir, "dev-root.key.pem");
  }
  /** The signed log head, for a token that keeps no data objects (audit.headStore "signed-head"). */
  get headFilePath(): string {
    return join(this.dir, "log-head.json");
  }
  /** What the second copy of the database (backup.copy) last did. */
  get copyStatePath(): string {
    return join(this.dir, "copy-state.json");
  }
  get softhsmConfPath(): string {
    return join(this.dir, "softhsm2.conf");
  }
  get softhsmTokenDir(): string {
    return join(this.dir, "tokens");
  }

  exists(): boolean {
    return existsSync(this.configPath);
  }

  ensureDirs(): void {
    try {
      process.umask(0o077);
      mkdirSync(join(this.dir, "logs"), { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new LinesignError("FILE_WRITE_FAILED", `Cannot create the station home ${this.dir}.`, {
        cause,
      });
    }
  }

  /**
   * Makes every file this process creates private (umask 077: the database,
   * its -wal and -shm, the log, the socket are 0600 whatever the folder), and
   * refuses a home other users can read or write: the passphrase hashes and
   * the log are in it.
   * @throws LinesignError HOME_UNSAFE
   */
  checkPrivate(): void {
    process.umask(0o077);
    let st;
    try {
      st = statSync(this.dir);
    } catch {
      return; // a missing home is reported by whoever needs it
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid && uid !== 0)
      throw new LinesignError(
        "HOME_UNSAFE",
        `The station home ${this.dir} belongs to another user: run Linesign as its owner, or choose another home.`,
        { details: { home: this.dir } },
      );
    if ((st.mode & 0o077) !== 0)
      throw new LinesignError(
        "HOME_UNSAFE",
        `The station home ${this.dir} can be read or written by other users (mode ${(st.mode & 0o777).toString(8)}): run "chmod 700 ${this.dir}" (and "chmod -R go= ${this.dir}"), then start again.`,
        { details: { home: this.dir, mode: (st.mode & 0o777).toString(8) } },
      );
  }

  /** Reads and validates station.json. @throws LinesignError HOME_NOT_INITIALISED, HOME_UNSAFE, CONFIG_INVALID */
  readConfig(): Readonly<StationConfig> {
    this.checkPrivate();
    if (!this.exists()) {
      throw new LinesignError(
        "HOME_NOT_INITIALISED",
        `${this.dir} is not a Linesign station home (no station.json). Run "linesign init" (or "linesign init --dev"), or pass --home / LINESIGN_HOME.`,
        { details: { home: this.dir } },
      );
    }
    let raw: unknown;
    try {
      raw = JSON.parse(
        readTextBounded(this.configPath, "the station configuration", READ_LIMITS.config),
      );
    } catch (cause) {
      if (cause instanceof LinesignError) throw cause;
      throw new LinesignError(
        "CONFIG_INVALID",
        `${this.configPath} is not valid JSON. Fix it or restore it from a backup.`,
        { cause },
      );
    }
    return parseStationConfig(raw, this.configPath);
  }

  writeConfig(config: StationConfig): void {
    writeFileAtomic(this.configPath, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  }

  writeFile(path: string, data: string, mode = 0o600): void {
    writeFileAtomic(path, data, { mode });
  }

  /**
   * Takes the place of a file named on the command line before its content is
   * made (signed), so that a folder that cannot take it costs nothing.
   * @throws LinesignError FILE_WRITE_FAILED
   */
  reserveFile(path: string, mode = 0o600): ReservedFile {
    return reserveFile(path, { mode });
  }
}
