/** Whole-or-nothing file writes: temp file, fsync, rename, fsync the folder. */
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, basename, join } from "node:path";
import { LinesignError } from "../../domain/errors.js";

/**
 * Writes `data` to `path` so that a crash leaves either the old file or the
 * new one, never half of it. With `exclusive`, refuses to replace an existing file.
 * @throws LinesignError FILE_WRITE_FAILED
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: { mode?: number; exclusive?: boolean } = {},
): void {
  if (options.exclusive && existsSync(path)) {
    throw new LinesignError(
      "FILE_WRITE_FAILED",
      `${path} already exists and will not be overwritten.`,
      { details: { path } },
    );
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, "w", options.mode ?? 0o644);
    try {
      writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dir = openSync(dirname(path), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (cause) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may not exist
    }
    throw new LinesignError(
      "FILE_WRITE_FAILED",
      `Could not write ${path}. Check the folder exists and is writable.`,
      { cause, details: { path } },
    );
  }
}
