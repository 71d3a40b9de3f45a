/**
 * The wiring of the online side (`linesign upload`, `linesign uploader init`):
 * the AWS IoT adapter and files, nothing else. It loads no native module (no
 * PKCS#11, no SQLite, no serial port), so an online machine needs only Node
 * and the AWS SDK; bin/linesign.js sends these commands here without loading
 * the station.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { LinesignError } from "./domain/errors.js";
import { sdkIotGateway } from "./adapters/aws-iot/gateway.js";
export { loadAwsSdk } from "./adapters/aws-iot/gateway.js";
import { writeFileAtomic } from "./adapters/fs/atomic.js";
import {
  createUploaderIdentity,
  manifestSha256Of,
  signReceipt,
  uploadBundle,
  verifyBundle,
  type BundleManifest,
  type ReceiptBody,
  type ReceiptFile,
  type UploadOptions,
  type UploaderIdentity,
} from "./app/sync/bundle-format.js";

export { writeFileAtomic };
export { readFileBounded, READ_LIMITS } from "./adapters/fs/bounded-read.js";

/** The uploader's folder: --identity, else $LINESIGN_UPLOADER_HOME, else ~/.linesign-uploader. */
export function uploaderDir(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  return explicit ?? env.LINESIGN_UPLOADER_HOME ?? join(homedir(), ".linesign-uploader");
}

/**
 * Makes the uploader's key once (uploader.key, 0600, in a 0700 folder) and its certificate
 * (uploader.pem, for an officer to enroll at the station). Refuses to replace a key.
 * @throws LinesignError FILE_WRITE_FAILED when the folder holds a key already
 */
export async function initUploader(
  dir: string,
  name: string,
): Promise<{ certPath: string; certPem: string }> {
  const keyPath = join(dir, "uploader.key");
  if (existsSync(keyPath))
    throw new LinesignError(
      "FILE_WRITE_FAILED",
      `${keyPath} exists already: this machine has its uploader key (its certificate is ${join(dir, "uploader.pem")}). Remove the folder first only to make a new identity, which an officer must enroll again.`,
    );
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const id = await createUploaderIdentity(name);
  writeFileAtomic(keyPath, id.keyPem, { mode: 0o600, exclusive: true });
  const certPath = join(dir, "uploader.pem");
  writeFileAtomic(certPath, id.certPem, { mode: 0o644 });
  return { certPath, certPem: id.certPem };
}

/** The uploader's key and certificate. @throws LinesignError UPLOADER_MISSING-like USAGE with the fix */
export function loadUploader(dir: string): UploaderIdentity {
  try {
    return {
      keyPem: readFileSync(join(dir, "uploader.key"), "utf8"),
      certPem: readFileSync(join(dir, "uploader.pem"), "utf8"),
    };
  } catch (cause) {
    throw new LinesignError(
      "USAGE",
      `No uploader identity in ${dir}: run "linesign uploader init --name NAME" on this machine once, and have an officer enroll its uploader.pem at the station ("linesign uploader enroll"); receipts are signed with it. Nothing was uploaded.`,
      { cause },
    );
  }
}

/** Checks a bundle (signature, station identity, hashes) and sends nothing. */
export function verifyOfflineBundle(bundle: Uint8Array, trustPem: string): BundleManifest {
  return verifyBundle(bundle, trustPem);
}

/**
 * `linesign upload`: checks the bundle against the trusted station certificate, registers it
 * with AWS IoT through the SDK (credentials from this machine's own chain or `profile`), and
 * signs the receipt with the uploader's key.
 */
export async function uploadOfflineBundle(
  bundle: Uint8Array,
  trustPem: string,
  identity: UploaderIdentity,
  opts: UploadOptions = {},
): Promise<{ file: ReceiptFile; body: ReceiptBody }> {
  const manifest = verifyBundle(bundle, trustPem);
  const body = await uploadBundle(manifest, manifestSha256Of(bundle), sdkIotGateway, opts);
  return { file: signReceipt(body, identity), body };
}
