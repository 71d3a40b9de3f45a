/**
 * The offline bundle and its receipt, on the side that goes online: the
 * formats (docs/offline-bundle.md, JSON Schemas in docs/schemas/), checking a
 * bundle against the station's certificate, registering it with AWS IoT
 * exactly as `sync` would, and the receipt signed by the uploader's own key.
 * Nothing here needs the station: no token, no database, no serial port, so
 * an online machine runs it with none of their native modules.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  verify,
  X509Certificate,
} from "node:crypto";
import { z } from "zod";
import { LinesignError } from "../../domain/errors.js";
import type { CaRegistration, IotGatewayFactory } from "../../domain/ports.js";
import { TargetConfigSchema, parseTargetConfig, type TargetConfig } from "../../domain/target.js";
import { x509 } from "../pki/x509.js";
import {
  TargetSync,
  type DeviceItem,
  type SyncItemEvent,
  type SyncLedger,
  type TargetSummary,
} from "./target-sync.js";
import { TargetPacer } from "./pacer.js";
import type { IdentityStepState } from "./device-identity.js";

/**
 * Version 3 adds the devices' Things, policies and groups (targetConfig's
 * identity options, the steps done so far, detachments); a version 2 file is
 * a version 3 file without them, and is still read.
 */
export const BUNDLE_FORMAT = "linesign-bundle/3";
export const RECEIPT_FORMAT = "linesign-receipt/3";
export const BUNDLE_FORMATS = ["linesign-bundle/2", BUNDLE_FORMAT] as const;
export const RECEIPT_FORMATS = ["linesign-receipt/2", RECEIPT_FORMAT] as const;

/** Files are bounded before they are parsed: 36,000 certificates fit well under this. */
export const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;
export const MAX_RECEIPT_BYTES = 64 * 1024 * 1024;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "is not a SHA-256 (64 lowercase hex)");
const pem = z
  .string()
  .max(65_536)
  .regex(
    /^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$/,
    "is not a PEM certificate",
  );
const serial = z.string().regex(/^[0-9a-fA-F]{1,64}$/, "is not a hex serial");
const text = (max: number) => z.string().min(1).max(max);
const status = z.enum(["ACTIVE", "INACTIVE"]);
/** What the device reported when it identified on the line (null: not reported). */
const reported = z.string().max(256).nullable().default(null);
const stepName = z.enum(["thing", "principal", "policy", "group"]);
/** A step of a device's identity the station has recorded (a Thing, an attachment, a group). */
const StepSchema = z
  .object({
    step: stepName,
    name: text(128),
    state: z.enum(["done", "failed", "detached"]),
  })
  .strict();

/** What the station knows of a CA at the target: carried so the online side does not register it again. */
export const CaRegistrationEntrySchema = z
  .object({
    certificateId: hex64,
    arn: text(2048),
    mode: z.enum(["DEFAULT", "SNI_ONLY"]),
    status,
  })
  .strict();

export const BundleManifestSchema = z
  .object({
    id: z.uuid(),
    station: text(128),
    target: text(64),
    createdAt: z.iso.datetime(),
    targetConfig: TargetConfigSchema,
    cas: z.array(
      z
        .object({
          label: text(64),
          pem,
          sha256: hex64,
          /** Whether the CA is active at the station: its status at the target follows. */
          active: z.boolean(),
          registration: CaRegistrationEntrySchema.optional(),
          /** DEFAULT mode, CAs not registered there yet: made at the station for the account's code. */
          verification: z
            .object({
              registrationCode: hex64,
              pem,
              notAfter: z.iso.datetime(),
            })
            .strict()
            .optional(),
        })
        .strict(),
    ),
    devices: z.array(
      z
        .object({
          serial,
          deviceId: text(128),
          caLabel: text(64),
          pem,
          sha256: hex64,
          model: reported,
          firmware: reported,
        })
        .strict(),
    ),
    /** Registered already, with identity steps still to take (version 3). */
    identities: z
      .array(
        z
          .object({
            serial,
            deviceId: text(128),
            sha256: hex64,
            model: reported,
            firmware: reported,
            certificateArn: text(2048),
            steps: z.array(StepSchema),
          })
          .strict(),
      )
      .default([]),
    /** Revoked, with a Thing or policy the target attached: to be detached (version 3). */
    detachments: z
      .array(
        z
          .object({
            serial,
            deviceId: text(128),
            sha256: hex64,
            certificateArn: text(2048),
            steps: z.array(StepSchema),
          })
          .strict(),
      )
      .default([]),
    /** The target's policy made from its document, once it exists there (version 3). */
    policies: z
      .array(z.object({ name: text(128), arn: text(2048), created: z.boolean() }).strict())
      .default([]),
    revocations: z.array(
      z.object({ serial, deviceId: text(128), awsCertificateId: hex64 }).strict(),
    ),
    /** jitr targets: revoked certificates never registered there, to be registered REVOKED. */
    revokedUnregistered: z.array(
      z.object({ serial, deviceId: text(128), caLabel: text(64), pem, sha256: hex64 }).strict(),
    ),
  })
  .strict();
