/**
 * Offline bundles, for stations that never go online. The station exports
 * its queue for one target with a manifest signed by its audit key (in the
 * token); an online machine with no HSM and no station database checks the
 * signature against the station's certificate, the hashes and the station
 * identity, registers the rest exactly as `sync` would, and writes a
 * receipt; the station imports the receipt and marks those items uploaded.
 */
import { createHash, createPublicKey, randomUUID, verify, X509Certificate } from "node:crypto";
import { LinesignError } from "../../domain/errors.js";
import type { CaRegistration, IotGatewayFactory } from "../../domain/ports.js";
import { parseTargetConfig, type TargetConfig } from "../../domain/target.js";
import { act, type AppContext } from "../context.js";
import type { CaService } from "../ca.js";
import type { Checkpointer } from "../checkpoint.js";
import { createStationCertificate, pemOfDer } from "../pki/certificates.js";
import { parseRegistrationCode } from "../../domain/registration-code.js";
import { UPLOADABLE, type SyncService } from "./sync.js";
import {
  TargetSync,
  type DeviceItem,
  type DeviceOutcome,
  type RevocationItem,
  type SyncItemEvent,
  type SyncLedger,
  type TargetSummary,
} from "./target-sync.js";
import { Pacer } from "./pacer.js";

export const BUNDLE_FORMAT = "linesign-bundle/1";
export const RECEIPT_FORMAT = "linesign-receipt/1";

export interface BundleManifest {
  id: string;
  station: string;
  target: string;
  createdAt: string;
  targetConfig: TargetConfig;
  cas: {
    label: string;
    pem: string;
    sha256: string;
    active: boolean;
    /** DEFAULT mode: made at the station for a registration code brought from the online side. */
    verification?: { registrationCode: string; pem: string };
  }[];
  devices: { serial: string; deviceId: string; caLabel: string; pem: string; sha256: string }[];
  revocations: RevocationItem[];
}

export interface BundleFile {
  format: string;
  /** The manifest exactly as signed (JSON text). */
  manifest: string;
  /** Audit-key signature over the manifest text (ECDSA P-256, SHA-256, r||s), base64. */
  signature: string;
}

export interface Receipt {
  format: string;
  bundleId: string;
  station: string;
  target: string;
  manifestSha256: string;
  createdAt: string;
  cas: CaRegistration[];
  devices: {
    serial: string;
    sha256: string;
    state: DeviceOutcome["state"];
    certificateId: string | null;
    arn: string | null;
    error: string | null;
  }[];
  revoked: string[];
  summary: TargetSummary;
}

const sha256 = (b: Uint8Array | string): string => createHash("sha256").update(b).digest("hex");
const derOfPem = (pem: string): Buffer =>
  Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""), "base64");

/** The station's certificate for `upload --trust` (audit key, signed in the token). */
export async function stationCertificate(
  ctx: AppContext,
  checkpointer: Checkpointer,
): Promise<string> {
  return act(ctx, "station.cert", ctx.stationId, async () => {
    const cert = await createStationCertificate(ctx.stationId, await checkpointer.signer());
    ctx.store.appendEvent({
      actor: ctx.actor,
      action: "station.cert",
      subject: ctx.stationId,
      outcome: "ok",
      details: { serial: cert.serialNumber },
    });
    return cert.toString("pem") + "\n";
  });
}

