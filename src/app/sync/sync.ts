/**
 * `linesign target ...` and `linesign sync`: targets kept in the station
 * database, and the station's ledger over its queue (issuances not yet
 * registered at a target), its CAs and its token.
 */
import { LinesignError } from "../../domain/errors.js";
import type { CaRegistration, IotGatewayFactory, IssuanceState } from "../../domain/ports.js";
import { parseTargetConfig, type TargetConfig } from "../../domain/target.js";
import { act, recordChange, type AppContext } from "../context.js";
import type { CaService } from "../ca.js";
import {
  TargetSync,
  type DeviceItem,
  type RevocationItem,
  type RevokedUnregisteredItem,
  type SyncItemEvent,
  type SyncLedger,
  type TargetSummary,
} from "./target-sync.js";
import { TargetPacer } from "./pacer.js";
import type { DetachItem, IdentityItem, IdentityStepState } from "./device-identity.js";
import { pemOfDer } from "../pki/certificates.js";

/** Issuance states whose certificates are uploaded: those that left the station. */
export const UPLOADABLE: IssuanceState[] = ["CONFIRMED", "DELIVERED"];

export interface TargetView extends TargetConfig {
  name: string;
  createdAt: string;
  queue: { pending: number; uploaded: number; leftToJitr: number; failed: number; revoked: number };
  cas: CaRegistration[];
}

export interface SyncRunResult {
  dryRun: boolean;
  targets: TargetSummary[];
  failedForGood: number;
  deferred: number;
  /** Dry run: planned items AWS will refuse, and targets whose credentials it refused. */
  willFail: number;
}

/** The station's ledger for one target. */
class StationLedger implements SyncLedger {
  constructor(
    private readonly ctx: AppContext,
    private readonly cas: CaService,
    private readonly target: string,
  ) {}

