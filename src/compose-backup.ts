/**
 * `linesign backup` and `linesign restore`, wired: the database's online
 * snapshot, the files, the signed manifest (src/app/backup.ts) and the
 * archive (src/adapters/fs/backup-archive.ts). A restore is staged in a
 * folder inside the new home, checked, opened as a station to compare its
 * log with the token, and only then moved into place.
 */
import { createHash, randomUUID } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { act } from "./app/context.js";
import {
  BACKUP_FILES,
  BACKUP_FORMAT,
  checkContents,
  openManifest,
  signManifest,
  type BackupManifest,
} from "./app/backup.js";
import { describeBinding } from "./app/checkpoint.js";
import { createStationCertificate, pemOfDer } from "./app/pki/certificates.js";
import {
  fileDigest,
  readArchive,
  writeArchive,
  type ArchiveFile,
} from "./adapters/fs/backup-archive.js";
import { readFileBounded, READ_LIMITS } from "./adapters/fs/bounded-read.js";
import { SCHEMA_VERSION } from "./adapters/db/database.js";
import { LinesignError } from "./domain/errors.js";
import { softwareVersion, type Station } from "./compose.js";

export interface BackupResult {
  out: string;
  id: string;
  /** The log head the backup covers. */
  head: { seq: number; hash: string } | null;
  files: number;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function inside(dir: string, path: string): boolean {
  const r = relative(dir, path);
  return r === "" || (!r.startsWith("..") && !r.startsWith(sep) && r !== "..");
}

/**
 * Writes a backup of `s` to `out`: a consistent snapshot of the database
 * taken while the line may run, station.json, the CA certificates and the
 * station certificate, under a manifest signed by the audit key naming the
 * log head the snapshot ends at. The token's head is then moved to that head
 * (a signed checkpoint) and held there for the rest of the command, so
 * restoring this backup with this token finds it whole; whatever the station records after it is named as missing by a
 * restore.
 * @throws LinesignError USAGE (a backup inside the home), FILE_WRITE_FAILED, the token's and the database's errors
 */
export async function backupStation(s: Station, out: string): Promise<BackupResult> {
  const ctx = s.ctx;
  const target = resolve(out);
  return act(ctx, "station.backup", target, async () => {
    if (inside(s.home.dir, target))
      throw new LinesignError(
        "USAGE",
        `${target} is inside the station home ${s.home.dir}: a backup there is lost with it. Write it to another disk or removable media.`,
        { details: { out: target } },
      );
    // The audit key first: when this makes it, its entry is inside the backup.
    const signer = await s.checkpointer.signer();
    const id = randomUUID();
    ctx.store.appendEvent({
      actor: ctx.actor,
      action: "backup.snapshot",
      subject: target,
      outcome: "ok",
      details: { backup: id },
    });
    let staging: string;
    try {
      staging = mkdtempSync(join(dirname(target), ".linesign-backup-"));
    } catch (cause) {
      const code = (cause as { code?: string }).code ?? "unknown";
      throw new LinesignError(
        "FILE_WRITE_FAILED",
        `Could not write the backup ${target} (${code}): check that its folder exists and this user may write there. Nothing was written.`,
        { cause, details: { path: target, cause: code } },
      );
    }
    try {
      const dbCopy = join(staging, BACKUP_FILES.database);
      const head = await ctx.store.backupTo(dbCopy);
      const config = readFileBounded(
        s.home.configPath,
        "the station configuration",
        READ_LIMITS.config,
      );
      const stationCert = new TextEncoder().encode(
        (await createStationCertificate(ctx.stationId, signer)).toString("pem") + "\n",
      );
      const inline: { name: string; bytes: Uint8Array }[] = [
        { name: BACKUP_FILES.config, bytes: config },
        { name: BACKUP_FILES.stationCert, bytes: stationCert },
        ...ctx.store
          .listCas()
          .filter((c) => c.certDer)
          .map((c) => ({
            name: BACKUP_FILES.ca(c.label),
            bytes: new TextEncoder().encode(pemOfDer(c.certDer!)),
          })),
      ];
      const files: ArchiveFile[] = [
        { name: BACKUP_FILES.database, source: { path: dbCopy } },
        ...inline.map((f) => ({ name: f.name, source: { bytes: f.bytes } })),
      ];
      const manifest: BackupManifest = {
        format: BACKUP_FORMAT,
        id,
        station: ctx.stationId,
        createdAt: ctx.clock.now().toISOString(),
        software: softwareVersion(),
        schema: SCHEMA_VERSION,
        token: ctx.tokenLabel,
        head,
        files: [
          { name: BACKUP_FILES.database, ...(await fileDigest(dbCopy)) },
          ...inline.map((f) => ({ name: f.name, size: f.bytes.length, sha256: sha256(f.bytes) })),
        ],
      };
      await writeArchive(target, await signManifest(manifest, signer), files);
      // The token's head at the snapshot's: restoring this backup with this token finds it whole.
      await s.checkpointer.checkpoint();
      if (head) s.checkpointer.holdAt(head.seq);
      return { out: target, id, head, files: files.length };
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  });
}

/** A backup read into a staging folder inside the home it will become. */
export interface StagedRestore {
  file: string;
  home: string;
  /** The staging folder: a station home, checked, not yet in place. */
  dir: string;
  manifest: BackupManifest;
  spki: Uint8Array;
}

/**
 * Reads and checks the backup `file` into a staging folder inside `home`
 * (made if missing): the manifest's signature, every file against it, the
 * station certificate against the key that signed it.
 * @throws LinesignError RESTORE_TARGET_EXISTS, BACKUP_INVALID, FILE_READ_FAILED, FILE_WRITE_FAILED
 */
export async function stageRestore(file: string, home: string): Promise<StagedRestore> {
  const target = resolve(home);
  if (existsSync(join(target, "station.json")) || existsSync(join(target, "station.db")))
    throw new LinesignError(
      "RESTORE_TARGET_EXISTS",
      `${target} already holds a station: a restore never writes over one. Restore into an empty folder (--home).`,
      { details: { home: target } },
    );
  let dir: string;
  try {
    mkdirSync(target, { recursive: true, mode: 0o700 });
    dir = mkdtempSync(join(target, ".restore-"));
  } catch (cause) {
    const code = (cause as { code?: string }).code ?? "unknown";
    throw new LinesignError(
      "FILE_WRITE_FAILED",
      `Cannot create the station home ${target} (${code}): choose a folder this user may write to.`,
      { cause, details: { path: target, cause: code } },
    );
  }
  try {
    let opened: ReturnType<typeof openManifest> | null = null;
    const read = await readArchive(file, dir, (bytes) => {
      opened = openManifest(file, bytes);
      return new Map(opened.manifest.files.map((f) => [f.name, f.size]));
    });
    const { manifest, spki } = opened!;
    checkContents(
      file,
      manifest,
      spki,
      read.files,
      readFileSync(join(dir, BACKUP_FILES.stationCert), "utf8"),
    );
    return { file, home: target, dir, manifest, spki };
  } catch (e) {
    discardRestore({ dir, home: target });
    throw e;
  }
}

export interface RestoreVerdict {
  ok: boolean;
  /** Why a restore that is not ok is refused (absent when ok). */
  code?: "RESTORE_BEHIND_TOKEN" | "RESTORE_HEAD_MISSING";
  /** The restore's entry in the restored log. */
  seq: number;
  head: BackupManifest["head"];
  tokenSeq: number | null;
  /** Entries the token knows and the backup lacks. */
  missing: { from: number; to: number } | null;
  message: string;
}

/**
 * Compares the staged station (opened on the staging folder, its officer
 * signed in) with the token: the audit key that signed the backup must be
 * the token's, and the token's head must be an entry of the restored log
 * (equal to or behind the backup's head). Records the restore either way.
 * @throws LinesignError RESTORE_TOKEN_MISMATCH, BACKUP_INVALID, the token's errors
 */
export async function compareRestore(s: Station, staged: StagedRestore): Promise<RestoreVerdict> {
  const ctx = s.ctx;
  const m = staged.manifest;
  return act(ctx, "station.restore", staged.home, async () => {
    if (ctx.stationId !== m.station)
      throw new LinesignError(
        "BACKUP_INVALID",
        `${staged.file} is not a usable Linesign backup: its station.json names station "${ctx.stationId}", its manifest "${m.station}".`,
      );
    if (m.head && ctx.store.eventAt(m.head.seq)?.hash !== m.head.hash)
      throw new LinesignError(
        "BACKUP_INVALID",
        `${staged.file} is not a usable Linesign backup: its database does not end at the head its manifest names (entry ${m.head.seq}).`,
      );
    const tokenKey = await s.checkpointer.tokenAuditKeySpki();
    if (!tokenKey || !Buffer.from(tokenKey).equals(Buffer.from(staged.spki)))
      throw new LinesignError(
        "RESTORE_TOKEN_MISMATCH",
        `Token "${ctx.tokenLabel}" does not hold the audit key that signed this backup (${tokenKey ? "it holds another" : "it holds none"}): ` +
          "connect the station's own token and restore again. Nothing was restored.",
        { details: { token: ctx.tokenLabel } },
      );
    // The log as the backup holds it: the restored station's own entries (sign-in) come after.
    const b = await s.checkpointer.binding(m.head?.seq ?? 0);
    const details = {
      backup: m.id,
      createdAt: m.createdAt,
      file: staged.file,
      covered: m.head,
      binding: { ...b },
    };
    if (b.state === "bound") {
      const entry = ctx.store.appendEvent({
        actor: ctx.actor,
        action: "station.restore",
        subject: staged.home,
        outcome: "ok",
        message: `Restored backup ${m.id} of ${m.createdAt} (entries 1 to ${m.head?.seq ?? 0}).`,
        details,
      });
      // The token's head moves to the restore's entry.
      await s.checkpointer.advance();
      return {
        ok: true,
        seq: entry.seq,
        head: m.head,
        tokenSeq: b.tokenSeq,
        missing: null,
        message: `Restored backup ${m.id} of ${m.createdAt} into ${staged.home}: its log (entries 1 to ${m.head?.seq ?? 0}) agrees with token "${ctx.tokenLabel}"${b.tokenSeq ? ` (its head is entry ${b.tokenSeq})` : ""}.`,
      };
    }
    const missing = b.state === "gap" ? { from: b.from, to: b.to } : null;
    // A head kept in a file (a token without data objects) is lost with the disk that held it:
    // nothing then tells whether the station went on after the backup.
    const headLost = b.state === "missing" && s.checkpointer.headStore.kind === "signed-head";
    const what = headLost
      ? `the signed log head is not there (${s.checkpointer.headStore.where}), so nothing shows whether the station recorded more after entry ${m.head?.seq ?? 0}`
      : describeBinding(b);
    const code = headLost ? "RESTORE_HEAD_MISSING" : "RESTORE_BEHIND_TOKEN";
    const message = headLost
      ? `Restored backup ${m.id} of ${m.createdAt} into ${staged.home}, but its log cannot be compared: ${what}. ` +
        "If the head file survives (audit.headFile on other media, or the failed disk's copy), put it back there: the station compares it at its next start " +
        "and refuses, naming the missing entries, if the backup is older. Otherwise a security officer records that entries after the backup cannot be known " +
        '("linesign audit accept-loss --reason ..."). The restored station signs nothing until then.'
      : `Restored backup ${m.id} of ${m.createdAt} into ${staged.home}, but token "${ctx.tokenLabel}" is ahead of it: ${what}. ` +
        'The restored station signs nothing until a security officer accepts the loss ("linesign audit accept-loss --reason ...") or restores a newer backup.';
    const entry = ctx.store.appendEvent({
      actor: ctx.actor,
      action: "station.restore",
      subject: staged.home,
      outcome: "refused",
      code,
      message,
      details: { ...details, what, ...(missing ? { missing } : {}) },
    });
    return {
      ok: false,
      code,
      seq: entry.seq,
      head: m.head,
      tokenSeq: b.tokenSeq,
      missing,
      message,
    };
  });
}

/** Moves the staged station into its home (the database, station.json, the logs). */
export function placeRestore(staged: StagedRestore): void {
  for (const name of readdirSync(staged.dir)) {
    if (name === "cas" || name === BACKUP_FILES.stationCert) continue;
    renameSync(join(staged.dir, name), join(staged.home, name));
  }
}

/** Removes the staging folder (and the home, when the restore made it and it is empty). */
export function discardRestore(staged: Pick<StagedRestore, "dir" | "home">): void {
  rmSync(staged.dir, { recursive: true, force: true });
  try {
    if (readdirSync(staged.home).length === 0) rmSync(staged.home, { recursive: true });
  } catch {
    // left as it is
  }
}