/** Writes target `name`'s queue as a signed bundle (and records it, to match the receipt later). */
export async function exportBundle(
  ctx: AppContext,
  cas: CaService,
  checkpointer: Checkpointer,
  sync: SyncService,
  name: string,
  registrationCode?: string,
): Promise<{ file: BundleFile; manifest: BundleManifest }> {
  return act(ctx, "bundle.export", name, async () => {
    const config = sync.config(name);
    const code = registrationCode ? parseRegistrationCode(registrationCode) : undefined;
    const devices: BundleManifest["devices"] = [];
    for (let after = 0; ;) {
      const page = ctx.store.uploadQueue(name, UPLOADABLE, after, 5000);
      if (page.length === 0) break;
      after = page.at(-1)!.id;
      for (const i of page)
        devices.push({
          serial: i.serial,
          deviceId: i.deviceId,
          caLabel: i.caLabel,
          pem: pemOfDer(i.certDer),
          sha256: i.fingerprint,
        });
    }
    const labels = [...new Set(devices.map((d) => d.caLabel))];
    // DEFAULT mode needs the code only for CAs not registered there yet.
    if (
      config.caMode === "DEFAULT" &&
      !code &&
      config.deviceRegistration !== "without-ca" &&
      labels.some((l) => !ctx.store.caRegistration(l, name))
    )
      throw new LinesignError(
        "USAGE",
        `Target "${name}" registers CAs in DEFAULT mode, which needs the account's registration code: run "aws iot get-registration-code" on the online side, bring the code here and pass --registration-code CODE (or use SNI_ONLY, which needs none).`,
      );
    const caEntries: BundleManifest["cas"] = [];
    for (const label of labels) {
      const ca = ctx.store.getCa(label)!;
      const entry: BundleManifest["cas"][number] = {
        label,
        pem: pemOfDer(ca.certDer!),
        sha256: ca.fingerprint!,
        active: ca.status === "active",
      };
      if (config.caMode === "DEFAULT" && code && !ctx.store.caRegistration(label, name))
        entry.verification = {
          registrationCode: code,
          pem: await cas.verificationCertificate(label, code),
        };
      caEntries.push(entry);
    }
    const manifest: BundleManifest = {
      id: randomUUID(),
      station: ctx.stationId,
      target: name,
      createdAt: ctx.clock.now().toISOString(),
      targetConfig: config,
      cas: caEntries,
      devices,
      revocations: ctx.store.revocationsDue(name).map(({ issuance, upload }) => ({
        serial: issuance.serial,
        deviceId: issuance.deviceId,
        awsCertificateId: upload.awsCertificateId!,
      })),
    };
    const text = JSON.stringify(manifest);
    const signer = await checkpointer.signer();
    const signature = Buffer.from(await signer.sign(new TextEncoder().encode(text))).toString(
      "base64",
    );
    ctx.store.transaction(() => {
      ctx.store.insertBundle({
        id: manifest.id,
        target: name,
        manifestSha256: sha256(text),
        items: JSON.stringify(devices.map((d) => ({ serial: d.serial, sha256: d.sha256 }))),
        createdAt: manifest.createdAt,
        receiptSha256: null,
        receiptImportedAt: null,
      });
      ctx.store.appendEvent({
        actor: ctx.actor,
        action: "bundle.export",
        subject: name,
        outcome: "ok",
        details: {
          bundle: manifest.id,
          manifestSha256: sha256(text),
          cas: caEntries.length,
          devices: devices.length,
          revocations: manifest.revocations.length,
        },
      });
    });
    return { file: { format: BUNDLE_FORMAT, manifest: text, signature }, manifest };
  });
}

const invalid = (what: string): LinesignError =>
  new LinesignError(
    "BUNDLE_INVALID",
    `The bundle was refused: ${what}. Nothing was uploaded; export it again from the station.`,
  );

/** Checks a bundle against the station certificate; returns its manifest. */
export function verifyBundle(bytes: Uint8Array, trustPem: string): BundleManifest {
  let file: BundleFile;
  try {
    file = JSON.parse(Buffer.from(bytes).toString("utf8")) as BundleFile;
  } catch {
    throw invalid("it is not a Linesign bundle (not JSON)");
  }
  if (
    file.format !== BUNDLE_FORMAT ||
    typeof file.manifest !== "string" ||
    typeof file.signature !== "string"
  )
    throw invalid(`it is not a ${BUNDLE_FORMAT} file`);
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
    {
      key: createPublicKey(trust.publicKey.export({ format: "pem", type: "spki" })),
      dsaEncoding: "ieee-p1363",
    },
    Buffer.from(file.signature, "base64"),
  );
  if (!ok)
    throw invalid(
      "its signature does not verify against the trusted station certificate (altered, or from another station)",
    );
  const manifest = JSON.parse(file.manifest) as BundleManifest;
  const cn = /CN=([^\n,]+)/.exec(trust.subject)?.[1];
  if (cn !== manifest.station)
    throw invalid(
      `it names station "${manifest.station}", but the trusted certificate is station "${cn ?? "?"}"`,
    );
  for (const d of manifest.devices)
    if (sha256(derOfPem(d.pem)) !== d.sha256)
      throw invalid(`device certificate ${d.serial}'s hash does not match its contents`);
  for (const c of manifest.cas)
    if (sha256(derOfPem(c.pem)) !== c.sha256)
      throw invalid(`CA certificate "${c.label}"'s hash does not match its contents`);
  parseTargetConfig(manifest.targetConfig, manifest.target);
  return manifest;
}

