/**
 * Registers one target's share of the queue with AWS IoT, in order: CAs,
 * device certificates, revocations, CA status changes. The same code runs at
 * the station (`linesign sync`, state in SQLite, verification certificates
 * signed in the token) and on an online machine (`linesign upload`, state in
 * the receipt), through a SyncLedger.
 *
 * Every outcome is written only after AWS answered. ResourceAlreadyExists is
 * "done" once the resource AWS names is checked to hold our certificate.
 * Throttling, 5xx and no answer are retried with backoff and jitter; other
 * refusals are recorded with AWS's message and not retried.
 */
import { arnParts, backoffMs, classifyFailure } from "../../domain/aws-failure.js";
import type {
  CaRegistration,
  IotFailure,
  IotGateway,
  IotRegistered,
  IotResult,
} from "../../domain/ports.js";
import { autoRegistrationOf, type TargetConfig } from "../../domain/target.js";
import { Pacer } from "./pacer.js";

export interface SyncCa {
  label: string;
  pem: string;
  /** Whether the CA is active at the station. */
  active: boolean;
}

export interface DeviceItem {
  /** Position in the ledger's queue (pages continue after it). */
  cursor: number;
  /** The certificate's serial (hex). */
  serial: string;
  deviceId: string;
  caLabel: string;
  pem: string;
}

export interface RevocationItem {
  serial: string;
  deviceId: string;
  awsCertificateId: string;
}

export type DeviceOutcome =
  | { state: "done"; certificateId: string; arn: string; attempts: number; already: boolean }
  | { state: "left-to-jitr"; attempts: 0 }
  | { state: "failed"; code: string; message: string; attempts: number; retryable: boolean };

/** Where a sync reads its queue and writes what AWS answered. */
export interface SyncLedger {
  ca(label: string): SyncCa | null;
  registration(caLabel: string): CaRegistration | null;
  saveRegistration(r: CaRegistration): void;
  /** The verification certificate for a CA and registration code (DEFAULT mode). */
  verification(caLabel: string, registrationCode: string): Promise<string>;
  /** The next page of the device queue after cursor `after` (0: from the start). */
  devices(after: number, limit: number): DeviceItem[];
  saveDevice(item: DeviceItem, outcome: DeviceOutcome): void;
  revocations(): RevocationItem[];
  saveRevoked(item: RevocationItem, attempts: number): void;
  /** A fact worth the event log (a CA registered, a permanent refusal). */
  note(e: {
    action: string;
    subject: string | null;
    outcome: "ok" | "refused" | "failed";
    code?: string;
    message?: string;
    details: Record<string, unknown>;
  }): void;
}

export type SyncItemEvent = {
  target: string;
  kind: "ca" | "device" | "revocation" | "ca-status";
  ref: string;
  outcome:
    | "registered"
    | "already-registered"
    | "left-to-jitr"
    | "revoked"
    | "updated"
    | "failed"
    | "deferred"
    | "planned";
  certificateId?: string;
  code?: string;
  message?: string;
  attempts?: number;
};

export interface TargetSummary {
  target: string;
  region: string;
  caMode: TargetConfig["caMode"];
  deviceRegistration: TargetConfig["deviceRegistration"];
  cas: { registered: number; already: number; failed: number; statusChanges: number };
  devices: {
    registered: number;
    already: number;
    leftToJitr: number;
    failed: number;
    deferred: number;
  };
  revoked: number;
  /** Requests sent (attempts included). */
  requests: number;
  /** Failed for good (refused, not retryable). */
  failedForGood: number;
  /** AWS refused the target's credentials: the run stopped there. */
  credentialsRefused: boolean;
  notes: string[];
}

export interface TargetSyncOptions {
  dryRun?: boolean;
  onItem?: (e: SyncItemEvent) => void;
  /** Requests in flight at once (the pacer still holds the rate). */
  concurrency?: number;
  maxAttempts?: number;
  random?: () => number;
  /** The target's pacer, when the gateway applies it itself (right before sending). */
  pacer?: Pacer;
}

