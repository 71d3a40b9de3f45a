/**
 * The station's export folder: where the kiosk writes the files an officer
 * carries away (CRLs, offline bundles) and takes the files brought back
 * (receipts). A person at the kiosk names only a file in this folder, never
 * a path: names are plain (no folder part, no leading dot), a link is never
 * followed, only regular files are read and only up to a limit, and nothing
 * is ever written over an existing file.
 */
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  statSync,
} from "node:fs";
import { join } from "node:path";
import { LinesignError } from "../../domain/errors.js";
import { reserveFile, type ReservedFile } from "./atomic.js";
import { mib, readFdBounded } from "./bounded-read.js";

/** A file's name in the folder: letters, digits, '.', '_', '-', starting with a letter or digit. */
export const EXPORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** At most this many files are listed (newest first). */
const MAX_LISTED = 200;

export interface ExportFile {
  name: string;
  size: number;
  modifiedAt: string;
}

export class ExportFolder {
  /**
   * @param dir the folder (absolute)
   * @param configured set in station.json (a removable medium: never created here,
   *   since a medium that is not mounted would leave its mount point on the system disk);
   *   otherwise the home's own folder, made when first written to
   */
  constructor(
    readonly dir: string,
    readonly configured: boolean,
    /** The station home: a configured folder on its disk (or on the system's) is no medium. */
    private readonly homeDir?: string,
  ) {}

  /**
   * Checks the folder is there, is a folder, and (`write`) may be written.
   * @throws LinesignError EXPORT_DIR_UNAVAILABLE naming the folder, the cause and the fix
   */
  check(write: boolean): void {
    const fix = this.configured
      ? 'insert the removable medium, or set "export.dir" in station.json to a folder that exists'
      : "check the station home's disk";
    const refuse = (why: string, cause?: unknown): LinesignError =>
      new LinesignError("EXPORT_DIR_UNAVAILABLE", `The export folder ${this.dir} ${why}: ${fix}.`, {
        cause,
        details: { dir: this.dir },
      });
    let isDir: boolean;
    try {
      isDir = statSync(this.dir).isDirectory();
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      if (code !== "ENOENT") throw refuse(`cannot be read (${code ?? "unknown"})`, cause);
      if (this.configured || !write) throw refuse("does not exist", cause);
      try {
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw refuse(`cannot be made (${(e as { code?: string }).code ?? "unknown"})`, e);
      }
      isDir = true;
    }
    if (!isDir) throw refuse("is not a folder");
    // A medium that is not mounted leaves its mount point, an empty folder on the
    // system's disk: what would be written there never leaves the station.
    if (this.configured) {
      const own = this.ownDisk();
      if (own) throw refuse(`is on ${own}, not on a medium of its own: nothing is mounted there`);
    }
    if (!write) return;
    try {
      accessSync(this.dir, constants.W_OK);
    } catch (cause) {
      throw refuse(`may not be written by this user (${(cause as { code?: string }).code})`, cause);
    }
  }

  /** Which of the station's own disks (the system's, the home's) the folder is on, if one. */
  private ownDisk(): string | null {
    const dev = (p: string): number | null => {
      try {
        return statSync(p).dev;
      } catch {
        return null;
      }
    };
    const here = dev(this.dir);
    if (here === null) return null;
    if (here === dev("/")) return "the system's disk";
    if (this.homeDir && here === dev(this.homeDir))
      return `the disk of the station home ${this.homeDir}`;
    return null;
  }

  /**
   * Takes the place of a new file in the folder before its content is made
   * (signed); `write(data, name)` on the answer puts it there whole as `name`
   * (a plain name, never over an existing file).
   * @throws LinesignError EXPORT_DIR_UNAVAILABLE, FILE_WRITE_FAILED
   */
  reserve(): ReservedFile {
    this.check(true);
    // Its name comes with its content (a CRL's number): the place is a temp file of the
    // folder's, and the name is checked when the file is put there.
    const file = reserveFile(join(this.dir, "new"), {
      mode: 0o644,
      exclusive: true,
      nameLater: true,
    });
    return {
      path: file.path,
      release: () => file.release(),
      write: (data, name) => {
        if (name === undefined || !EXPORT_NAME.test(name)) {
          file.release();
          throw new LinesignError(
            "USAGE",
            `"${String(name).slice(0, 60)}" is not a plain file name.`,
          );
        }
        return file.write(data, name);
      },
    };
  }

  /**
   * The regular files in the folder (links and folders left out), newest first, at most 200.
   * An absent home folder lists nothing.
   * @throws LinesignError EXPORT_DIR_UNAVAILABLE
   */
  list(): ExportFile[] {
    if (!this.configured) {
      try {
        statSync(this.dir);
      } catch {
        return [];
      }
    }
    this.check(false);
    const out: ExportFile[] = [];
    let entries;
    try {
      entries = readdirSync(this.dir, { withFileTypes: true });
    } catch (cause) {
      throw new LinesignError(
        "EXPORT_DIR_UNAVAILABLE",
        `The export folder ${this.dir} cannot be listed (${(cause as { code?: string }).code ?? "unknown"}): check the medium.`,
        { cause, details: { dir: this.dir } },
      );
    }
    for (const e of entries) {
      if (!e.isFile() || !EXPORT_NAME.test(e.name)) continue;
      try {
        const st = statSync(join(this.dir, e.name));
        out.push({ name: e.name, size: st.size, modifiedAt: st.mtime.toISOString() });
      } catch {
        // gone since it was listed
      }
    }
    return out
      .sort((a, b) => b.modifiedAt.localeCompare(a.modifiedAt) || a.name.localeCompare(b.name))
      .slice(0, MAX_LISTED);
  }

  /**
   * The bytes of the file `name` in the folder: a plain name, a regular file
   * (a link is refused, not followed), at most `limit` bytes.
   * @throws LinesignError EXPORT_FILE_REFUSED (name, link, not a file, too large, absent), EXPORT_DIR_UNAVAILABLE, FILE_READ_FAILED
   */
  read(name: string, what: string, limit: number): Uint8Array {
    const refuse = (why: string, cause?: unknown) =>
      new LinesignError(
        "EXPORT_FILE_REFUSED",
        `${what[0]!.toUpperCase()}${what.slice(1)} ${why}.`,
        {
          cause,
          details: { dir: this.dir, name: name.slice(0, 200) },
        },
      );
    if (!EXPORT_NAME.test(name))
      throw refuse(
        `"${name.slice(0, 60)}" is not the name of a file in the export folder ${this.dir} (a plain name, no folder part)`,
      );
    this.check(false);
    const path = join(this.dir, name);
    let fd: number;
    try {
      // O_NOFOLLOW: a link (to anywhere) is refused; O_NONBLOCK: a FIFO does not hang the open.
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      throw refuse(
        code === "ELOOP"
          ? `${path} is a link: only files in the export folder itself are taken`
          : code === "ENOENT"
            ? `${path} is not there: choose a file from the list`
            : `${path} cannot be read (${code ?? "unknown"})`,
        cause,
      );
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw refuse(`${path} is not a plain file`);
      const tooLarge = () => refuse(`${path} is larger than ${mib(limit)}: it is not one`);
      if (st.size > limit) throw tooLarge();
      // Read with the bound again: the file may have grown since it was looked at.
      return readFdBounded(fd, limit, tooLarge);
    } catch (e) {
      if (e instanceof LinesignError) throw e;
      throw new LinesignError(
        "FILE_READ_FAILED",
        `Cannot read ${what} ${path}: check the medium.`,
        {
          cause: e,
          details: { path },
        },
      );
    } finally {
      closeSync(fd);
    }
  }
}