export type BundleManifest = z.infer<typeof BundleManifestSchema>;

export const BundleFileSchema = z
  .object({
    format: z.enum(BUNDLE_FORMATS),
    /** The manifest exactly as signed (JSON text). */
    manifest: z.string(),
    /** The station's audit key's signature over the manifest text (ECDSA P-256, SHA-256, r||s), base64. */
    signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/),
  })
  .strict();
export type BundleFile = z.infer<typeof BundleFileSchema>;

export const ReceiptBodySchema = z
  .object({
    /** Each receipt's own id: a second upload of one bundle writes a second receipt. */
    id: z.uuid(),
    bundleId: z.uuid(),
    station: text(128),
    target: text(64),
    manifestSha256: hex64,
    createdAt: z.iso.datetime(),
    region: text(32),
    endpoint: text(2048),
    /** The account the uploader's credentials belong to (STS), or null when it could not be asked. */
    account: z
      .string()
      .regex(/^\d{12}$/)
      .nullable(),
    cas: z.array(CaRegistrationEntrySchema.extend({ label: text(64) }).strict()),
    devices: z.array(
      z
        .object({
          serial,
          sha256: hex64,
          state: z.enum(["done", "left-to-jitr", "failed"]),
          certificateId: hex64.nullable(),
          arn: text(2048).nullable(),
          error: z.string().max(4096).nullable(),
        })
        .strict(),
    ),
    revoked: z.array(
      z.object({ serial, certificateId: hex64.nullable(), arn: text(2048).nullable() }).strict(),
    ),
    /** What AWS answered for each identity step, per certificate, in order (version 3). */
    identity: z
      .array(
        z
          .object({
            serial,
            steps: z.array(
              z
                .object({
                  step: z.enum(["thing", "principal", "policy", "group", "complete"]),
                  name: z.string().max(128),
                  state: z.enum(["done", "failed", "detached"]),
                  arn: text(2048).nullable(),
                  error: z.string().max(4096).nullable(),
                })
                .strict(),
            ),
          })
          .strict(),
      )
      .default([]),
    /** The policy made from the target's document (version 3). */
    policies: z
      .array(z.object({ name: text(128), arn: text(2048), created: z.boolean() }).strict())
      .default([]),
    summary: z.record(z.string(), z.unknown()),
  })
  .strict();
export type ReceiptBody = z.infer<typeof ReceiptBodySchema>;

export const ReceiptFileSchema = z
  .object({
    format: z.enum(RECEIPT_FORMATS),
    /** The receipt exactly as signed (JSON text). */
    receipt: z.string(),
    /** The uploader key's signature over the receipt text (ECDSA P-256, SHA-256, r||s), base64. */
    signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/),
    /** The uploader's certificate (PEM), enrolled at the station by an officer. */
    uploader: pem,
  })
  .strict();
export type ReceiptFile = z.infer<typeof ReceiptFileSchema>;

export const sha256 = (b: Uint8Array | string): string =>
  createHash("sha256").update(b).digest("hex");
export const derOfPem = (p: string): Buffer =>
  Buffer.from(p.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""), "base64");

const invalid = (what: string): LinesignError =>
  new LinesignError(
    "BUNDLE_INVALID",
    `The bundle was refused: ${what}. Nothing was uploaded; export it again from the station.`,
  );