const PAGE = 500;
const pemOf = (pem: string) => pem.replace(/\s+/g, "");

export class TargetSync {
  private readonly pacer: Pacer;
  private readonly summary: TargetSummary;
  private readonly maxAttempts: number;
  private readonly random: () => number;
  private stopReason: string | null = null;

  constructor(
    private readonly name: string,
    private readonly t: TargetConfig,
    private readonly gw: IotGateway,
    private readonly ledger: SyncLedger,
    private readonly o: TargetSyncOptions = {},
  ) {
    this.pacer = o.pacer ?? new Pacer(t.maxRps);
    this.maxAttempts = o.maxAttempts ?? 8;
    this.random = o.random ?? Math.random;
    this.summary = {
      target: name,
      region: t.region,
      caMode: t.caMode,
      deviceRegistration: t.deviceRegistration,
      cas: { registered: 0, already: 0, failed: 0, statusChanges: 0 },
      devices: { registered: 0, already: 0, leftToJitr: 0, failed: 0, deferred: 0 },
      revoked: 0,
      requests: 0,
      failedForGood: 0,
      credentialsRefused: false,
      notes: [],
    };
  }

  async run(): Promise<TargetSummary> {
    const s = this.summary;
    // 1 + 2: device certificates, each CA registered before its first device.
    const caReady = new Map<string, CaRegistration | null>();
    let after = 0;
    for (;;) {
      const page = this.ledger.devices(after, PAGE);
      if (page.length === 0) break;
      after = page.at(-1)!.cursor;
      // Without a CA, devices are registered on their own (multi-account registration).
      if (this.t.deviceRegistration !== "without-ca")
        for (const label of new Set(page.map((d) => d.caLabel)))
          if (!caReady.has(label) && !this.stopReason)
            caReady.set(label, await this.ensureCa(label));
      if (this.stopReason) break;
      await this.pool(page, (d) => this.device(d, caReady.get(d.caLabel) ?? null));
      if (this.stopReason) break;
    }
    // 3: revocations, then CA status changes.
    if (!this.stopReason) await this.pool(this.ledger.revocations(), (r) => this.revoke(r));
    if (!this.stopReason) await this.caStatusChanges();
    if (this.stopReason) s.notes.push(this.stopReason);
    if (this.t.deviceRegistration === "jitr" && s.devices.leftToJitr > 0)
      s.notes.push(
        `${s.devices.leftToJitr} device certificate(s) are left to just-in-time registration: each device must present its CA certificate in its TLS chain on its first connection, and is registered PENDING_ACTIVATION then.`,
      );
    s.requests = this.pacer.count;
    return s;
  }

  private emit(e: Omit<SyncItemEvent, "target">): void {
    this.o.onItem?.({ target: this.name, ...e });
  }

