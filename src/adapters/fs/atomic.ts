/** Whole-or-nothing file writes: temp file, every byte written, fsync, rename, fsync the folder. */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, basename, join } from "node:path";
import { LinesignError } from "../../domain/errors.js";

/** What to do about a write that failed with this OS code. */
const FIXES: Record<string, string> = {
  ENOSPC: "the disk is full: free space on it and try again",
  EDQUOT: "the disk quota is used up: free space and try again",
  EROFS: "the file system is read-only: write to a writable folder",
  EACCES: "this user may not write there: choose a folder it may write to",
  EPERM: "this user may not write there: choose a folder it may write to",
  ENOENT: "the folder does not exist: create it or choose another",
  ENOTDIR: "a part of the path is not a folder: check the path",
  EIO: "the disk reported an I/O error: check the disk, and write elsewhere",
  EISDIR: "the path is a folder: name a file",
};

/** What to do about a file write that failed with the OS code `code` (null when there is no advice for it). */
export function fileWriteFix(code: string): string | null {
  return FIXES[code] ?? null;
}

/** Writes all of `bytes` to `fd`: writeSync may write fewer bytes than asked. */
function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    const n = writeSync(fd, bytes, off, bytes.length - off);
    if (n <= 0) throw Object.assign(new Error("the write made no progress"), { code: "EIO" });
    off += n;
  }
}

/**
 * Writes `data` to `path` so that a crash or a full disk leaves either the
 * old file or the new one, never part of it. With `exclusive`, refuses to
 * replace an existing file. The file is created 0600 unless `mode` says otherwise.
 *
 * The folder may be another's (a removable medium): the temp file has a name nobody can guess
 * and is created new (O_EXCL, O_NOFOLLOW), so a link planted there is never written through;
 * an exclusive write links the temp file into place, which fails if the name was taken
 * meanwhile, and renames only where the file system has no hard links (FAT media).
 * @throws LinesignError FILE_WRITE_FAILED naming the path, the cause (ENOSPC, EROFS, EIO...) and the fix
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: { mode?: number; exclusive?: boolean } = {},
): void {
  reserveFile(path, options).write(data);
}

/** A file's place taken before its content exists (see reserveFile). */
export interface ReservedFile {
  readonly path: string;
  /**
   * Writes the content whole, syncs it and puts it in place: at `path`, or at
   * `name` in the same folder when the name depends on the content (a CRL's number).
   * @throws LinesignError FILE_WRITE_FAILED
   */
  write(data: string | Uint8Array, name?: string): string;
  /** Gives the place up: nothing is left behind. */
  release(): void;
}

/**
 * Takes the place of a file that is about to be made: its temp file is
 * created now, so a folder that is missing, read-only, not writable or out of
 * names, or (`exclusive`) a file already there, is refused before the content
 * is made (a CRL number or a signature spent). A disk with room for an empty
 * file but not for the content is still found only by `write`, which then
 * completes the file as writeFileAtomic does.
 * @throws LinesignError FILE_WRITE_FAILED naming the path, the cause and the fix
 */
export function reserveFile(
  path: string,
  options: { mode?: number; exclusive?: boolean; nameLater?: boolean } = {},
): ReservedFile {
  let target = path;
  const refuse = (cause: unknown, renamed: boolean): LinesignError => {
    if (cause instanceof LinesignError) return cause;
    const code = (cause as { code?: string }).code ?? "unknown";
    return new LinesignError(
      "FILE_WRITE_FAILED",
      `Could not write ${target} (${code}): ${FIXES[code] ?? "check that the folder exists and is writable"}.` +
        (renamed
          ? " The file is in place but its folder could not be synced to disk."
          : " Nothing was written."),
      { cause, details: { path: target, cause: code } },
    );
  };
  if (options.exclusive && !options.nameLater && existsSync(path)) {
    throw new LinesignError(
      "FILE_WRITE_FAILED",
      `${path} already exists and will not be overwritten.`,
      { details: { path } },
    );
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(8).toString("hex")}.tmp`);
  let fd: number | null;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      options.mode ?? 0o600,
    );
  } catch (cause) {
    throw refuse(cause, false);
  }
  const drop = (): void => {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // closing is all that is left to do
      }
      fd = null;
    }
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  };
  return {
    path,
    release: drop,
    write(data, name) {
      if (fd === null)
        throw new Error(`${path}: the reserved file was already written or released`);
      if (name !== undefined) {
        if (basename(name) !== name) throw new Error(`${name}: a name in the folder, not a path`);
        target = join(dirname(path), name);
      }
      let renamed = false;
      try {
        const f = fd;
        fchmodSync(f, options.mode ?? 0o600);
        writeAll(f, typeof data === "string" ? Buffer.from(data) : data);
        fsyncSync(f);
        fd = null;
        closeSync(f);
        if (options.exclusive) placeNew(tmp, target);
        else renameSync(tmp, target);
        renamed = true;
        const dir = openSync(dirname(path), "r");
        try {
          fsyncSync(dir);
        } finally {
          closeSync(dir);
        }
      } catch (cause) {
        if (!renamed) drop();
        throw refuse(cause, renamed);
      }
      return target;
    },
  };
}

/** Puts `tmp` at `path` only if nothing is there, at the moment of the move. */
function placeNew(tmp: string, path: string): void {
  try {
    linkSync(tmp, path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EEXIST") {
      unlinkSync(tmp);
      throw new LinesignError(
        "FILE_WRITE_FAILED",
        `${path} already exists and will not be overwritten.`,
        { details: { path } },
      );
    }
    // FAT and some network file systems have no hard links: the check before the write stands.
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV")
      throw e;
    // Without links the name is looked at once more, as late as can be: a rename replaces.
    if (existsSync(path)) {
      unlinkSync(tmp);
      throw new LinesignError(
        "FILE_WRITE_FAILED",
        `${path} already exists and will not be overwritten.`,
        { details: { path } },
      );
    }
    renameSync(tmp, path);
    return;
  }
  unlinkSync(tmp);
}