/** The first schema problem, named by its path. */
function firstIssue(e: z.ZodError): string {
  const i = e.issues[0]!;
  return `${i.path.join(".") || "the file"} ${i.message}`;
}

/** Checks a bundle against the station certificate; returns its manifest. Throws BUNDLE_INVALID. */
export function verifyBundle(bytes: Uint8Array, trustPem: string): BundleManifest {
  if (bytes.length > MAX_BUNDLE_BYTES)
    throw invalid("it is larger than any bundle a station writes");
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw invalid("it is not a Linesign bundle (not JSON)");
  }
  const f = BundleFileSchema.safeParse(raw);
  if (!f.success) {
    const format = (raw as { format?: unknown } | null)?.format;
    throw invalid(
      typeof format === "string" &&
        format.startsWith("linesign-bundle/") &&
        !(BUNDLE_FORMATS as readonly string[]).includes(format)
        ? `it is a ${format.slice(0, 40)} file; this uploader reads ${BUNDLE_FORMAT}`
        : `it is not a ${BUNDLE_FORMAT} file (${firstIssue(f.error)})`,
    );
  }
  const file = f.data;
  let trust: X509Certificate;
  try {
    trust = new X509Certificate(trustPem);
  } catch {
    throw new LinesignError(
      "BUNDLE_INVALID",
      'The --trust file is not a PEM certificate: give the station certificate from "linesign station-cert".',
    );
  }
  const ok = verify(
    "sha256",
    Buffer.from(file.manifest, "utf8"),
    { key: trust.publicKey, dsaEncoding: "ieee-p1363" },
    Buffer.from(file.signature, "base64"),
  );
  if (!ok)
    throw invalid(
      "its signature does not verify against the trusted station certificate (altered, or from another station)",
    );
  const m = BundleManifestSchema.safeParse(JSON.parse(file.manifest));
  if (!m.success)
    throw invalid(`its manifest does not follow ${BUNDLE_FORMAT}: ${firstIssue(m.error)}`);
  const manifest = m.data;
  const cn = /CN=([^\n,]+)/.exec(trust.subject)?.[1];
  if (cn !== manifest.station)
    throw invalid(
      `it names station "${manifest.station}", but the trusted certificate is station "${cn ?? "?"}"`,
    );
  for (const d of [...manifest.devices, ...manifest.revokedUnregistered])
    if (sha256(derOfPem(d.pem)) !== d.sha256)
      throw invalid(`device certificate ${d.serial}'s hash does not match its contents`);
  for (const c of manifest.cas)
    if (sha256(derOfPem(c.pem)) !== c.sha256)
      throw invalid(`CA certificate "${c.label}"'s hash does not match its contents`);
  parseTargetConfig(manifest.targetConfig, manifest.target);
  return manifest;
}

/** The manifest text's SHA-256 (what a receipt names). */
export function manifestSha256Of(bytes: Uint8Array): string {
  return sha256(BundleFileSchema.parse(JSON.parse(Buffer.from(bytes).toString("utf8"))).manifest);
}

/** Verification certificates in the bundle that have expired by `now`, with their CA's label. */
export function expiredVerifications(
  manifest: BundleManifest,
  now: Date,
): { label: string; notAfter: string }[] {
  return manifest.cas
    .filter((c) => c.verification && new Date(c.verification.notAfter) <= now)
    .map((c) => ({ label: c.label, notAfter: c.verification!.notAfter }));
}

/** The online uploader's identity: its key (PKCS#8 PEM, kept 0600 on that machine) and certificate. */
export interface UploaderIdentity {
  keyPem: string;
  certPem: string;
}

