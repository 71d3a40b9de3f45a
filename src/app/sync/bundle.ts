/**
 * Offline bundles, at the station: the station exports its queue for one
 * target with a manifest signed by its audit key (in the token), carrying
 * what it knows of each CA there (registration, status) so an upload never
 * registers a CA twice and status changes travel too; it imports receipts
 * signed by an uploader an officer enrolled, checks every id and ARN against
 * what AWS could have answered for those certificates, and marks those
 * items uploaded. The online side (verify, upload, receipt) is in
 * bundle-format.ts and needs none of the station.
 */
import { randomUUID, verify, X509Certificate } from "node:crypto";
import { LinesignError } from "../../domain/errors.js";
import type { UploaderRecord } from "../../domain/ports.js";
import { act, recordChange, type AppContext } from "../context.js";
import type { CaService } from "../ca.js";
import type { Checkpointer } from "../checkpoint.js";
import { createStationCertificate, pemOfDer } from "../pki/certificates.js";
import { parseRegistrationCode } from "../../domain/registration-code.js";
import { hasIdentity, thingOf, type TargetConfig } from "../../domain/target.js";
import { UPLOADABLE, type SyncService } from "./sync.js";
import {
  BUNDLE_FORMAT,
  RECEIPT_FORMAT,
  MAX_RECEIPT_BYTES,
  ReceiptBodySchema,
  ReceiptFileSchema,
  sha256,
  type BundleFile,
  type BundleManifest,
  type ReceiptBody,
} from "./bundle-format.js";

export * from "./bundle-format.js";

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
      // The certificate itself (public): an auditor shows it later without the PIN.
      details: { serial: cert.serialNumber, pem: cert.toString("pem") },
    });
    return cert.toString("pem") + "\n";
  });
}

/**
 * Writes target `name`'s queue as a signed bundle (and records it, to match receipts later).
 * DEFAULT mode: CAs not registered there yet need the account's registration code
 * (USAGE without it); their verification certificates expire (`verificationExpiry`).
 */
