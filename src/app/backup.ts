/**
 * Backups, designed with the log. A backup is a consistent snapshot of the
 * database (SQLite's online backup, taken while the line runs), station.json,
 * the CA certificates and the station certificate, under a manifest the audit
 * key signs that names the log head the snapshot ends at. What happens after
 * that head is not in the backup, and the token's head tells how much: a
 * restore compares the token with the restored log (Checkpointer.binding)
 * and refuses, naming the missing entries, when the token is ahead, until an
 * officer's recorded act accepts the loss.
 */
import { createPublicKey, verify, X509Certificate } from "node:crypto";
import { z } from "zod";
import { LinesignError } from "../domain/errors.js";
import type { Signer } from "../domain/ports.js";

export const BACKUP_FORMAT = "linesign-backup/1";

/** Names of the files in a backup. */
export const BACKUP_FILES = {
  database: "station.db",
  config: "station.json",
  stationCert: "station-cert.pem",
  ca: (label: string) => `cas/${label}.pem`,
} as const;

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const BackupManifestSchema = z
  .object({
    format: z.literal(BACKUP_FORMAT),
    id: z.string().uuid(),
    station: z.string().min(1).max(128),
    createdAt: z.string().datetime(),
    software: z.string().max(64),
    schema: z.number().int().nonnegative(),
    token: z.string().max(64),
    /** The last entry of the snapshot's log: what the backup covers. */
    head: z.object({ seq: z.number().int().positive(), hash: Hex64 }).strict().nullable(),
    files: z
      .array(
        z
          .object({
            name: z.string().min(1).max(160),
            size: z.number().int().nonnegative(),
            sha256: Hex64,
          })
          .strict(),
      )
      .max(1000),
  })
  .strict();
export type BackupManifest = z.infer<typeof BackupManifestSchema>;

const SignedManifestSchema = z
  .object({
    format: z.literal(BACKUP_FORMAT),
    manifest: z.string().max(4 * 1024 * 1024),
    /** The audit key's signature over `manifest`'s UTF-8 bytes, base64. */
    signature: z.string().max(2048),
    /** The audit key's public half (DER SPKI), base64. */
    spki: z.string().max(4096),
  })
  .strict();

/** The manifest entry's bytes: the manifest, signed by the audit key. */
export async function signManifest(manifest: BackupManifest, signer: Signer): Promise<Uint8Array> {
  const text = JSON.stringify(manifest);
  const signature = await signer.sign(new TextEncoder().encode(text));
  return new TextEncoder().encode(
    JSON.stringify({
      format: BACKUP_FORMAT,
      manifest: text,
      signature: Buffer.from(signature).toString("base64"),
      spki: Buffer.from(signer.key.spki).toString("base64"),
    }) + "\n",
  );
}

function invalid(file: string, why: string): LinesignError {
  return new LinesignError("BACKUP_INVALID", `${file} is not a usable Linesign backup: ${why}.`, {
    details: { file },
  });
}

/**
 * Reads and checks the manifest entry: its form, and its signature against
 * the audit key it names (which the restore then compares with the token's).
 * @throws LinesignError BACKUP_INVALID naming what is wrong
 */
export function openManifest(
  file: string,
  bytes: Uint8Array,
): { manifest: BackupManifest; spki: Uint8Array } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw invalid(file, "its manifest is not JSON");
  }
  const signed = SignedManifestSchema.safeParse(raw);
  if (!signed.success) {
    const format = (raw as { format?: unknown } | null)?.format;
    throw invalid(
      file,
      typeof format === "string" && format !== BACKUP_FORMAT
        ? `it is a ${format.slice(0, 40)} file; this release reads ${BACKUP_FORMAT}`
        : `its manifest is not a ${BACKUP_FORMAT} manifest`,
    );
  }
  const spki = Buffer.from(signed.data.spki, "base64");
  let ok: boolean;
  try {
    ok = verify(
      "sha256",
      Buffer.from(signed.data.manifest, "utf8"),
      {
        key: createPublicKey({ key: spki, format: "der", type: "spki" }),
        dsaEncoding: "ieee-p1363",
      },
      Buffer.from(signed.data.signature, "base64"),
    );
  } catch {
    ok = false;
  }
  if (!ok) throw invalid(file, "its manifest's signature does not verify (the file was altered)");
  let inner: unknown;
  try {
    inner = JSON.parse(signed.data.manifest);
  } catch {
    throw invalid(file, "its manifest is not JSON");
  }
  const m = BackupManifestSchema.safeParse(inner);
  if (!m.success) throw invalid(file, `its manifest does not follow ${BACKUP_FORMAT}`);
  const names = new Set<string>();
  for (const f of m.data.files) {
    if (names.has(f.name)) throw invalid(file, `its manifest names "${f.name}" twice`);
    names.add(f.name);
  }
  for (const need of [BACKUP_FILES.database, BACKUP_FILES.config, BACKUP_FILES.stationCert])
    if (!names.has(need)) throw invalid(file, `its manifest does not name ${need}`);
  return { manifest: m.data, spki };
}

/**
 * Checks the files read against the manifest (sizes and SHA-256), and that
 * the station certificate carries the audit key that signed the manifest.
 * @throws LinesignError BACKUP_INVALID
 */
export function checkContents(
  file: string,
  manifest: BackupManifest,
  spki: Uint8Array,
  read: Map<string, { size: number; sha256: string }>,
  stationCertPem: string,
): void {
  for (const f of manifest.files) {
    const got = read.get(f.name);
    if (!got || got.size !== f.size || got.sha256 !== f.sha256)
      throw invalid(file, `"${f.name}" does not match its manifest (altered or cut)`);
  }
  let certSpki: Buffer;
  try {
    certSpki = new X509Certificate(stationCertPem).publicKey.export({
      format: "der",
      type: "spki",
    });
  } catch {
    throw invalid(file, "its station certificate is not a certificate");
  }
  if (!certSpki.equals(Buffer.from(spki)))
    throw invalid(file, "its station certificate is not the audit key that signed it");
}