/** Makes an uploader identity once: an EC P-256 key and a self-signed certificate naming `name`. */
export async function createUploaderIdentity(name: string, days = 3650): Promise<UploaderIdentity> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const keyPem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const subtle = globalThis.crypto.subtle;
  const priv = await subtle.importKey(
    "pkcs8",
    privateKey.export({ format: "der", type: "pkcs8" }),
    alg,
    false,
    ["sign"],
  );
  const pub = await subtle.importKey(
    "spki",
    createPublicKey(privateKey).export({ format: "der", type: "spki" }),
    alg,
    true,
    ["verify"],
  );
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: createHash("sha256").update(randomUUID()).digest("hex").slice(0, 32),
      name: [{ CN: [name] }, { O: ["Linesign uploader"] }],
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + days * 86_400_000),
      keys: { privateKey: priv, publicKey: pub },
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    },
    globalThis.crypto,
  );
  return { keyPem, certPem: cert.toString("pem") + "\n" };
}

/** Signs a receipt with the uploader's key. */
export function signReceipt(body: ReceiptBody, id: UploaderIdentity): ReceiptFile {
  const receipt = JSON.stringify(body);
  const signature = sign("sha256", Buffer.from(receipt, "utf8"), {
    key: createPrivateKey(id.keyPem),
    dsaEncoding: "ieee-p1363",
  }).toString("base64");
  return { format: RECEIPT_FORMAT, receipt, signature, uploader: id.certPem };
}

export interface UploadOptions {
  endpoint?: string;
  /** The online machine's AWS profile; default: its default credential chain (never the bundle's profile). */
  profile?: string;
  region?: string;
  onItem?: (e: SyncItemEvent) => void;
  now?: Date;
}

