/**
 * The kiosk's file acts, wired to the station's export folder
 * (src/adapters/fs/export-folder.ts): a CRL published, an offline bundle
 * exported, a receipt imported. Each runs the same use case as its command
 * (`linesign crl`, `linesign export`, `linesign import-receipt`), so the log
 * records it the same way; only where the file goes, or comes from, differs:
 * the folder set as export.dir in station.json, else <home>/exports. The
 * folder is checked before anything is signed or recorded, so a missing
 * medium costs no CRL number and no bundle; a refusal of the folder or the
 * file is recorded under the command's own action.
 */
import { join } from "node:path";
import { ExportFolder, type ExportFile } from "./adapters/fs/export-folder.js";
import { READ_LIMITS } from "./adapters/fs/bounded-read.js";
import { act } from "./app/context.js";
import { exportBundle, importReceipt } from "./app/sync/bundle.js";
import type { Station } from "./compose.js";

/** The station's export folder: export.dir from station.json, else <home>/exports. */
export function exportFolder(s: Station): ExportFolder {
  const dir = s.config.export?.dir;
  return dir
    ? new ExportFolder(dir, true, s.home.dir)
    : new ExportFolder(join(s.home.dir, "exports"), false);
}

/** The folder and the files in it (regular files only, newest first). @throws LinesignError EXPORT_DIR_UNAVAILABLE */
export function listExports(s: Station): { dir: string; configured: boolean; files: ExportFile[] } {
  const f = exportFolder(s);
  return { dir: f.dir, configured: f.configured, files: f.list() };
}

/**
 * Signs CA `ca`'s next CRL in the token (as `linesign crl`) and writes it as
 * PEM to crl-CA-NUMBER.pem in the export folder. Default 7 days to the next update.
 * @throws LinesignError EXPORT_DIR_UNAVAILABLE (before signing), FILE_WRITE_FAILED, the CRL's own (CA_UNKNOWN, CA_NO_CERTIFICATE, SIGNING_SESSION_REQUIRED, HSM_*)
 */
export async function publishCrl(
  s: Station,
  ca: string,
  days = 7,
): Promise<{
  out: string;
  ca: string;
  number: number;
  entries: number;
  thisUpdate: string;
  nextUpdate: string;
}> {
  const folder = exportFolder(s);
  // The file's place is taken before the CRL is signed: a folder that cannot take it costs no number.
  const file = await act(s.ctx, "ca.crl", ca, async () => folder.reserve());
  let r: Awaited<ReturnType<typeof s.revocation.crl>>;
  try {
    r = await s.revocation.crl(ca, days);
  } catch (e) {
    file.release();
    throw e;
  }
  const out = await act(s.ctx, "ca.crl", ca, async () =>
    file.write(r.pem, `crl-${r.ca}-${r.number}.pem`),
  );
  return {
    out,
    ca: r.ca,
    number: r.number,
    entries: r.entries,
    thisUpdate: r.thisUpdate,
    nextUpdate: r.nextUpdate,
  };
}

/**
 * Writes target `target`'s queue as a bundle signed by the station (as
 * `linesign export`) to bundle-TARGET-ID.json in the export folder.
 * @throws LinesignError EXPORT_DIR_UNAVAILABLE (before signing), FILE_WRITE_FAILED, the export's own (TARGET_UNKNOWN, USAGE, SIGNING_SESSION_REQUIRED, HSM_*)
 */
export async function exportBundleTo(
  s: Station,
  target: string,
  registrationCode?: string,
): Promise<{
  out: string;
  bundle: string;
  cas: number;
  devices: number;
  revocations: number;
  verificationExpiry: string | null;
}> {
  const folder = exportFolder(s);
  // The file's place is taken before the bundle is signed and recorded.
  const place = await act(s.ctx, "bundle.export", target, async () => folder.reserve());
  let made: Awaited<ReturnType<typeof exportBundle>>;
  try {
    made = await exportBundle(s.ctx, s.ca, s.checkpointer, s.sync, target, registrationCode);
  } catch (e) {
    place.release();
    throw e;
  }
  const { file, manifest, verificationExpiry } = made;
  const out = await act(s.ctx, "bundle.export", target, async () =>
    place.write(JSON.stringify(file) + "\n", `bundle-${target}-${manifest.id}.json`),
  );
  return {
    out,
    bundle: manifest.id,
    cas: manifest.cas.length,
    devices: manifest.devices.length,
    revocations: manifest.revocations.length + manifest.revokedUnregistered.length,
    verificationExpiry,
  };
}

/**
 * Imports the receipt `name` from the export folder (as `linesign
 * import-receipt`): a plain file there, not a link, at most the receipt limit;
 * then every check of a signed receipt.
 * @throws LinesignError EXPORT_FILE_REFUSED, EXPORT_DIR_UNAVAILABLE, RECEIPT_INVALID
 */
export async function importReceiptFrom(
  s: Station,
  name: string,
): Promise<{ file: string } & Awaited<ReturnType<typeof importReceipt>>> {
  const folder = exportFolder(s);
  const bytes = await act(s.ctx, "bundle.receipt", name, async () =>
    folder.read(name, "the receipt", READ_LIMITS.receipt),
  );
  const r = await importReceipt(s.ctx, bytes);
  return { file: join(folder.dir, name), ...r };
}
