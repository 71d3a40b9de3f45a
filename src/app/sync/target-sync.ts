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
 * refusals are recorded with AWS's message and not retried. A refusal of the
 * caller (bad, expired or unknown key, wrong secret, IAM) stops the target:
 * until one request has been answered, requests go one at a time, so such a
 * target costs exactly one request.
 *
 * A CA is looked up before it is registered (DescribeCACertificate by its
 * id, the SHA-256 of its DER): only a CA AWS does not hold costs a
 * registration code and a verification certificate signed in the token.
 *
 * Targets that make the device's Thing, policy and groups (device-identity.ts)
 * go on with those steps right after each certificate is registered; devices
 * whose steps were cut short earlier are taken first, and revoked
 * certificates are detached after the revocations.
 */
import { createHash } from "node:crypto";
import { arnParts, backoffMs, classifyFailure } from "../../domain/aws-failure.js";
import type {
  CaRegistration,
  IotFailure,
  IotGateway,
  IotRegistered,
  IotResult,
  IotWhere,
} from "../../domain/ports.js";
import { autoRegistrationOf, hasIdentity, type TargetConfig } from "../../domain/target.js";
import {
  DeviceIdentity,
  type DetachItem,
  type IdentityCounts,
  type IdentityItem,
  type IdentityLedger,
} from "./device-identity.js";
import { TargetPacer } from "./pacer.js";

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
  /** What the device reported when it identified on the line (its Thing's name and attributes). */
  model?: string | null;
  firmware?: string | null;
}

export interface RevocationItem {
  serial: string;
  deviceId: string;
  awsCertificateId: string;
}

/** A revoked certificate a just-in-time target has never seen: registered REVOKED so AWS refuses it. */
export interface RevokedUnregisteredItem {
  serial: string;
  deviceId: string;
  caLabel: string;
  pem: string;
}

export type DeviceOutcome =
  | { state: "done"; certificateId: string; arn: string; attempts: number; already: boolean }
  | { state: "left-to-jitr"; attempts: 0 }
  | { state: "failed"; code: string; message: string; attempts: number; retryable: boolean };

/** Where a sync reads its queue and writes what AWS answered. */
export interface SyncLedger extends IdentityLedger {
  /** Certificates registered at the target whose identity steps are not complete, after `after`. */
  identityDue(after: number, limit: number): (IdentityItem & { cursor: number })[];
  /** Revoked certificates with a Thing or policy attachment this target made. */
  detachDue(): DetachItem[];
  ca(label: string): SyncCa | null;
  registration(caLabel: string): CaRegistration | null;
  saveRegistration(r: CaRegistration): void;
  /** The verification certificate for a CA and registration code (DEFAULT mode). */
  verification(caLabel: string, registrationCode: string): Promise<string>;
  /** The next page of the device queue after cursor `after` (0: from the start). */
  devices(after: number, limit: number): DeviceItem[];
  /**
   * Resolves once what was read so far is on disk: another station process
   * commits certificates it has not yet synced (synchronous=NORMAL), and this
   * reader sees them at once. Absent: what the ledger holds is on disk.
   */
  durable?(): Promise<void>;
  saveDevice(item: DeviceItem, outcome: DeviceOutcome): void;
  revocations(): RevocationItem[];
  saveRevoked(item: RevocationItem, attempts: number): void;
  /** jitr targets: revoked certificates never registered there. */
  revokedUnregistered(): RevokedUnregisteredItem[];
  saveRevokedRegistration(
    item: RevokedUnregisteredItem,
    reg: { certificateId: string; arn: string },
    attempts: number,
  ): void;
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
  kind: "ca" | "device" | "revocation" | "ca-status" | "identity";
  ref: string;
  outcome:
    | "done"
    | "detached"
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
  /** Dry run: why AWS will refuse this item. */
  willFail?: string;
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
  /** The devices' Things, attachments and groups (targets that ask for them). */
  identity: IdentityCounts;
  /** Requests sent (attempts included). */
  requests: number;
  /** Failed for good (refused, not retryable). */
  failedForGood: number;
  /** AWS refused the target's credentials: the run stopped there. */
  credentialsRefused: boolean;
  /** Where the requests went: endpoint (and what chose it), profile, region. */
  where: IotWhere;
  /** The account the credentials belong to (STS, in a dry run), or null when not asked or unknown. */
  account: string | null;
  /** Dry run: planned items AWS will refuse. */
  willFail: number;
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
  pacer?: TargetPacer;
}