/** Registers a verified bundle's items; the receipt body says what AWS answered for each. */
export async function uploadBundle(
  manifest: BundleManifest,
  manifestSha256: string,
  gateway: IotGatewayFactory,
  opts: UploadOptions = {},
): Promise<ReceiptBody> {
  const expired = expiredVerifications(manifest, opts.now ?? new Date());
  if (expired.length)
    throw new LinesignError(
      "BUNDLE_INVALID",
      `The bundle's verification certificate for CA "${expired[0]!.label}" expired at ${expired[0]!.notAfter}: AWS would refuse it. Nothing was uploaded. At the station, run "linesign export --target ${manifest.target} --registration-code CODE" again (CODE from "aws iot get-registration-code") and upload the new bundle.`,
    );
  // The station's profile name means nothing on this machine: its own chain, or --profile.
  const stationSide: TargetConfig = { ...manifest.targetConfig };
  delete stationSide.awsProfile;
  const config: TargetConfig = {
    ...stationSide,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.profile ? { awsProfile: opts.profile } : {}),
    ...(opts.region ? { region: opts.region } : {}),
  };
  const byLabel = new Map(manifest.cas.map((c) => [c.label, c]));
  const carried = new Map<string, CaRegistration>();
  for (const c of manifest.cas)
    if (c.registration && !opts.region)
      carried.set(c.label, {
        caLabel: c.label,
        target: manifest.target,
        awsCertificateId: c.registration.certificateId,
        awsArn: c.registration.arn,
        mode: c.registration.mode,
        remoteStatus: c.registration.status,
        updatedAt: manifest.createdAt,
      });
  const saved = new Map<string, CaRegistration>();
  const results = new Map<string, ReceiptBody["devices"][number]>();
  const revoked: ReceiptBody["revoked"] = [];
  const identitySteps = new Map<string, ReceiptBody["identity"][number]["steps"]>();
  const policies = new Map(manifest.policies.map((p) => [p.name, p]));
  const madePolicies: ReceiptBody["policies"] = [];
  const stepsOf = (steps: BundleManifest["identities"][number]["steps"]): IdentityStepState[] =>
    steps.map((s) => ({ ...s, arn: null }));
  const ledger: SyncLedger = {
    ca: (label) => {
      const c = byLabel.get(label);
      return c ? { label, pem: c.pem, active: c.active } : null;
    },
    registration: (label) => saved.get(label) ?? carried.get(label) ?? null,
    saveRegistration: (r) => void saved.set(r.caLabel, r),
    verification: async (label, code) => {
      const v = byLabel.get(label)?.verification;
      if (!v)
        throw new Error(
          `AWS does not hold CA "${label}" in this account and region, and the bundle carries no verification certificate for it: at the station run "linesign export --target ${manifest.target} --registration-code ${code}" and upload the new bundle`,
        );
      if (v.registrationCode !== code)
        throw new Error(
          `the bundle's verification certificate for CA "${label}" was made for registration code ${v.registrationCode.slice(0, 8)}..., but this account's code is ${code.slice(0, 8)}...: export it again with --registration-code ${code}`,
        );
      return v.pem;
    },
    devices: (after, limit) =>
      manifest.devices.slice(after, after + limit).map((d, i): DeviceItem => ({
        cursor: after + i + 1,
        serial: d.serial,
        deviceId: d.deviceId,
        caLabel: d.caLabel,
        pem: d.pem,
        model: d.model,
        firmware: d.firmware,
      })),
    identityDue: (after, limit) =>
      manifest.identities.slice(after, after + limit).map((d, i) => ({
        cursor: after + i + 1,
        serial: d.serial,
        deviceId: d.deviceId,
        model: d.model,
        firmware: d.firmware,
        certificateId: d.sha256,
        certificateArn: d.certificateArn,
        steps: stepsOf(d.steps),
      })),
    // Revoked before this upload, or by it (as sync detaches in the run that revokes).
    detachDue: () =>
      manifest.detachments
        .filter(
          (d) =>
            !manifest.revocations.some((r) => r.serial === d.serial) ||
            revoked.some((r) => r.serial === d.serial),
        )
        .map((d) => ({
          serial: d.serial,
          deviceId: d.deviceId,
          certificateArn: d.certificateArn,
          steps: stepsOf(d.steps).filter((s) => s.state === "done"),
        })),
    saveStep: (item, s) => {
      const list = identitySteps.get(item.serial) ?? [];
      list.push({
        step: s.step,
        name: s.name,
        state: s.state,
        arn: s.arn,
        error: s.error ? s.error.slice(0, 4096) : null,
      });
      identitySteps.set(item.serial, list);
    },
    targetPolicy: (name) => policies.get(name) ?? null,
    saveTargetPolicy: (name, arn, created) => {
      policies.set(name, { name, arn, created });
      madePolicies.push({ name, arn, created });
    },
    saveDevice: (item, o) => {
      const d = manifest.devices[item.cursor - 1]!;
      results.set(item.serial, {
        serial: item.serial,
        sha256: d.sha256,
        state: o.state,
        certificateId: o.state === "done" ? o.certificateId : null,
        arn: o.state === "done" ? o.arn : null,
        error: o.state === "failed" ? `${o.code}: ${o.message}`.slice(0, 4096) : null,
      });
    },
    revocations: () => manifest.revocations,
    saveRevoked: (r) =>
      void revoked.push({ serial: r.serial, certificateId: r.awsCertificateId, arn: null }),
    revokedUnregistered: () => manifest.revokedUnregistered,
    saveRevokedRegistration: (i, reg) =>
      void revoked.push({ serial: i.serial, certificateId: reg.certificateId, arn: reg.arn }),
    note: () => undefined,
  };
  const pacer = new TargetPacer(config.maxRps);
  const gw = await gateway({ ...config, pace: (op) => pacer.take(op) });
  const run = new TargetSync(manifest.target, config, gw, ledger, {
    pacer,
    ...(opts.onItem ? { onItem: opts.onItem } : {}),
    concurrency: Math.min(16, Math.max(1, Math.ceil(config.maxRps / 20))),
  });
  run.knownLabels = manifest.cas.map((c) => c.label);
  const summary: TargetSummary = await run.run();
  const identity = summary.credentialsRefused ? null : await gw.identity();
  return {
    id: randomUUID(),
    bundleId: manifest.id,
    station: manifest.station,
    target: manifest.target,
    manifestSha256,
    createdAt: new Date().toISOString(),
    region: config.region,
    endpoint: gw.where.endpoint,
    account:
      identity?.ok && /^\d{12}$/.test(identity.value.account) ? identity.value.account : null,
    cas: [...saved.values()].map((r) => ({
      label: r.caLabel,
      certificateId: r.awsCertificateId,
      arn: r.awsArn,
      mode: r.mode,
      status: r.remoteStatus,
    })),
    devices: [...results.values()],
    revoked,
    identity: [...identitySteps].map(([serial, steps]) => ({ serial, steps })),
    policies: madePolicies,
    summary: { ...summary },
  };
}