  /** Runs `work` over `items` with a few in flight. */
  private async pool<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const n = Math.max(1, Math.min(this.o.concurrency ?? 8, items.length));
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (next < items.length && !this.stopReason) await work(items[next++]!);
      }),
    );
  }

  /** One call, paced, retried while AWS says to try again. */
  private async attempt<T>(
    fn: () => Promise<IotResult<T>>,
  ): Promise<{ r: IotResult<T>; attempts: number }> {
    for (let attempts = 1; ; attempts++) {
      if (!this.o.pacer) await this.pacer.take();
      const r = await fn();
      if (r.ok || classifyFailure(r.failure) !== "retry" || attempts >= this.maxAttempts)
        return { r, attempts };
      await new Promise((res) => setTimeout(res, backoffMs(attempts, this.random())));
    }
  }

  private credentialsFailed(f: IotFailure): void {
    this.summary.credentialsRefused = true;
    this.stopReason = `AWS refused the credentials for target "${this.name}" (${f.name}: ${f.message}). Check the AWS profile or the environment's credentials; nothing more was sent to this target.`;
  }

  private async ensureCa(label: string): Promise<CaRegistration | null> {
    const existing = this.ledger.registration(label);
    if (existing) return existing;
    const ca = this.ledger.ca(label);
    if (!ca) {
      this.summary.cas.failed++;
      this.emit({ kind: "ca", ref: label, outcome: "failed", code: "CA_UNKNOWN" });
      return null;
    }
    const active = this.t.caActive && ca.active;
    if (this.o.dryRun) {
      this.emit({
        kind: "ca",
        ref: label,
        outcome: "planned",
        message: `register ${this.t.caMode}${active ? " ACTIVE" : " INACTIVE"}${autoRegistrationOf(this.t) ? " with auto-registration" : ""}`,
      });
      return null;
    }
    let verificationPem: string | undefined;
    if (this.t.caMode === "DEFAULT") {
      const code = await this.attempt(() => this.gw.getRegistrationCode());
      if (!code.r.ok) return this.caFailed(label, code.r.failure, code.attempts);
      try {
        verificationPem = await this.ledger.verification(label, code.r.value);
      } catch (e) {
        const message = (e as Error).message;
        this.summary.cas.failed++;
        this.summary.failedForGood++;
        this.emit({ kind: "ca", ref: label, outcome: "failed", code: "VERIFICATION", message });
        return null;
      }
    }
    const reg = await this.attempt(() =>
      this.gw.registerCaCertificate({
        caPem: ca.pem,
        ...(verificationPem ? { verificationPem } : {}),
        mode: this.t.caMode,
        setAsActive: active,
        allowAutoRegistration: autoRegistrationOf(this.t),
        ...(this.t.jitpTemplate && this.t.jitpRoleArn
          ? {
              registrationConfig: {
                templateBody: this.t.jitpTemplate,
                roleArn: this.t.jitpRoleArn,
              },
            }
          : {}),
      }),
    );
    let registered: IotRegistered;
    let already = false;
    if (reg.r.ok) registered = reg.r.value;
    else if (classifyFailure(reg.r.failure) === "exists" && reg.r.failure.resourceId) {
      // AWS holds a CA already: ours only if the certificate it describes is ours.
      const id = reg.r.failure.resourceId;
      const d = await this.attempt(() => this.gw.describeCaCertificate(id));
      if (!d.r.ok || pemOf(d.r.value.pem) !== pemOf(ca.pem))
        return this.caFailed(label, reg.r.failure, reg.attempts);
      if (d.r.value.mode && d.r.value.mode !== this.t.caMode)
        return this.caFailed(
          label,
          {
            name: "CertificateModeMismatch",
            message: `this account already holds the CA in ${d.r.value.mode} mode (${id}); a CA has one mode per account: delete it there and sync again to register it in ${this.t.caMode} mode, or give the target --ca-mode ${d.r.value.mode}`,
            httpStatus: null,
          },
          reg.attempts,
        );
      registered = { certificateId: id, certificateArn: reg.r.failure.resourceArn ?? "" };
      already = true;
    } else return this.caFailed(label, reg.r.failure, reg.attempts);
    const r: CaRegistration = {
      caLabel: label,
      target: this.name,
      awsCertificateId: registered.certificateId,
      awsArn: registered.certificateArn,
      mode: this.t.caMode,
      remoteStatus: active ? "ACTIVE" : "INACTIVE",
      updatedAt: new Date().toISOString(),
    };
    this.ledger.saveRegistration(r);
    this.ledger.note({
      action: "sync.ca-register",
      subject: label,
      outcome: "ok",
      details: {
        target: this.name,
        certificateId: r.awsCertificateId,
        arn: r.awsArn,
        mode: r.mode,
        status: r.remoteStatus,
        already,
      },
    });
    if (already) this.summary.cas.already++;
    else this.summary.cas.registered++;
    this.emit({
      kind: "ca",
      ref: label,
      outcome: already ? "already-registered" : "registered",
      certificateId: r.awsCertificateId,
      attempts: reg.attempts,
    });
    return r;
  }

  private caFailed(label: string, f: IotFailure, attempts: number): null {
    const kind = classifyFailure(f);
    if (kind === "credentials") this.credentialsFailed(f);
    this.summary.cas.failed++;
    if (kind !== "retry") this.summary.failedForGood++;
    const message = `AWS did not register CA "${label}" at target "${this.name}": ${f.name}: ${f.message}`;
    this.ledger.note({
      action: "sync.ca-register",
      subject: label,
      outcome: kind === "retry" ? "failed" : "refused",
      code: f.name,
      message,
      details: { target: this.name, attempts },
    });
    this.emit({
      kind: "ca",
      ref: label,
      outcome: kind === "retry" ? "deferred" : "failed",
      code: f.name,
      message,
      attempts,
    });
    return null;
  }

  private async device(d: DeviceItem, ca: CaRegistration | null): Promise<void> {
    const s = this.summary.devices;
    if (this.o.dryRun) {
      this.emit({
        kind: "device",
        ref: d.serial,
        outcome: "planned",
        message:
          this.t.deviceRegistration === "jitr"
            ? "left to just-in-time registration"
            : this.t.deviceRegistration === "with-ca"
              ? "RegisterCertificate with its CA"
              : "RegisterCertificateWithoutCA",
      });
      return;
    }
    if (this.t.deviceRegistration === "jitr") {
      if (!ca) return this.deviceDeferred(d, "its CA is not registered at this target yet");
      this.ledger.saveDevice(d, { state: "left-to-jitr", attempts: 0 });
      s.leftToJitr++;
      this.emit({ kind: "device", ref: d.serial, outcome: "left-to-jitr" });
      return;
    }
    if (this.t.deviceRegistration === "with-ca" && !ca)
      return this.deviceDeferred(d, "its CA is not registered at this target yet");
    const caPem = this.ledger.ca(d.caLabel)?.pem;
    const { r, attempts } = await this.attempt(() =>
      this.t.deviceRegistration === "with-ca"
        ? this.gw.registerCertificate({
            pem: d.pem,
            ...(caPem ? { caPem } : {}),
            status: this.t.deviceStatus,
          })
        : this.gw.registerCertificateWithoutCa({ pem: d.pem, status: this.t.deviceStatus }),
    );
    if (r.ok) {
      this.ledger.saveDevice(d, {
        state: "done",
        certificateId: r.value.certificateId,
        arn: r.value.certificateArn,
        attempts,
        already: false,
      });
      s.registered++;
      this.emit({
        kind: "device",
        ref: d.serial,
        outcome: "registered",
        certificateId: r.value.certificateId,
        attempts,
      });
      return;
    }
    const f = r.failure;
    const kind = classifyFailure(f);
    if (kind === "exists" && f.resourceId) {
      const id = f.resourceId;
      const desc = await this.attempt(() => this.gw.describeCertificate(id));
      if (desc.r.ok && pemOf(desc.r.value.pem) === pemOf(d.pem)) {
        this.ledger.saveDevice(d, {
          state: "done",
          certificateId: id,
          arn: f.resourceArn ?? "",
          attempts: attempts + desc.attempts,
          already: true,
        });
        s.already++;
        this.emit({
          kind: "device",
          ref: d.serial,
          outcome: "already-registered",
          certificateId: id,
          attempts,
        });
        return;
      }
    }
    if (kind === "credentials") this.credentialsFailed(f);
    let message = `${f.name}: ${f.message}`;
    if (kind === "state" && ca) {
      const where = arnParts(ca.awsArn);
      message = `AWS refused device ${d.deviceId} (serial ${d.serial}) because its CA "${d.caLabel}" (${ca.awsCertificateId}) is not ACTIVE in account ${where.account ?? "?"}, region ${where.region ?? this.t.region}. Activate the CA there (aws iot update-ca-certificate --certificate-id ${ca.awsCertificateId} --new-status ACTIVE), or at the station ("linesign ca activate --label ${d.caLabel}" then sync), and run sync again. AWS said: ${f.message}`;
    }
    const retryable = kind === "retry";
    this.ledger.saveDevice(d, { state: "failed", code: f.name, message, attempts, retryable });
    if (retryable) s.deferred++;
    else {
      s.failed++;
      this.summary.failedForGood++;
      this.ledger.note({
        action: "sync.device-register",
        subject: d.deviceId,
        outcome: "refused",
        code: f.name,
        message,
        details: { target: this.name, serial: d.serial, attempts },
      });
    }
    this.emit({
      kind: "device",
      ref: d.serial,
      outcome: retryable ? "deferred" : "failed",
      code: f.name,
      message,
      attempts,
    });
  }

  private deviceDeferred(d: DeviceItem, why: string): void {
    this.summary.devices.deferred++;
    this.emit({
      kind: "device",
      ref: d.serial,
      outcome: "deferred",
      message: `not sent: ${why}`,
    });
  }

  private async revoke(r: RevocationItem): Promise<void> {
    if (this.o.dryRun) {
      this.emit({ kind: "revocation", ref: r.serial, outcome: "planned" });
      return;
    }
    const { r: res, attempts } = await this.attempt(() =>
      this.gw.updateCertificate(r.awsCertificateId, "REVOKED"),
    );
    if (res.ok) {
      this.ledger.saveRevoked(r, attempts);
      this.summary.revoked++;
      this.emit({ kind: "revocation", ref: r.serial, outcome: "revoked", attempts });
      return;
    }
    const retry = classifyFailure(res.failure) === "retry";
    if (!retry) this.summary.failedForGood++;
    this.emit({
      kind: "revocation",
      ref: r.serial,
      outcome: retry ? "deferred" : "failed",
      code: res.failure.name,
      message: res.failure.message,
      attempts,
    });
  }

  private async caStatusChanges(): Promise<void> {
    for (const label of this.registeredLabels()) {
      const reg = this.ledger.registration(label)!;
      const ca = this.ledger.ca(label);
      if (!ca) continue;
      const desired = this.t.caActive && ca.active ? "ACTIVE" : "INACTIVE";
      if (desired === reg.remoteStatus) continue;
      if (this.o.dryRun) {
        this.emit({ kind: "ca-status", ref: label, outcome: "planned", message: desired });
        continue;
      }
      const { r, attempts } = await this.attempt(() =>
        this.gw.updateCaCertificate(reg.awsCertificateId, desired),
      );
      if (r.ok) {
        this.ledger.saveRegistration({
          ...reg,
          remoteStatus: desired,
          updatedAt: new Date().toISOString(),
        });
        this.ledger.note({
          action: "sync.ca-status",
          subject: label,
          outcome: "ok",
          details: { target: this.name, certificateId: reg.awsCertificateId, status: desired },
        });
        this.summary.cas.statusChanges++;
        this.emit({
          kind: "ca-status",
          ref: label,
          outcome: "updated",
          message: desired,
          attempts,
        });
      } else {
        if (classifyFailure(r.failure) !== "retry") this.summary.failedForGood++;
        this.emit({
          kind: "ca-status",
          ref: label,
          outcome: "failed",
          code: r.failure.name,
          message: r.failure.message,
          attempts,
        });
      }
    }
  }

  private registeredLabels(): string[] {
    return this.knownLabels.filter((l) => this.ledger.registration(l) !== null);
  }

  /** Labels of every CA the ledger knows (set by the caller). */
  knownLabels: string[] = [];
}
