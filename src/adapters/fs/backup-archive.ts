/**
 * The backup file: a POSIX tar archive (tar-stream) whose first entry is the
 * signed manifest and whose other entries are the files it names. Written to
 * a temporary file, synced and renamed, so a failed backup leaves nothing
 * under the name asked for; read into a staging folder with every entry's
 * name and size bounded by the manifest before a byte of it is kept.
 * tar-stream is loaded by the backup and restore commands alone.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  createWriteStream,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { once } from "node:events";
import { LinesignError } from "../../domain/errors.js";

/** The archive's first entry. */
export const MANIFEST_ENTRY = "manifest.json";
/** The signed manifest is small: it names files, it does not hold them. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** File names inside a backup: a flat name or one folder deep, nothing that climbs out. */
const ENTRY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/;

export interface ArchiveFile {
  /** Name inside the archive. */
  name: string;
  /** A file on disk, or the bytes themselves. */
  source: { path: string } | { bytes: Uint8Array };
}

/** Size and SHA-256 of a file on disk, streamed. */
export async function fileDigest(path: string): Promise<{ size: number; sha256: string }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: h.digest("hex") };
}

function writeFailed(path: string, cause: unknown): LinesignError {
  const code = (cause as { code?: string }).code ?? "unknown";
  const fix =
    code === "ENOSPC"
      ? "the disk is full: free space or write to another disk"
      : code === "EROFS"
        ? "the file system is read-only: write to a writable disk"
        : code === "ENOENT"
          ? "the folder does not exist: create it or choose another"
          : code === "EACCES" || code === "EPERM"
            ? "this user may not write there: choose a folder it may write to"
            : "check the disk and the folder";
  return new LinesignError(
    "FILE_WRITE_FAILED",
    `Could not write the backup ${path} (${code}): ${fix}. Nothing was written.`,
    { cause, details: { path, cause: code } },
  );
}

/**
 * Writes `manifest` then `files` as a tar archive at `out`, whole or not at all.
 * @throws LinesignError FILE_WRITE_FAILED naming the path and the cause
 */
export async function writeArchive(
  out: string,
  manifest: Uint8Array,
  files: ArchiveFile[],
): Promise<void> {
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  try {
    const { pack } = await import("tar-stream");
    const tar = pack();
    const sink = createWriteStream(tmp, { mode: 0o600 });
    const done = pipeline(tar, sink);
    const entry = async (name: string, source: ArchiveFile["source"]): Promise<void> => {
      if ("bytes" in source) {
        await new Promise<void>((res, rej) =>
          tar.entry({ name, mode: 0o600 }, Buffer.from(source.bytes), (e) => (e ? rej(e) : res())),
        );
        return;
      }
      const size = statSync(source.path).size;
      const stream = tar.entry({ name, size, mode: 0o600 });
      await pipeline(createReadStream(source.path), stream);
    };
    await entry(MANIFEST_ENTRY, { bytes: manifest });
    for (const f of files) await entry(f.name, f.source);
    tar.finalize();
    await done;
    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, out);
  } catch (cause) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was made
    }
    if (cause instanceof LinesignError) throw cause;
    throw writeFailed(out, cause);
  }
}

function invalid(file: string, why: string): LinesignError {
  return new LinesignError("BACKUP_INVALID", `${file} is not a usable Linesign backup: ${why}.`, {
    details: { file },
  });
}

/**
 * Reads the archive at `file` into `staging` (which exists): the manifest
 * entry first, checked by `expect` (which returns the name and size of every
 * other entry), then each named entry, refused when it is not named, is not
 * the size named, or comes twice. Returns the manifest's bytes and the
 * digests of the files written.
 * @throws LinesignError BACKUP_INVALID, FILE_READ_FAILED (and what `expect` throws)
 */
export async function readArchive(
  file: string,
  staging: string,
  expect: (manifest: Uint8Array) => Map<string, number>,
): Promise<{ manifest: Uint8Array; files: Map<string, { size: number; sha256: string }> }> {
  try {
    if (!statSync(file).isFile()) throw Object.assign(new Error("not a file"), { code: "EISDIR" });
  } catch (cause) {
    const code = (cause as { code?: string }).code ?? "unknown";
    throw new LinesignError(
      "FILE_READ_FAILED",
      `Cannot read the backup ${file} (${code}): check the path and that this user may read it.`,
      { cause, details: { path: file, cause: code } },
    );
  }
  let manifest: Uint8Array | null = null;
  let sizes: Map<string, number> | null = null;
  const files = new Map<string, { size: number; sha256: string }>();
  const { extract } = await import("tar-stream");
  const src = createReadStream(file);
  const tar = extract();
  src.on("error", (e) => tar.destroy(e));
  src.pipe(tar);
  try {
    for await (const entry of tar) {
      const h = entry.header;
      if (h.type !== "file" || !ENTRY_NAME.test(h.name))
        throw invalid(file, `it holds an entry "${h.name.slice(0, 80)}" no backup has`);
      if (manifest === null) {
        if (h.name !== MANIFEST_ENTRY || h.size > MAX_MANIFEST_BYTES)
          throw invalid(file, `its first entry is not the ${MANIFEST_ENTRY} a backup starts with`);
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        manifest = Buffer.concat(chunks);
        sizes = expect(manifest);
        continue;
      }
      const size = sizes!.get(h.name);
      if (size === undefined || files.has(h.name))
        throw invalid(file, `it holds "${h.name}", which its manifest does not name`);
      if (h.size !== size)
        throw invalid(file, `"${h.name}" is ${h.size} bytes, its manifest says ${size}`);
      const path = join(staging, h.name);
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const out = createWriteStream(path, { mode: 0o600, flags: "wx" });
      const hash = createHash("sha256");
      for await (const c of entry) {
        hash.update(c as Buffer);
        if (!out.write(c)) await once(out, "drain");
      }
      await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
      files.set(h.name, { size: h.size, sha256: hash.digest("hex") });
    }
  } catch (cause) {
    src.destroy();
    if (cause instanceof LinesignError) throw cause;
    throw invalid(file, `it cannot be read as a backup archive (${(cause as Error).message})`);
  }
  if (manifest === null) throw invalid(file, "it holds nothing");
  for (const name of sizes!.keys())
    if (!files.has(name)) throw invalid(file, `"${name}" named in its manifest is missing`);
  return { manifest, files };
}
