/**
 * Reads an input file with a bound: at most `limit` + 1 bytes are ever read,
 * so an endless or huge input (`/dev/zero`, a device node, a file grown by
 * someone else) is refused after the limit instead of filling memory.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { LinesignError } from "../../domain/errors.js";

/** Input size limits, by what is read. */
export const READ_LIMITS = {
  /** A certificate signing request (DER or PEM). */
  csr: 64 * 1024,
  /** A certificate or a chain (PEM). */
  certificate: 1024 * 1024,
  /** station.json. */
  config: 1024 * 1024,
  /** A device list for a work order. */
  deviceList: 16 * 1024 * 1024,
  /** An audit export or an offline bundle. */
  bundle: 512 * 1024 * 1024,
  /** A receipt from the online machine. */
  receipt: 64 * 1024 * 1024,
  /** A JITP template, a software key. */
  small: 64 * 1024,
} as const;

/** A limit in words: "64 MiB", "64 KiB". */
export function mib(n: number): string {
  return n >= 1024 * 1024 ? `${Math.round(n / (1024 * 1024))} MiB` : `${Math.round(n / 1024)} KiB`;
}

/**
 * The file's bytes, refused when it holds more than `limit`.
 * @throws LinesignError FILE_READ_FAILED (cannot be read, or larger than the limit; names the file)
 */
export function readFileBounded(path: string, what: string, limit: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (cause) {
    throw new LinesignError("FILE_READ_FAILED", `Cannot read ${what} ${path}: check the path.`, {
      cause,
      details: { path },
    });
  }
  const tooLarge = () =>
    new LinesignError(
      "FILE_READ_FAILED",
      `${what[0]!.toUpperCase()}${what.slice(1)} ${path} is larger than ${mib(limit)}: it is not one, or name the right file.`,
      { details: { path, limit } },
    );
  try {
    const st = fstatSync(fd);
    if (st.isDirectory())
      throw new LinesignError("FILE_READ_FAILED", `${path} is a folder, not ${what}.`, {
        details: { path },
      });
    if (st.isFile() && st.size > limit) throw tooLarge();
    return readFdBounded(fd, limit, tooLarge);
  } catch (e) {
    if (e instanceof LinesignError) throw e;
    throw new LinesignError("FILE_READ_FAILED", `Cannot read ${what} ${path}: check the path.`, {
      cause: e,
      details: { path },
    });
  } finally {
    closeSync(fd);
  }
}

/**
 * What is left to read from `fd`, in chunks of 64 KiB; `tooLarge()` is thrown
 * as soon as more than `limit` bytes came (a file that grew, a device without end).
 */
export function readFdBounded(fd: number, limit: number, tooLarge: () => Error): Uint8Array {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const want = Math.min(64 * 1024, limit + 1 - total);
    const buf = Buffer.allocUnsafe(want);
    const n = readSync(fd, buf, 0, want, null);
    if (n === 0) break;
    chunks.push(n === want ? buf : buf.subarray(0, n));
    total += n;
    if (total > limit) throw tooLarge();
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

/** The same, as UTF-8 text; refused when the bytes are not UTF-8. */
export function readTextBounded(path: string, what: string, limit: number): string {
  const bytes = readFileBounded(path, what, limit);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new LinesignError("FILE_READ_FAILED", `${path} is not UTF-8 text (${what}).`, {
      cause,
      details: { path },
    });
  }
}