export async function exportBundle(
  ctx: AppContext,
  cas: CaService,
  checkpointer: Checkpointer,
  sync: SyncService,
  name: string,
  registrationCode?: string,
): Promise<{ file: BundleFile; manifest: BundleManifest; verificationExpiry: string | null }> {
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
          model: i.deviceModel ?? null,
          firmware: i.deviceFirmware ?? null,
        });
    }
    // Registered already, with their Things, policies or groups still to make.
    const stepsOf = (id: number) =>
      ctx.store
        .identitySteps(name, id)
        .filter((s) => s.step !== "complete")
        .map((s) => ({
          step: s.step as "thing" | "principal" | "policy" | "group",
          name: s.name,
          state: s.state,
        }));
    const identities: BundleManifest["identities"] = [];
    if (hasIdentity(config))
      for (let after = 0; ;) {
        const page = ctx.store.identityDue(name, after, 5000);
        if (page.length === 0) break;
        after = page.at(-1)!.issuance.id;
        for (const { issuance: i, upload } of page)
          identities.push({
            serial: i.serial,
            deviceId: i.deviceId,
            sha256: i.fingerprint,
            model: i.deviceModel ?? null,
            firmware: i.deviceFirmware ?? null,
            certificateArn: upload.awsArn ?? "",
            steps: stepsOf(i.id),
          });
      }
    // Revoked there (or by this bundle) with a Thing or policy this target attached.
    const detachments: BundleManifest["detachments"] = [
      ...ctx.store.detachDue(name),
      ...ctx.store
        .revocationsDue(name)
        .filter(({ issuance }) =>
          ctx.store
            .identitySteps(name, issuance.id)
            .some((s) => (s.step === "principal" || s.step === "policy") && s.state === "done"),
        ),
    ].map(({ issuance: i, upload }) => ({
      serial: i.serial,
      deviceId: i.deviceId,
      sha256: i.fingerprint,
      certificateArn: upload.awsArn ?? "",
      steps: stepsOf(i.id).filter(
        (s) => (s.step === "principal" || s.step === "policy") && s.state === "done",
      ),
    }));
    const policies: BundleManifest["policies"] = config.policy
      ? (() => {
          const p = ctx.store.targetPolicy(name, config.policy);
          return p ? [{ name: config.policy, arn: p.arn, created: p.created }] : [];
        })()
      : [];
    const revokedUnregistered: BundleManifest["revokedUnregistered"] =
      config.deviceRegistration === "jitr"
        ? ctx.store
            .queryIssuances({ status: "REVOKED" })
            .filter((i) => {
              const u = ctx.store.uploads(name, i.id)[0];
              return !u || (u.state !== "done" && u.state !== "revoked");
            })
            .map((i) => ({
              serial: i.serial,
              deviceId: i.deviceId,
              caLabel: i.caLabel,
              pem: pemOfDer(i.certDer),
              sha256: i.fingerprint,
            }))
        : [];
    const registered = ctx.store.caRegistrations(name);
    // The CAs the devices need, and every CA registered there (its status follows the station's).
    const labels = [
      ...new Set([
        ...(config.deviceRegistration === "without-ca" ? [] : devices.map((d) => d.caLabel)),
        ...revokedUnregistered.map((d) => d.caLabel),
        ...registered.map((r) => r.caLabel),
      ]),
    ];
    const unregistered = labels.filter((l) => !ctx.store.caRegistration(l, name));
    if (config.caMode === "DEFAULT" && !code && unregistered.length > 0)
      throw new LinesignError(
        "USAGE",
        `Target "${name}" registers CAs in DEFAULT mode and CA "${unregistered[0]}" is not registered there yet, which needs the account's registration code: run "aws iot get-registration-code" on the online side, bring the code here and pass --registration-code CODE (or use SNI_ONLY, which needs none).`,
      );
    const caEntries: BundleManifest["cas"] = [];
    let verificationExpiry: string | null = null;
    for (const label of labels) {
      const ca = ctx.store.getCa(label)!;
      const reg = ctx.store.caRegistration(label, name);
      const entry: BundleManifest["cas"][number] = {
        label,
        pem: pemOfDer(ca.certDer!),
        sha256: ca.fingerprint!,
        active: ca.status === "active",
      };
      if (reg)
        entry.registration = {
          certificateId: reg.awsCertificateId,
          arn: reg.awsArn,
          mode: reg.mode,
          status: reg.remoteStatus,
        };
      else if (config.caMode === "DEFAULT" && code) {
        const pem = await cas.verificationCertificate(label, code);
        const notAfter = new Date(new X509Certificate(pem).validTo).toISOString();
        entry.verification = { registrationCode: code, pem, notAfter };
        if (!verificationExpiry || notAfter < verificationExpiry) verificationExpiry = notAfter;
      }
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
      identities,
      detachments,
      policies,
      revocations: ctx.store.revocationsDue(name).map(({ issuance, upload }) => ({
        serial: issuance.serial,
        deviceId: issuance.deviceId,
        awsCertificateId: upload.awsCertificateId!,
      })),
      revokedUnregistered,
    };
    const text = JSON.stringify(manifest);
    const signer = await checkpointer.signer();
    const signature = Buffer.from(await signer.sign(new TextEncoder().encode(text))).toString(
      "base64",
    );
    const items = [...devices, ...revokedUnregistered, ...identities, ...detachments].map((d) => ({
      serial: d.serial,
      sha256: d.sha256,
    }));
    ctx.store.transaction(() => {
      ctx.store.insertBundle({
        id: manifest.id,
        target: name,
        manifestSha256: sha256(text),
        items: JSON.stringify(items),
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
          revocations: manifest.revocations.length + revokedUnregistered.length,
          verificationExpiry,
        },
      });
    });
    return {
      file: { format: BUNDLE_FORMAT, manifest: text, signature },
      manifest,
      verificationExpiry,
    };
  });
}

/** Enrolls an online uploader's certificate (officer): its signed receipts are imported. */
export async function enrollUploader(
  ctx: AppContext,
  name: string,
  certPem: string,
): Promise<UploaderRecord> {
  return act(ctx, "uploader.enroll", name, async () => {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
      throw new LinesignError(
        "USAGE",
        `Uploader name "${name.slice(0, 80)}" is not allowed: use letters, digits, '.', '_' or '-' (at most 64).`,
      );
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certPem);
    } catch {
      throw new LinesignError(
        "USAGE",
        'The uploader certificate is not a PEM certificate: give the uploader.pem "linesign uploader init" wrote on the online machine.',
      );
    }
    const key = cert.publicKey;
    if (key.asymmetricKeyType !== "ec" || !cert.verify(key))
      throw new LinesignError(
        "USAGE",
        'The uploader certificate is not a self-signed EC certificate from "linesign uploader init".',
      );
    const rec: UploaderRecord = {
      name,
      fingerprint: sha256(cert.raw),
      certDer: new Uint8Array(cert.raw),
      enrolledBy: ctx.actor,
      enrolledAt: ctx.clock.now().toISOString(),
    };
    if (
      ctx.store.uploaderByFingerprint(rec.fingerprint) ||
      ctx.store.listUploaders().some((u) => u.name === name)
    )
      throw new LinesignError(
        "USAGE",
        `An uploader named "${name}" or with this certificate is enrolled already ("linesign uploader list").`,
      );
    recordChange(
      ctx,
      {
        action: "uploader.enroll",
        subject: name,
        details: { fingerprint: rec.fingerprint, subject: cert.subject, notAfter: cert.validTo },
      },
      () => ctx.store.insertUploader(rec),
    );
    return rec;
  });
}