  ca(label: string) {
    const c = this.ctx.store.getCa(label);
    if (!c?.certDer) return null;
    return { label, pem: pemOfDer(c.certDer), active: c.status === "active" };
  }
  registration(caLabel: string) {
    return this.ctx.store.caRegistration(caLabel, this.target);
  }
  saveRegistration(r: CaRegistration): void {
    this.ctx.store.putCaRegistration(r);
  }
  durable(): Promise<void> {
    return this.ctx.store.durable();
  }
  verification(caLabel: string, code: string): Promise<string> {
    return this.cas.verificationCertificate(caLabel, code);
  }
  devices(after: number, limit: number): DeviceItem[] {
    return this.ctx.store.uploadQueue(this.target, UPLOADABLE, after, limit).map((i) => ({
      cursor: i.id,
      serial: i.serial,
      deviceId: i.deviceId,
      caLabel: i.caLabel,
      pem: pemOfDer(i.certDer),
      model: i.deviceModel ?? null,
      firmware: i.deviceFirmware ?? null,
    }));
  }
  private steps(issuanceId: number): IdentityStepState[] {
    return this.ctx.store
      .identitySteps(this.target, issuanceId)
      .filter((s) => s.step !== "complete")
      .map((s) => ({
        step: s.step as IdentityStepState["step"],
        name: s.name,
        state: s.state,
        arn: s.arn,
      }));
  }
  identityDue(after: number, limit: number): (IdentityItem & { cursor: number })[] {
    return this.ctx.store.identityDue(this.target, after, limit).map(({ issuance, upload }) => ({
      cursor: issuance.id,
      serial: issuance.serial,
      deviceId: issuance.deviceId,
      model: issuance.deviceModel ?? null,
      firmware: issuance.deviceFirmware ?? null,
      certificateId: upload.awsCertificateId ?? "",
      certificateArn: upload.awsArn ?? "",
      steps: this.steps(issuance.id),
    }));
  }
  detachDue(): DetachItem[] {
    return this.ctx.store.detachDue(this.target).map(({ issuance, upload }) => ({
      serial: issuance.serial,
      deviceId: issuance.deviceId,
      certificateArn: upload.awsArn ?? "",
      steps: this.steps(issuance.id),
    }));
  }
  saveStep(item: { serial: string }, s: Parameters<SyncLedger["saveStep"]>[1]): void {
    const i = this.ctx.store.getIssuanceBySerial(item.serial)!;
    this.ctx.store.putIdentityStep({
      issuanceId: i.id,
      target: this.target,
      step: s.step,
      name: s.name,
      state: s.state,
      arn: s.arn,
      attempts: s.attempts,
      lastError: s.error,
      updatedAt: new Date().toISOString(),
    });
  }
  targetPolicy(name: string) {
    return this.ctx.store.targetPolicy(this.target, name);
  }
  saveTargetPolicy(name: string, arn: string, created: boolean): void {
    this.ctx.store.putTargetPolicy(this.target, name, arn, created, new Date().toISOString());
  }
  saveDevice(item: DeviceItem, o: Parameters<SyncLedger["saveDevice"]>[1]): void {
    const prior = this.ctx.store.uploads(this.target, item.cursor)[0];
    // Without waiting for the disk at each device (one sync each held the requests' loop):
    // the run's closing entry makes them durable. One lost to a power cut is asked of AWS
    // again at the next run, which answers that it holds it.
    this.ctx.store.commitDeferred(() =>
      this.ctx.store.recordUpload({
        issuanceId: item.cursor,
        target: this.target,
        state: o.state,
        awsCertificateId: o.state === "done" ? o.certificateId : null,
        awsArn: o.state === "done" ? o.arn : null,
        attempts: (prior?.attempts ?? 0) + o.attempts,
        lastError: o.state === "failed" ? `${o.code}: ${o.message}` : null,
        updatedAt: new Date().toISOString(),
      }),
    );
  }
  revocations(): RevocationItem[] {
    return this.ctx.store.revocationsDue(this.target).map(({ issuance, upload }) => ({
      serial: issuance.serial,
      deviceId: issuance.deviceId,
      awsCertificateId: upload.awsCertificateId!,
    }));
  }
  saveRevoked(item: RevocationItem, attempts: number): void {
    const i = this.ctx.store.getIssuanceBySerial(item.serial)!;
    const prior = this.ctx.store.uploads(this.target, i.id)[0]!;
    this.ctx.store.recordUpload({
      ...prior,
      state: "revoked",
      attempts: prior.attempts + attempts,
      updatedAt: new Date().toISOString(),
    });
  }
  revokedUnregistered(): RevokedUnregisteredItem[] {
    return this.ctx.store
      .queryIssuances({ status: "REVOKED" })
      .filter((i) => {
        const u = this.ctx.store.uploads(this.target, i.id)[0];
        return !u || (u.state !== "done" && u.state !== "revoked");
      })
      .map((i) => ({
        serial: i.serial,
        deviceId: i.deviceId,
        caLabel: i.caLabel,
        pem: pemOfDer(i.certDer),
      }));
  }
  saveRevokedRegistration(
    item: RevokedUnregisteredItem,
    reg: { certificateId: string; arn: string },
    attempts: number,
  ): void {
    const i = this.ctx.store.getIssuanceBySerial(item.serial)!;
    const prior = this.ctx.store.uploads(this.target, i.id)[0];
    this.ctx.store.recordUpload({
      issuanceId: i.id,
      target: this.target,
      state: "revoked",
      awsCertificateId: reg.certificateId,
      awsArn: reg.arn,
      attempts: (prior?.attempts ?? 0) + attempts,
      lastError: null,
      updatedAt: new Date().toISOString(),
    });
  }
  note(e: Parameters<SyncLedger["note"]>[0]): void {
    this.ctx.store.appendEvent({ actor: this.ctx.actor, ...e });
  }
}

export class SyncService {
  constructor(
    private readonly ctx: AppContext,
    private readonly cas: CaService,
    private readonly gateway: IotGatewayFactory,
  ) {}