/** Registers a verified bundle's items; the receipt says what AWS answered for each. */
export async function uploadBundle(
  manifest: BundleManifest,
  manifestSha256: string,
  gateway: IotGatewayFactory,
  opts: { endpoint?: string; onItem?: (e: SyncItemEvent) => void } = {},
): Promise<Receipt> {
  const config: TargetConfig = {
    ...manifest.targetConfig,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
  };
  const regs = new Map<string, CaRegistration>();
  const results = new Map<string, Receipt["devices"][number]>();
  const revoked: string[] = [];
  const ledger: SyncLedger = {
    ca: (label) => {
      const c = manifest.cas.find((x) => x.label === label);
      return c ? { label, pem: c.pem, active: c.active } : null;
    },
    registration: (label) => regs.get(label) ?? null,
    saveRegistration: (r) => void regs.set(r.caLabel, r),
    verification: async (label, code) => {
      const v = manifest.cas.find((x) => x.label === label)?.verification;
      if (!v)
        throw new Error(
          `the bundle carries no verification certificate for CA "${label}": export it again with --registration-code ${code}`,
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
      })),
    saveDevice: (item, o) => {
      const d = manifest.devices.find((x) => x.serial === item.serial)!;
      results.set(item.serial, {
        serial: item.serial,
        sha256: d.sha256,
        state: o.state,
        certificateId: o.state === "done" ? o.certificateId : null,
        arn: o.state === "done" ? o.arn : null,
        error: o.state === "failed" ? `${o.code}: ${o.message}` : null,
      });
    },
    revocations: () => manifest.revocations,
    saveRevoked: (r) => void revoked.push(r.serial),
    note: () => undefined,
  };
  const pacer = new Pacer(config.maxRps);
  const gw = gateway({ ...config, pace: () => pacer.take() });
  const run = new TargetSync(manifest.target, config, gw, ledger, {
    pacer,
    ...(opts.onItem ? { onItem: opts.onItem } : {}),
    concurrency: Math.min(16, Math.max(1, Math.ceil(config.maxRps / 20))),
  });
  run.knownLabels = manifest.cas.map((c) => c.label);
  const summary = await run.run();
  return {
    format: RECEIPT_FORMAT,
    bundleId: manifest.id,
    station: manifest.station,
    target: manifest.target,
    manifestSha256,
    createdAt: new Date().toISOString(),
    cas: [...regs.values()],
    devices: [...results.values()],
    revoked,
    summary,
  };
}

export function manifestSha256Of(bytes: Uint8Array): string {
  return sha256((JSON.parse(Buffer.from(bytes).toString("utf8")) as BundleFile).manifest);
}

/** Marks what a receipt says was registered; refuses a receipt for another bundle, or one seen before. */
export async function importReceipt(
  ctx: AppContext,
  bytes: Uint8Array,
): Promise<{ bundleId: string; done: number; failed: number; cas: number }> {
  return act(ctx, "bundle.receipt", null, async () => {
    const bad = (what: string) =>
      new LinesignError("RECEIPT_INVALID", `The receipt was refused: ${what}.`);
    let r: Receipt;
    try {
      r = JSON.parse(Buffer.from(bytes).toString("utf8")) as Receipt;
    } catch {
      throw bad("it is not JSON");
    }
    if (r.format !== RECEIPT_FORMAT) throw bad(`it is not a ${RECEIPT_FORMAT} file`);
    if (r.station !== ctx.stationId)
      throw bad(`it is for station "${r.station}", not this one ("${ctx.stationId}")`);
    const b = ctx.store.getBundle(r.bundleId);
    if (!b) throw bad(`this station never exported bundle ${r.bundleId}`);
    if (b.manifestSha256 !== r.manifestSha256)
      throw bad("it does not match the bundle this station exported under that id");
    if (b.receiptImportedAt)
      throw bad(
        `a receipt for bundle ${r.bundleId} was imported already, at ${b.receiptImportedAt} (a replay changes nothing)`,
      );
    const items = new Map(
      (JSON.parse(b.items) as { serial: string; sha256: string }[]).map((i) => [
        i.serial,
        i.sha256,
      ]),
    );
    for (const d of r.devices)
      if (items.get(d.serial) !== d.sha256)
        throw bad(`it names certificate ${d.serial}, which is not in that bundle`);
    let done = 0;
    let failed = 0;
    const at = ctx.clock.now().toISOString();
    ctx.store.transaction(() => {
      for (const c of r.cas) ctx.store.putCaRegistration({ ...c, target: b.target });
      for (const d of r.devices) {
        const i = ctx.store.getIssuanceBySerial(d.serial)!;
        const prior = ctx.store.uploads(b.target, i.id)[0];
        if (d.state === "done" || d.state === "left-to-jitr") done++;
        else failed++;
        ctx.store.recordUpload({
          issuanceId: i.id,
          target: b.target,
          state: d.state,
          awsCertificateId: d.certificateId,
          awsArn: d.arn,
          attempts: (prior?.attempts ?? 0) + 1,
          lastError: d.error,
          updatedAt: at,
        });
      }
      for (const serial of r.revoked) {
        const i = ctx.store.getIssuanceBySerial(serial);
        const prior = i ? ctx.store.uploads(b.target, i.id)[0] : undefined;
        if (i && prior) ctx.store.recordUpload({ ...prior, state: "revoked", updatedAt: at });
      }
      ctx.store.markBundleReceipt(r.bundleId, sha256(bytes), at);
      ctx.store.appendEvent({
        actor: ctx.actor,
        action: "bundle.receipt",
        subject: b.target,
        outcome: "ok",
        details: { bundle: r.bundleId, done, failed, cas: r.cas.length, revoked: r.revoked.length },
      });
    });
    return { bundleId: r.bundleId, done, failed, cas: r.cas.length };
  });
}