/**
 * Marks what a receipt says was registered. Refuses a receipt that is unsigned, signed by an
 * uploader not enrolled here, for a bundle this station never exported, imported before, or
 * naming ids or ARNs AWS could not have returned for those certificates. A later receipt for
 * the same bundle (a re-upload) completes an earlier one; nothing done is ever undone.
 */
export async function importReceipt(
  ctx: AppContext,
  bytes: Uint8Array,
): Promise<{
  bundleId: string;
  receiptId: string;
  done: number;
  failed: number;
  cas: number;
  uploader: string;
}> {
  return act(ctx, "bundle.receipt", null, async () => {
    const bad = (what: string) =>
      new LinesignError("RECEIPT_INVALID", `The receipt was refused: ${what}.`);
    if (bytes.length > MAX_RECEIPT_BYTES)
      throw bad("it is larger than any receipt an upload writes");
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(bytes).toString("utf8"));
    } catch {
      throw bad("it is not JSON");
    }
    const f = ReceiptFileSchema.safeParse(raw);
    if (!f.success) {
      const o = (raw ?? {}) as Record<string, unknown>;
      throw bad(
        !o.signature || !o.uploader
          ? 'it is not signed by an uploader (write receipts with "linesign upload", whose uploader an officer enrolled with "linesign uploader enroll")'
          : `it is not a ${RECEIPT_FORMAT} file (${f.error.issues[0]!.path.join(".")} ${f.error.issues[0]!.message})`,
      );
    }
    const file = f.data;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(file.uploader);
    } catch {
      throw bad("its uploader certificate cannot be read");
    }
    const uploader = ctx.store.uploaderByFingerprint(sha256(cert.raw));
    if (!uploader)
      throw bad(
        `it is signed by an uploader this station does not trust (${cert.subject.replace(/\n/g, ", ").slice(0, 120)}): an officer enrolls it with "linesign uploader enroll --name N --cert uploader.pem"`,
      );
    const enrolled = new X509Certificate(Buffer.from(uploader.certDer));
    if (
      !verify(
        "sha256",
        Buffer.from(file.receipt, "utf8"),
        { key: enrolled.publicKey, dsaEncoding: "ieee-p1363" },
        Buffer.from(file.signature, "base64"),
      )
    )
      throw bad(
        `its signature does not verify with uploader "${uploader.name}"'s key (altered after it was signed)`,
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(file.receipt);
    } catch {
      throw bad("its signed text is not JSON");
    }
    const body = ReceiptBodySchema.safeParse(parsed);
    if (!body.success)
      throw bad(
        `it does not follow ${file.format} (${body.error.issues[0]!.path.join(".")} ${body.error.issues[0]!.message})`,
      );
    const r: ReceiptBody = body.data;
    if (r.station !== ctx.stationId)
      throw bad(`it is for station "${r.station}", not this one ("${ctx.stationId}")`);
    const b = ctx.store.getBundle(r.bundleId);
    if (!b) throw bad(`this station never exported bundle ${r.bundleId}`);
    if (b.manifestSha256 !== r.manifestSha256)
      throw bad("it does not match the bundle this station exported under that id");
    const seen = ctx.store.getBundleReceipt(r.id);
    if (seen)
      throw bad(
        `receipt ${r.id} for bundle ${r.bundleId} was imported already, at ${seen.importedAt} (a replay changes nothing)`,
      );
    checkAwsAnswers(
      ctx,
      b.target,
      r,
      JSON.parse(b.items) as { serial: string; sha256: string }[],
      bad,
    );
    let done = 0;
    let failed = 0;
    const at = ctx.clock.now().toISOString();
    ctx.store.transaction(() => {
      for (const c of r.cas)
        ctx.store.putCaRegistration({
          caLabel: c.label,
          target: b.target,
          awsCertificateId: c.certificateId,
          awsArn: c.arn,
          mode: c.mode,
          remoteStatus: c.status,
          updatedAt: at,
        });
      for (const d of r.devices) {
        const i = ctx.store.getIssuanceBySerial(d.serial)!;
        const prior = ctx.store.uploads(b.target, i.id)[0];
        // Nothing done is undone by a later (or older) receipt.
        if (
          prior &&
          (prior.state === "done" || prior.state === "revoked" || prior.state === "left-to-jitr") &&
          d.state === "failed"
        )
          continue;
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
      for (const p of r.policies) ctx.store.putTargetPolicy(b.target, p.name, p.arn, p.created, at);
      for (const d of r.identity) {
        const i = ctx.store.getIssuanceBySerial(d.serial)!;
        const prior = ctx.store.identitySteps(b.target, i.id);
        for (const s of d.steps) {
          const had = prior.find((p) => p.step === s.step && p.name === s.name);
          // Nothing done is undone by a later (or older) receipt's failure.
          if (had && had.state !== "failed" && s.state === "failed") continue;
          if (had?.state === "detached" && s.state === "done") continue;
          ctx.store.putIdentityStep({
            issuanceId: i.id,
            target: b.target,
            step: s.step,
            name: s.name,
            state: s.state,
            arn: s.arn,
            attempts: 1,
            lastError: s.error,
            updatedAt: at,
          });
          if (s.state === "detached")
            ctx.store.appendEvent({
              actor: ctx.actor,
              action: "sync.identity-detach",
              subject: i.deviceId,
              outcome: "ok",
              details: {
                target: b.target,
                serial: i.serial,
                detachedFrom: `${s.step === "principal" ? "Thing" : "policy"} ${s.name}`,
                thingLeft: s.step === "principal" ? s.name : null,
                receipt: r.id,
              },
            });
        }
      }
      for (const v of r.revoked) {
        const i = ctx.store.getIssuanceBySerial(v.serial);
        if (!i) continue;
        const prior = ctx.store.uploads(b.target, i.id)[0];
        ctx.store.recordUpload({
          issuanceId: i.id,
          target: b.target,
          state: "revoked",
          awsCertificateId: v.certificateId ?? prior?.awsCertificateId ?? null,
          awsArn: v.arn ?? prior?.awsArn ?? null,
          attempts: (prior?.attempts ?? 0) + 1,
          lastError: null,
          updatedAt: at,
        });
      }
      ctx.store.insertBundleReceipt({
        id: r.id,
        bundleId: r.bundleId,
        sha256: sha256(bytes),
        uploader: uploader.name,
        importedAt: at,
      });
      ctx.store.markBundleReceipt(r.bundleId, sha256(bytes), at);
      ctx.store.appendEvent({
        actor: ctx.actor,
        action: "bundle.receipt",
        subject: b.target,
        outcome: "ok",
        details: {
          bundle: r.bundleId,
          receipt: r.id,
          uploader: uploader.name,
          account: r.account,
          done,
          failed,
          cas: r.cas.length,
          revoked: r.revoked.length,
          identitySteps: r.identity.reduce((n, d) => n + d.steps.length, 0),
        },
      });
    });
    return {
      bundleId: r.bundleId,
      receiptId: r.id,
      done,
      failed,
      cas: r.cas.length,
      uploader: uploader.name,
    };
  });
}