  addTarget(name: string, raw: Record<string, unknown>): Promise<TargetView> {
    return act(this.ctx, "target.add", name, async () => {
      const config = parseTargetConfig(raw, name);
      recordChange(this.ctx, { action: "target.add", subject: name, details: { ...config } }, () =>
        this.ctx.store.insertTarget({
          name,
          config: JSON.stringify(config),
          createdAt: this.ctx.clock.now().toISOString(),
        }),
      );
      return this.view(name);
    });
  }

  removeTarget(name: string): Promise<void> {
    return act(this.ctx, "target.remove", name, async () => {
      this.config(name);
      recordChange(this.ctx, { action: "target.remove", subject: name, details: {} }, () =>
        this.ctx.store.deleteTarget(name),
      );
    });
  }

  listTargets(): TargetView[] {
    return this.ctx.store.listTargets().map((t) => this.view(t.name));
  }

  config(name: string): TargetConfig {
    const t = this.ctx.store.getTarget(name);
    if (!t) {
      const known = this.ctx.store.listTargets().map((x) => x.name);
      throw new LinesignError(
        "TARGET_UNKNOWN",
        `No target is named "${name}". ${known.length ? `Targets: ${known.join(", ")}.` : 'Add one with "linesign target add".'}`,
      );
    }
    return parseTargetConfig(JSON.parse(t.config), name);
  }

  view(name: string): TargetView {
    const config = this.config(name);
    const rows = this.ctx.store.uploads(name);
    const count = (s: string) => rows.filter((r) => r.state === s).length;
    let pending = 0;
    for (let after = 0; ;) {
      const page = this.ctx.store.uploadQueue(name, UPLOADABLE, after, 5000);
      if (page.length === 0) break;
      pending += page.length;
      after = page.at(-1)!.id;
    }
    return {
      name,
      createdAt: this.ctx.store.getTarget(name)!.createdAt,
      ...config,
      queue: {
        pending,
        uploaded: count("done"),
        leftToJitr: count("left-to-jitr"),
        failed: count("failed"),
        revoked: count("revoked"),
      },
      cas: this.ctx.store.caRegistrations(name),
    };
  }

  /** Registers the queue at the named targets (default: all), recording the run in the event log. */
  async sync(
    opts: { targets?: string[]; dryRun?: boolean; onItem?: (e: SyncItemEvent) => void } = {},
  ): Promise<SyncRunResult> {
    const names = opts.targets?.length
      ? opts.targets
      : this.ctx.store.listTargets().map((t) => t.name);
    if (names.length === 0)
      throw new LinesignError("TARGET_UNKNOWN", 'No targets: add one with "linesign target add".');
    const configs = names.map((n) => [n, this.config(n)] as const);
    const result: SyncRunResult = {
      dryRun: Boolean(opts.dryRun),
      targets: [],
      failedForGood: 0,
      deferred: 0,
      willFail: 0,
    };
    for (const [name, config] of configs) {
      const ledger = new StationLedger(this.ctx, this.cas, name);
      const pacer = new TargetPacer(config.maxRps);
      const gw = await this.gateway({ ...config, pace: (op) => pacer.take(op) });
      const run = new TargetSync(name, config, gw, ledger, {
        pacer,
        ...(opts.dryRun ? { dryRun: true } : {}),
        ...(opts.onItem ? { onItem: opts.onItem } : {}),
        concurrency: Math.min(16, Math.max(1, Math.ceil(config.maxRps / 20))),
      });
      run.knownLabels = this.ctx.store.listCas().map((c) => c.label);
      let summary: Awaited<ReturnType<TargetSync["run"]>>;
      try {
        summary = await run.run();
      } finally {
        await this.ctx.store.durable();
      }
      result.targets.push(summary);
      result.failedForGood += summary.failedForGood;
      result.deferred += summary.devices.deferred;
      result.willFail += summary.willFail + (summary.credentialsRefused ? 1 : 0);
      if (!opts.dryRun)
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "sync.run",
          subject: name,
          outcome: summary.failedForGood > 0 || summary.credentialsRefused ? "refused" : "ok",
          details: { ...summary },
        });
    }
    return result;
  }
}