const PAGE = 500;
/** What a request not sent (the target stopped on its credentials) counts as. */
const STOPPED: IotFailure = {
  name: "NotSent",
  message: "not sent: AWS refused this target's credentials",
  httpStatus: null,
};
const certificateIdOf = (pem: string): string =>
  createHash("sha256")
    .update(
      Buffer.from(
        pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""),
        "base64",
      ),
    )
    .digest("hex");
const pemOf = (pem: string) => pem.replace(/\s+/g, "");

export class TargetSync {
  private readonly pacer: TargetPacer;
  private readonly identity: DeviceIdentity | null;
  private readonly summary: TargetSummary;
  private readonly maxAttempts: number;
  private readonly random: () => number;
  private stopReason: string | null = null;
  /** Whether AWS has answered this target once with anything but a refusal of the caller. */
  private proven = false;
  /** Dry run: the status each CA will have at AWS when its devices are sent. */
  private readonly plannedStatus = new Map<string, "ACTIVE" | "INACTIVE">();

  constructor(
    private readonly name: string,
    private readonly t: TargetConfig,
    private readonly gw: IotGateway,
    private readonly ledger: SyncLedger,
    private readonly o: TargetSyncOptions = {},
  ) {
    this.pacer = o.pacer ?? new TargetPacer(t.maxRps);
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
      identity: {
        things: 0,
        principals: 0,
        policies: 0,
        groups: 0,
        complete: 0,
        failed: 0,
        deferred: 0,
        detached: 0,
      },
      requests: 0,
      failedForGood: 0,
      credentialsRefused: false,
      where: gw.where,
      account: null,
      willFail: 0,
      notes: [],
    };
    this.identity = hasIdentity(t)
      ? new DeviceIdentity({
          target: name,
          t,
          gw,
          ledger,
          attempt: (fn) => this.attempt(fn),
          credentialsFailed: (f) => this.credentialsFailed(f),
          stopped: () => this.stopReason !== null,
          emit: (e) => this.emit(e),
          counts: this.summary.identity,
          failedForGood: () => void this.summary.failedForGood++,
        })
      : null;
  }

  async run(): Promise<TargetSummary> {
    const s = this.summary;
    if (this.o.dryRun) await this.checkIdentity();
    // 0: devices whose Thing, policy or groups were cut short by an earlier run, at the next step.
    if (this.identity && !this.o.dryRun)
      for (let after = 0; !this.stopReason;) {
        const page = this.ledger.identityDue(after, PAGE);
        if (page.length === 0) break;
        after = page.at(-1)!.cursor;
        await this.pool(page, (i) => this.identity!.run(i));
      }
    // 1 + 2: device certificates, each CA registered (or its status raised) before its first device.
    const caReady = new Map<string, CaRegistration | null>();
    const ready = async (label: string): Promise<void> => {
      if (!caReady.has(label) && !this.stopReason) caReady.set(label, await this.ensureCa(label));
    };
    let after = 0;
    for (;;) {
      if (this.stopReason) break;
      const page = this.ledger.devices(after, PAGE);
      if (page.length === 0) break;
      after = page.at(-1)!.cursor;
      // No certificate goes to the target before its record is on disk.
      if (this.ledger.durable) await this.ledger.durable();
      // Without a CA, devices are registered on their own (multi-account registration).
      if (this.t.deviceRegistration !== "without-ca")
        for (const label of new Set(page.map((d) => d.caLabel))) await ready(label);
      if (this.stopReason) break;
      await this.pool(page, (d) => this.device(d, caReady.get(d.caLabel) ?? null));
    }
    // 3: revocations (at jitr targets, revoked certificates AWS never saw are registered REVOKED),
    // then CA status changes.
    if (!this.stopReason) await this.pool(this.ledger.revocations(), (r) => this.revoke(r));
    if (!this.stopReason && this.identity && !this.o.dryRun)
      await this.pool(this.ledger.detachDue(), (i) => this.identity!.detach(i));
    if (!this.stopReason && this.t.deviceRegistration === "jitr") {
      const items = this.ledger.revokedUnregistered();
      for (const label of new Set(items.map((i) => i.caLabel))) await ready(label);
      if (!this.stopReason)
        await this.pool(items, (i) => this.registerRevoked(i, caReady.get(i.caLabel) ?? null));
    }
    if (!this.stopReason) await this.caStatusChanges();
    if (this.stopReason) s.notes.push(this.stopReason);
    if (this.t.deviceRegistration === "jitr" && s.devices.leftToJitr > 0)
      s.notes.push(
        `${s.devices.leftToJitr} device certificate(s) are left to just-in-time registration: each device must present its CA certificate in its TLS chain on its first connection, and is registered PENDING_ACTIVATION then.`,
      );
    if (s.willFail > 0)
      s.notes.push(
        `${s.willFail} planned item(s) will be refused by AWS as things stand (marked "will fail" above).`,
      );
    s.requests = this.pacer.count;
    return s;
  }

  /** Dry run: whose credentials these are (STS GetCallerIdentity changes nothing). */
  private async checkIdentity(): Promise<void> {
    const answered = this.o.pacer ? null : await this.pacer.take();
    const r = await this.gw.identity();
    answered?.();
    if (r.ok) {
      this.summary.account = r.value.account;
      this.proven = true;
      return;
    }
    if (classifyFailure(r.failure) === "credentials") this.credentialsFailed(r.failure);
    else
      this.summary.notes.push(
        `The account could not be asked (STS GetCallerIdentity: ${r.failure.name}: ${r.failure.message}); the IoT calls below check the credentials instead.`,
      );
  }

  private emit(e: Omit<SyncItemEvent, "target">): void {
    this.o.onItem?.({ target: this.name, ...e });
  }

  /** Runs `work` over `items` with a few in flight. */
  private async pool<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    // Until AWS has answered once, one at a time: a refused key costs one request, not eight.
    while (!this.proven && next < items.length && !this.stopReason) await work(items[next++]!);
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
      if (this.stopReason && attempts === 1 && this.summary.credentialsRefused)
        return { r: { ok: false, failure: STOPPED }, attempts: 0 };
      const answered = this.o.pacer ? null : await this.pacer.take();
      let r: IotResult<T>;
      try {
        r = await fn();
      } finally {
        answered?.();
      }
      if (r.ok || classifyFailure(r.failure) !== "credentials") this.proven = true;
      if (r.ok || classifyFailure(r.failure) !== "retry" || attempts >= this.maxAttempts)
        return { r, attempts };
      await new Promise((res) => setTimeout(res, backoffMs(attempts, this.random())));
    }
  }

  private credentialsFailed(f: IotFailure): void {
    this.summary.credentialsRefused = true;
    if (this.stopReason) return;
    const w = this.gw.where;
    const whose = `${w.profile ? `profile ${w.profile}` : "the default credential chain"}, ${w.endpoint}`;
    this.stopReason = /AccessDenied/.test(f.name)
      ? `AWS refused target "${this.name}" (${whose}): the credentials' IAM policy does not allow the call (${f.name}: ${f.message}). Grant the iot: actions the sync needs to that identity, or use another profile; nothing more was sent to this target.`
      : `AWS refused the credentials for target "${this.name}" (${whose}; ${f.name}: ${f.message}). Check the AWS profile or the environment's credentials (key, secret, session); nothing more was sent to this target.`;
  }

  /** The status a CA should have at this target: ACTIVE when the target and the station both say so. */
  private desiredStatus(ca: SyncCa): "ACTIVE" | "INACTIVE" {
    return this.t.caActive && ca.active ? "ACTIVE" : "INACTIVE";
  }

  private async ensureCa(label: string): Promise<CaRegistration | null> {
    const ca = this.ledger.ca(label);
    if (!ca) {
      this.summary.cas.failed++;
      this.emit({ kind: "ca", ref: label, outcome: "failed", code: "CA_UNKNOWN" });
      return null;
    }
    const desired = this.desiredStatus(ca);
    const known = this.ledger.registration(label);
    if (known) return this.raiseStatus(label, known, desired);
    // Ask first: a CA AWS holds already needs no registration code and no token work.
    const id = certificateIdOf(ca.pem);
    const d = await this.attempt(() => this.gw.describeCaCertificate(id));
    if (d.r.ok) return this.adopt(label, ca, id, d.r.value, desired);
    if (classifyFailure(d.r.failure) === "credentials") {
      this.credentialsFailed(d.r.failure);
      return this.caFailed(label, d.r.failure, d.attempts);
    }
    if (d.r.failure.name !== "ResourceNotFoundException" && !this.o.dryRun)
      return this.caFailed(label, d.r.failure, d.attempts);
    if (this.o.dryRun) {
      this.plannedStatus.set(label, desired);
      this.emit({
        kind: "ca",
        ref: label,
        outcome: "planned",
        message: `register ${this.t.caMode}${desired === "ACTIVE" ? " ACTIVE" : " INACTIVE"}${autoRegistrationOf(this.t) ? " with auto-registration" : ""}${this.t.caMode === "DEFAULT" ? " (a registration code and a verification certificate signed in the token)" : ""}`,
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
        setAsActive: desired === "ACTIVE",
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
    if (!reg.r.ok) {
      const f = reg.r.failure;
      if (classifyFailure(f) === "exists" && f.resourceId) {
        // Registered meanwhile (another run): ours only if the certificate it describes is ours.
        const again = await this.attempt(() => this.gw.describeCaCertificate(f.resourceId!));
        if (again.r.ok) return this.adopt(label, ca, f.resourceId, again.r.value, desired);
      }
      return this.caFailed(label, this.explainCaRefusal(f), reg.attempts);
    }
    return this.record(label, reg.r.value, desired, false, reg.attempts);
  }

  /**
   * AWS does not document its answer to a DEFAULT registration of a CA that another account
   * of the region holds in DEFAULT mode; judged by its documented class and its message.
   */
  private explainCaRefusal(f: IotFailure): IotFailure {
    if (
      this.t.caMode === "DEFAULT" &&
      [
        "InvalidRequestException",
        "CertificateConflictException",
        "ResourceAlreadyExistsException",
      ].includes(f.name) &&
      /another account|already registered|conflict/i.test(f.message)
    )
      return {
        ...f,
        message: `${f.message}. Only one account per region can hold a CA in DEFAULT mode: if another account in ${this.t.region} holds it, give this target --ca-mode SNI_ONLY (any number of accounts), or delete it there first`,
      };
    return f;
  }

  /** A CA AWS holds already: recorded as ours once its certificate matches, with AWS's own status. */
  private async adopt(
    label: string,
    ca: SyncCa,
    id: string,
    d: { pem: string; status: string; mode: string; arn: string },
    desired: "ACTIVE" | "INACTIVE",
  ): Promise<CaRegistration | null> {
    if (pemOf(d.pem) !== pemOf(ca.pem))
      return this.caFailed(
        label,
        {
          name: "CertificateMismatch",
          message: `AWS holds another certificate under id ${id}`,
          httpStatus: null,
        },
        1,
      );
    if (d.mode && d.mode !== this.t.caMode)
      return this.caFailed(
        label,
        {
          name: "CertificateModeMismatch",
          message: `this account already holds the CA in ${d.mode} mode (${id}); a CA has one mode per account: delete it there (aws iot update-ca-certificate --certificate-id ${id} --new-status INACTIVE, then aws iot delete-ca-certificate --certificate-id ${id}) and sync again to register it in ${this.t.caMode} mode, or give the target --ca-mode ${d.mode}`,
          httpStatus: null,
        },
        1,
      );
    const remote = d.status === "ACTIVE" ? "ACTIVE" : "INACTIVE";
    if (this.o.dryRun) {
      this.emit({
        kind: "ca",
        ref: label,
        outcome: "planned",
        certificateId: id,
        message: `already at AWS (${remote}); recorded, nothing registered`,
      });
      return this.raiseStatus(
        label,
        {
          caLabel: label,
          target: this.name,
          awsCertificateId: id,
          awsArn: d.arn,
          mode: this.t.caMode,
          remoteStatus: remote,
          updatedAt: "",
        },
        desired,
      );
    }
    const r = this.record(label, { certificateId: id, certificateArn: d.arn }, remote, true, 0);
    return r ? this.raiseStatus(label, r, desired) : null;
  }

  private record(
    label: string,
    registered: IotRegistered,
    status: "ACTIVE" | "INACTIVE",
    already: boolean,
    attempts: number,
  ): CaRegistration {
    const r: CaRegistration = {
      caLabel: label,
      target: this.name,
      awsCertificateId: registered.certificateId,
      awsArn: registered.certificateArn,
      mode: this.t.caMode,
      remoteStatus: status,
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
      attempts,
    });
    return r;
  }

  /** A CA to be ACTIVE that AWS holds INACTIVE is activated before its devices are sent. */
  private async raiseStatus(
    label: string,
    reg: CaRegistration,
    desired: "ACTIVE" | "INACTIVE",
  ): Promise<CaRegistration> {
    if (this.o.dryRun) {
      this.plannedStatus.set(label, desired === "ACTIVE" ? "ACTIVE" : reg.remoteStatus);
      if (desired === "ACTIVE" && reg.remoteStatus !== "ACTIVE")
        this.emit({ kind: "ca-status", ref: label, outcome: "planned", message: "ACTIVE" });
      return reg;
    }
    if (desired !== "ACTIVE" || reg.remoteStatus === "ACTIVE") return reg;
    return (await this.changeStatus(label, reg, "ACTIVE")) ?? reg;
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
      const status = this.plannedStatus.get(d.caLabel);
      const willFail =
        this.t.deviceRegistration !== "without-ca" && status === "INACTIVE"
          ? `its CA "${d.caLabel}" will be INACTIVE at this target (${this.t.caActive ? "deactivated at the station" : "the target registers CAs INACTIVE"}): AWS refuses ${this.t.deviceRegistration === "jitr" ? "just-in-time registration" : "RegisterCertificate"} under an inactive CA (CertificateStateException)`
          : this.t.deviceRegistration !== "without-ca" && !status && !ca
            ? `its CA "${d.caLabel}" cannot be registered at this target`
            : undefined;
      if (willFail) this.summary.willFail++;
      this.emit({
        kind: "device",
        ref: d.serial,
        outcome: "planned",
        message:
          (this.t.deviceRegistration === "jitr"
            ? "left to just-in-time registration"
            : this.t.deviceRegistration === "with-ca"
              ? `RegisterCertificate with its CA, ${this.t.deviceStatus}`
              : `RegisterCertificateWithoutCA, ${this.t.deviceStatus}`) +
          (this.identity
            ? `; then ${this.identity.plan({ deviceId: d.deviceId, model: d.model ?? null, firmware: d.firmware ?? null })}`
            : ""),
        ...(willFail ? { willFail } : {}),
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
    // Not sent (the target stopped on its credentials): it stays queued, as it was.
    if (!r.ok && r.failure === STOPPED) return;
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
      return this.identityOf(d, r.value.certificateId, r.value.certificateArn);
    }
    const f = r.failure;
    const kind = classifyFailure(f);
    // A refusal of the caller says nothing about the device: it stays queued, unrecorded.
    if (kind === "credentials") return this.credentialsFailed(f);
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
        return this.identityOf(d, id, f.resourceArn ?? "");
      }
    }
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

  /** A certificate just registered: its Thing, policy and groups, when the target asks for them. */
  private async identityOf(d: DeviceItem, certificateId: string, arn: string): Promise<void> {
    if (!this.identity || this.stopReason) return;
    await this.identity.run({
      serial: d.serial,
      deviceId: d.deviceId,
      model: d.model ?? null,
      firmware: d.firmware ?? null,
      certificateId,
      certificateArn: arn,
      steps: [],
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
    if (!res.ok && res.failure === STOPPED) return;
    if (res.ok) {
      this.ledger.saveRevoked(r, attempts);
      this.summary.revoked++;
      this.emit({ kind: "revocation", ref: r.serial, outcome: "revoked", attempts });
      return;
    }
    const kind = classifyFailure(res.failure);
    if (kind === "credentials") this.credentialsFailed(res.failure);
    const retry = kind === "retry";
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

  /**
   * A jitr target never received this certificate: AWS would register it PENDING_ACTIVATION
   * at the device's first connection (and a JITP template could activate it). Registered
   * REVOKED with its CA, AWS refuses it instead.
   */
  private async registerRevoked(
    i: RevokedUnregisteredItem,
    ca: CaRegistration | null,
  ): Promise<void> {
    if (this.o.dryRun) {
      this.emit({
        kind: "revocation",
        ref: i.serial,
        outcome: "planned",
        message:
          "RegisterCertificate REVOKED (never registered here: AWS refuses it at its first connection)",
      });
      return;
    }
    if (!ca) {
      this.summary.devices.deferred++;
      this.emit({
        kind: "revocation",
        ref: i.serial,
        outcome: "deferred",
        message: "not sent: its CA is not registered at this target yet",
      });
      return;
    }
    const caPem = this.ledger.ca(i.caLabel)?.pem;
    const { r, attempts } = await this.attempt(() =>
      this.gw.registerCertificate({ pem: i.pem, ...(caPem ? { caPem } : {}), status: "REVOKED" }),
    );
    if (!r.ok && r.failure === STOPPED) return;
    let reg: { certificateId: string; arn: string } | null = r.ok
      ? { certificateId: r.value.certificateId, arn: r.value.certificateArn }
      : null;
    if (!r.ok && classifyFailure(r.failure) === "exists" && r.failure.resourceId) {
      // The device registered itself meanwhile: revoke what AWS holds.
      const id = r.failure.resourceId;
      const u = await this.attempt(() => this.gw.updateCertificate(id, "REVOKED"));
      if (u.r.ok) reg = { certificateId: id, arn: r.failure.resourceArn ?? "" };
    }
    if (reg) {
      this.ledger.saveRevokedRegistration(i, reg, attempts);
      this.summary.revoked++;
      this.emit({
        kind: "revocation",
        ref: i.serial,
        outcome: "revoked",
        certificateId: reg.certificateId,
        attempts,
      });
      return;
    }
    const f = r.ok ? STOPPED : r.failure;
    const kind = classifyFailure(f);
    if (kind === "credentials") this.credentialsFailed(f);
    if (kind !== "retry") this.summary.failedForGood++;
    else this.summary.devices.deferred++;
    this.emit({
      kind: "revocation",
      ref: i.serial,
      outcome: kind === "retry" ? "deferred" : "failed",
      code: f.name,
      message: f.message,
      attempts,
    });
  }

  private async caStatusChanges(): Promise<void> {
    for (const label of this.registeredLabels()) {
      const reg = this.ledger.registration(label)!;
      const ca = this.ledger.ca(label);
      if (!ca) continue;
      const desired = this.desiredStatus(ca);
      if (desired === reg.remoteStatus) continue;
      if (this.o.dryRun) {
        this.emit({ kind: "ca-status", ref: label, outcome: "planned", message: desired });
        continue;
      }
      await this.changeStatus(label, reg, desired);
      if (this.stopReason) return;
    }
  }

  /** UpdateCACertificate; the new status is recorded once AWS answered. */
  private async changeStatus(
    label: string,
    reg: CaRegistration,
    desired: "ACTIVE" | "INACTIVE",
  ): Promise<CaRegistration | null> {
    const { r, attempts } = await this.attempt(() =>
      this.gw.updateCaCertificate(reg.awsCertificateId, desired),
    );
    if (r.ok) {
      const next: CaRegistration = {
        ...reg,
        remoteStatus: desired,
        updatedAt: new Date().toISOString(),
      };
      this.ledger.saveRegistration(next);
      this.ledger.note({
        action: "sync.ca-status",
        subject: label,
        outcome: "ok",
        details: { target: this.name, certificateId: reg.awsCertificateId, status: desired },
      });
      this.summary.cas.statusChanges++;
      this.emit({ kind: "ca-status", ref: label, outcome: "updated", message: desired, attempts });
      return next;
    }
    const kind = classifyFailure(r.failure);
    if (kind === "credentials") this.credentialsFailed(r.failure);
    if (kind !== "retry") this.summary.failedForGood++;
    this.emit({
      kind: "ca-status",
      ref: label,
      outcome: kind === "retry" ? "deferred" : "failed",
      code: r.failure.name,
      message: r.failure.message,
      attempts,
    });
    return null;
  }

  private registeredLabels(): string[] {
    return this.knownLabels.filter((l) => this.ledger.registration(l) !== null);
  }

  /** Labels of every CA the ledger knows (set by the caller). */
  knownLabels: string[] = [];
}