/**
 * What AWS could have answered: a certificate's id is the SHA-256 of its DER, its ARN names
 * the target's region, one account, and that id; the account is the one the station knows for
 * the target already (from earlier registrations), and the one STS named to the uploader.
 */
function checkAwsAnswers(
  ctx: AppContext,
  target: string,
  r: ReceiptBody,
  items: { serial: string; sha256: string }[],
  bad: (what: string) => LinesignError,
): void {
  const region = ctx.store.getTarget(target)
    ? (JSON.parse(ctx.store.getTarget(target)!.config) as { region: string }).region
    : r.region;
  if (r.region !== region)
    throw bad(
      `it records an upload to region ${r.region}, but target "${target}" is in ${region}: upload the bundle again without --region (or with --region ${region})`,
    );
  const known = new Map(items.map((i) => [i.serial, i.sha256]));
  const accounts = new Set<string>();
  const arnOf = (arn: string, kind: "cert" | "cacert", id: string, what: string): void => {
    const m = /^arn:aws[a-z-]*:iot:([a-z0-9-]+):(\d{12}):(cert|cacert)\/([0-9a-f]{64})$/.exec(arn);
    if (!m || m[1] !== region || m[3] !== kind || m[4] !== id)
      throw bad(`${what}'s ARN ${arn.slice(0, 120)} is not one AWS returns for it in ${region}`);
    accounts.add(m[2]!);
  };
  for (const d of r.devices) {
    if (known.get(d.serial) !== d.sha256)
      throw bad(`it names certificate ${d.serial}, which is not in that bundle`);
    if (d.state === "done") {
      if (d.certificateId !== d.sha256)
        throw bad(
          `it says certificate ${d.serial} was registered as ${String(d.certificateId).slice(0, 64)}, an id AWS cannot have given it (AWS's id is the SHA-256 of the certificate)`,
        );
      arnOf(d.arn ?? "", "cert", d.sha256, `certificate ${d.serial}`);
    }
  }
  for (const v of r.revoked) {
    const i = ctx.store.getIssuanceBySerial(v.serial);
    if (!i) throw bad(`it names revoked certificate ${v.serial}, which this station never issued`);
    if (v.certificateId !== null && v.certificateId !== i.fingerprint)
      throw bad(
        `it names id ${v.certificateId.slice(0, 64)} for revoked certificate ${v.serial}, which AWS cannot have given it`,
      );
    if (v.arn !== null) arnOf(v.arn, "cert", i.fingerprint, `revoked certificate ${v.serial}`);
  }
  for (const c of r.cas) {
    const ca = ctx.store.getCa(c.label);
    if (!ca?.fingerprint) throw bad(`it names CA "${c.label}", which this station does not have`);
    if (c.certificateId !== ca.fingerprint)
      throw bad(
        `it names id ${c.certificateId.slice(0, 64)} for CA "${c.label}", which AWS cannot have given it`,
      );
    arnOf(c.arn, "cacert", ca.fingerprint, `CA "${c.label}"`);
  }
  // Identity steps: only the names this target's options give that device, on its certificate.
  const config = ctx.store.getTarget(target)
    ? (JSON.parse(ctx.store.getTarget(target)!.config) as TargetConfig)
    : null;
  for (const d of r.identity) {
    if (!known.has(d.serial))
      throw bad(`it names identity steps for certificate ${d.serial}, which is not in that bundle`);
    const i = ctx.store.getIssuanceBySerial(d.serial)!;
    const th =
      config?.thingName &&
      thingOf(config.thingName, {
        deviceId: i.deviceId,
        model: i.deviceModel ?? null,
        firmware: i.deviceFirmware ?? null,
      });
    const thing = th && "name" in th ? th.name : null;
    for (const s of d.steps) {
      const allowed =
        !config || !hasIdentity(config)
          ? false
          : s.step === "complete"
            ? s.name === ""
            : s.step === "thing" || s.step === "principal"
              ? s.name === thing
              : s.step === "policy"
                ? s.name === config.policy
                : (config.thingGroups ?? []).includes(s.name);
      if (!allowed)
        throw bad(
          `it records step ${s.step} "${s.name.slice(0, 128)}" for certificate ${d.serial}, which target "${target}" does not make for that device`,
        );
      if (s.step === "thing" && s.state === "done") {
        const m = /^arn:aws[a-z-]*:iot:([a-z0-9-]+):(\d{12}):thing\/(.+)$/.exec(s.arn ?? "");
        if (!m || m[1] !== region || m[3] !== s.name)
          throw bad(
            `Thing ${s.name}'s ARN ${String(s.arn).slice(0, 120)} is not one AWS returns in ${region}`,
          );
        accounts.add(m[2]!);
      }
      if ((s.step === "principal" || s.step === "policy") && s.state === "done")
        arnOf(s.arn ?? "", "cert", i.fingerprint, `certificate ${d.serial}`);
    }
  }
  if (r.account) accounts.add(r.account);
  // The account the station already knows for this target.
  for (const reg of ctx.store.caRegistrations(target)) {
    const m = /^arn:[^:]+:iot:[^:]*:(\d{12}):/.exec(reg.awsArn);
    if (m) accounts.add(m[1]!);
  }
  const prior = ctx.store.uploads(target).find((u) => u.awsArn);
  const pm = prior?.awsArn ? /^arn:[^:]+:iot:[^:]*:(\d{12}):/.exec(prior.awsArn) : null;
  if (pm) accounts.add(pm[1]!);
  if (accounts.size > 1)
    throw bad(
      `it names more than one AWS account (${[...accounts].join(", ")}) for target "${target}"; a target is one account`,
    );
}
