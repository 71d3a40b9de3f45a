/**
 * The issuance engine: a request comes in, and either a device certificate
 * goes out, durably recorded first, or a rejection is recorded with its
 * reason. The serial line, the kiosk, the CLI and the sync job all call this.
 *
 * The write-ahead rule: the certificate is returned only after its record
 * (and its event-log entry) is committed and on disk. Anything that
 * fails before that commit discards the signed bytes, which never left the
 * station.
 */
import {
  LinesignError,
  isLinesignError,
  isStationFault,
  outcomeOf,
  toLinesignError,
  type ErrorCode,
} from "../domain/errors.js";
import type { KeyType } from "../domain/keys.js";
import type { Profile } from "../domain/profile.js";
import { profileSha256 } from "./profiles.js";
import { checkWorkOrder, workOrderExhausted } from "../domain/work-order.js";
import type {
  CaRecord,
  IssuanceRecord,
  IssuanceState,
  ReissueApproval,
  Signer,
} from "../domain/ports.js";
import { act, type AppContext } from "./context.js";
import type { CaService } from "./ca.js";
import type { Checkpointer } from "./checkpoint.js";
import { GroupCommitter, isWithheld } from "./group-commit.js";
import { newSerialHex, sha256Hex } from "./pki/certificates.js";
import { fingerprintInput, verifyCsrSignatureOffThread } from "./pki/csr.js";
import { InlinePreparer, type Preparer } from "./pki/preparer.js";
import { assembleCertificate, IssuerEncodings } from "./pki/leaf.js";

export interface IssueRequest {
  /** The request as received: PEM or DER. */
  csr: Uint8Array;
  /** Profile name; default the station's default profile. */
  profile?: string;
  /** The device id the device announced (serial line) or the officer gave; must match the CSR's CN when both exist. */
  deviceId?: string | null;
  /** Where the certificate goes: `serial:/dev/ttyUSB0`, `file:/path/out.pem`, ... */
  origin: string;
  workOrder?: string | null;
  /** The key type the station asked the device for (serial line): a request for another is refused. */
  keyType?: KeyType;
  /** What the device reported when it identified on the line (its Thing's name and attributes). */
  device?: { model: string | null; firmware: string | null };
  /**
   * The caller hands a new certificate straight over (the serial line): asked inside the
   * issuance's own durable transaction, true records it DELIVERED there as well (its
   * `issuance.deliver` entry right after `issuance.issue`), so that no second commit stands
   * before the hand-over; false (the device went away meanwhile) leaves it ISSUED.
   */
  handOver?: () => boolean;
}

export interface Issued {
  issuance: IssuanceRecord;
  /** Issuer chain, nearest first, up to the root. */
  chainDer: Uint8Array[];
  /** True when the same request was answered before and its certificate is handed out again. */
  redelivery: boolean;
  /** True when the issuance's own commit recorded it DELIVERED (IssueRequest.handOver). */
  delivered: boolean;
}

/** Accumulated stage times in nanoseconds (for the bench). */
export interface StageTimings {
  parse: bigint;
  verify: bigint;
  policy: bigint;
  build: bigint;
  sign: bigint;
  commit: bigint;
  count: number;
}

export const newStageTimings = (): StageTimings => ({
  parse: 0n,
  verify: 0n,
  policy: 0n,
  build: 0n,
  sign: 0n,
  commit: 0n,
  count: 0,
});

/** Test seam: called after signing, before the record is committed. */
export interface IssuanceHooks {
  beforeCommit?: (certDer: Uint8Array) => void;
}

/** States from which the same request may be answered again with the same certificate. */
const REDELIVERABLE: readonly IssuanceState[] = [
  "ISSUED",
  "DELIVERED",
  "DELIVERY_FAILED",
  // The device stored it but never heard the station's DONE (a lost frame, a station restart).
  "CONFIRMED",
];

const now = (): bigint => process.hrtime.bigint();

export class IssuanceEngine {
  private readonly signers = new Map<string, Promise<Signer>>();
  /** The CAs' encodings, for wrapping each signature around its TBS in this thread. */
  private readonly issuers = new IssuerEncodings();
  /** Commits of issuances signed at the same time share one durable transaction. */
  readonly committer: GroupCommitter;
  /** Issuances started and not yet committed or refused. */
  private inFlight = 0;

  constructor(
    private readonly ctx: AppContext,
    /** The profiles now (they change while a long-running station runs). */
    private readonly profilesNow: () => Readonly<Record<string, Profile>>,
    private readonly defaultProfile: string,
    private readonly cas: CaService,
    private readonly checkpointer: Checkpointer,
    private readonly hooks: IssuanceHooks = {},
    private readonly preparer: Preparer = new InlinePreparer(),
  ) {
    this.committer = new GroupCommitter(ctx.store, {
      inFlight: () => this.inFlight,
      // No certificate leaves before the token's log head covers its record.
      afterCommit: () => checkpointer.advance(),
      health: ctx.health,
    });
  }

  /**
   * Runs the checks in order (parse, signature, key type, device id, subject,
   * requested extensions, key reuse, live certificate, CA state), signs in the
   * token, commits the record, and returns the certificate.
   * Every refusal throws a LinesignError whose code is the reason, after
   * recording the rejection.
   */
  async issue(req: IssueRequest, timings?: StageTimings): Promise<Issued> {
    this.inFlight++;
    try {
      return await this.issueCounted(req, timings);
    } finally {
      this.inFlight--;
    }
  }

  private async issueCounted(req: IssueRequest, timings?: StageTimings): Promise<Issued> {
    const wo = req.workOrder ? this.ctx.store.getWorkOrder(req.workOrder) : null;
    const profileName = req.profile ?? wo?.profile ?? this.defaultProfile;
    let csrSha256: string | null = null;
    let deviceId: string | null = req.deviceId ?? null;
    try {
      if (req.workOrder && !wo)
        throw new LinesignError("WORK_ORDER_UNKNOWN", `No work order has id ${req.workOrder}.`);
      if (wo && wo.profile !== profileName)
        throw new LinesignError(
          "USAGE",
          `Work order ${wo.id} is for profile "${wo.profile}", not "${profileName}".`,
        );
      const profile = this.profile(profileName);
      const caRecord = this.ctx.store.getCa(profile.ca);
      const nowDate = this.ctx.clock.now();
      const serial = newSerialHex();
      // The pure checks and the TBS, in a worker when the station has them.
      const result = await this.preparer.prepare({
        csr: req.csr,
        profile,
        deviceId,
        ca:
          caRecord?.certDer && caRecord.notAfter && caRecord.fingerprint
            ? {
                fingerprint: caRecord.fingerprint,
                certDer: caRecord.certDer,
                keyType: caRecord.keyType,
                notAfter: caRecord.notAfter,
              }
            : null,
        nowMs: nowDate.getTime(),
        serialHex: serial,
      });
      if (result.verify) {
        // The signature check comes before the policy checks, whatever thread ran them.
        const t0 = timings ? now() : 0n;
        try {
          await verifyCsrSignatureOffThread(result.verify);
        } catch (e) {
          csrSha256 = result.ok ? result.prepared.csrSha256 : result.failure.csrSha256;
          throw e;
        }
        if (timings) timings.verify += now() - t0;
      }
      if (!result.ok) {
        const f = result.failure;
        csrSha256 = f.csrSha256;
        deviceId = f.deviceId;
        throw new LinesignError(f.code, f.message, { details: f.details });
      }
      const prep = result.prepared;
      csrSha256 = prep.csrSha256;
      deviceId = prep.deviceId;
      if (req.keyType && prep.keyType !== req.keyType)
        throw new LinesignError(
          "KEY_TYPE_MISMATCH",
          `The station asked device ${deviceId} for a key of type ${req.keyType} and received a request for ${prep.keyType}. Its firmware does not make the key it is asked for: set it aside.`,
          { details: { asked: req.keyType, received: prep.keyType } },
        );
      if (timings) {
        timings.parse += BigInt(prep.timings.parse);
        timings.verify += BigInt(prep.timings.verify);
        timings.policy += BigInt(prep.timings.policy);
        timings.build += BigInt(prep.timings.build);
      }
      let t = timings ? now() : 0n;
      const prior = this.ctx.store.findIssuanceBySpki(prep.spkiSha256);
      if (prior) {
        return await this.redeliver(prior, prep.deviceId, profileName, req);
      }
      if (wo) {
        checkWorkOrder(wo, prep.deviceId, nowDate);
        if (
          !this.ctx.store.workOrderHasDevice(wo.id, prep.deviceId) &&
          this.ctx.store.countIssuedFor(wo.id) >= wo.quantity
        )
          throw workOrderExhausted(wo);
      }
      const live = this.ctx.store.liveIssuanceForDevice(prep.deviceId);
      this.checkLive(live, profile, prep.deviceId);
      const ca = this.issuingCa(profile, caRecord);
      // Nothing is signed outside a signing session an officer opened,
      this.ctx.signing.use();
      // nor while the station has a fault of its own (devices wait),
      this.ctx.health.assertHealthy();
      // nor against a database the token's log head does not bind.
      await this.checkpointer.ensureBound();
      const signer = await this.signer(ca);
      if (!prep.tbsDer || !caRecord?.fingerprint || !caRecord.certDer)
        throw new LinesignError(
          "CA_UNKNOWN",
          `The profile's CA "${profile.ca}" has no certificate.`,
        );
      if (timings) [timings.policy, t] = [timings.policy + now() - t, now()];
      const signature = await signer.sign(prep.tbsDer);
      if (timings) [timings.sign, t] = [timings.sign + now() - t, now()];
      // The TBS was built against the profile's CA record read above.
      const der = assembleCertificate(
        this.issuers.of({
          fingerprint: caRecord.fingerprint,
          certDer: caRecord.certDer,
          keyType: caRecord.keyType,
        }),
        prep.tbsDer,
        signature,
      );
      if (timings) [timings.build, t] = [timings.build + now() - t, now()];
      const fingerprint = sha256Hex(der);
      this.hooks.beforeCommit?.(der);
      const stamp = nowDate.toISOString();
      const record: Omit<IssuanceRecord, "id"> = {
        serial,
        deviceId: prep.deviceId,
        spkiSha256: prep.spkiSha256,
        keyType: prep.keyType,
        profile: profileName,
        caLabel: ca.label,
        certDer: der,
        fingerprint,
        notBefore: prep.notBefore,
        notAfter: prep.notAfter,
        validityCut: prep.validityCut,
        state: "ISSUED",
        stateReason: null,
        supersedes: null,
        operator: this.ctx.actor,
        station: this.ctx.stationId,
        origin: req.origin,
        workOrder: req.workOrder ?? null,
        csrSha256: prep.csrSha256,
        deviceModel: req.device?.model ?? null,
        deviceFirmware: req.device?.firmware ?? null,
        createdAt: stamp,
        updatedAt: stamp,
      };
      // Set once a commit recorded the hand-over (a commit tried again decides again).
      let handedOver: number | null = null;
      const id = await this.committer
        .commit(() => {
          handedOver = null;
          record.state = "ISSUED";
          // Re-checked inside the transaction: another port may have committed meanwhile.
          const racedKey = this.ctx.store.findIssuanceBySpki(record.spkiSha256);
          if (racedKey) throw this.keyReused(racedKey);
          // Ports finishing at the same moment must not overrun the work order.
          if (
            wo &&
            !this.ctx.store.workOrderHasDevice(wo.id, record.deviceId) &&
            this.ctx.store.countIssuedFor(wo.id) >= wo.quantity
          )
            throw workOrderExhausted(wo);
          const racedLive = this.ctx.store.liveIssuanceForDevice(record.deviceId);
          const approval = this.checkLive(racedLive, profile, record.deviceId);
          if (racedLive) {
            this.ctx.store.setIssuanceState(
              racedLive.id,
              "SUPERSEDED",
              `superseded by serial ${serial}`,
            );
            record.supersedes = racedLive.id;
          }
          const newId = this.ctx.store.insertIssuance(record);
          if (approval) this.ctx.store.useReissueApproval(approval.id, newId, stamp);
          this.ctx.store.appendEvent({
            actor: this.ctx.actor,
            action: "issuance.issue",
            subject: record.deviceId,
            outcome: "ok",
            details: {
              issuance: newId,
              serial,
              fingerprint,
              spkiSha256: record.spkiSha256,
              keyType: record.keyType,
              profile: profileName,
              profileSha256: profileSha256(profile),
              ca: ca.label,
              origin: req.origin,
              workOrder: record.workOrder,
              notAfter: record.notAfter,
              validityCut: record.validityCut,
              supersedes: record.supersedes,
              ...(approval ? { reissueApproval: approval.id } : {}),
            },
          });
          // Handed straight over: the delivery is recorded in the same durable transaction, as
          // markDelivered records it, the device checked now (one gone stays ISSUED).
          if (req.handOver?.()) {
            this.writeTransition(newId, "issuance.deliver", ["ISSUED"], "DELIVERED", null);
            record.state = "DELIVERED";
            handedOver = newId;
          }
          return newId;
        })
        .catch(async (e: unknown) => {
          // Committed, but the log head could not cover it: the certificate is withheld, so a
          // delivery recorded with it is taken back (ISSUED, as an issuance withheld always is).
          if (handedOver !== null && isWithheld(e)) await this.withdrawDelivery(handedOver);
          throw e;
        });
      if (timings) {
        timings.commit += now() - t;
        timings.count++;
      }
      await this.signedCheckpoint();
      return {
        issuance: { ...record, id },
        chainDer: [ca.certDer!, ...ca.chainDer],
        redelivery: false,
        delivered: handedOver !== null,
      };
    } catch (e) {
      const err = toLinesignError(e);
      if (isWithheld(err)) {
        // Recorded ISSUED, never handed over: not a rejection. The same request
        // later gets this certificate; until the head moves, nothing is signed.
        this.ctx.health.report("log-head", err, () => this.checkpointer.advance());
        this.ctx.logger.error({ err: err.cause, code: err.code }, err.message);
        throw err;
      }
      if (isStationFault(err.code)) this.reportFault(err);
      this.recordRejection(err, req, profileName, deviceId, csrSha256);
      throw err;
    }
  }

  /**
   * The signed checkpoint at each mark. The token's head already covers the
   * record, so the certificate still goes; a failure stops further signing
   * until a checkpoint can be made again.
   */
  private async signedCheckpoint(): Promise<void> {
    try {
      await this.checkpointer.maybe();
    } catch (e) {
      const err = toLinesignError(e);
      this.ctx.logger.error({ err: e, code: err.code }, "the signed checkpoint failed");
      this.ctx.health.report(
        "checkpoint",
        new LinesignError(
          err.code === "INTERNAL" ? "AUDIT_HEAD_WRITE_FAILED" : err.code,
          `The log's signed checkpoint could not be made: ${err.message}`,
        ),
        () => this.checkpointer.maybe(),
      );
    }
  }

  /** A fault of the station's storage: reported so the line waits until it has gone. */
  private reportFault(err: LinesignError): void {
    const source = err.code.startsWith("AUDIT_HEAD") ? "log-head" : "database";
    this.ctx.health.report(
      source,
      err,
      source === "database"
        ? async () => this.ctx.store.probe()
        : () => this.checkpointer.ensureBound(),
    );
  }

  /** Stops the worker threads, if any. */
  async close(): Promise<void> {
    await this.preparer.close();
  }

  /** ISSUED (or DELIVERY_FAILED, on a retry) -> DELIVERED. */
  async markDelivered(id: number): Promise<IssuanceRecord> {
    const rec = this.mustGet(id);
    // Handing a confirmed certificate to its own device again changes nothing.
    if (rec.state === "CONFIRMED") return rec;
    return act(this.ctx, "issuance.deliver", String(id), async () => {
      try {
        await this.committer.commit(() =>
          this.writeTransition(
            id,
            "issuance.deliver",
            ["ISSUED", "DELIVERY_FAILED", "DELIVERED"],
            "DELIVERED",
            null,
          ),
        );
      } catch (e) {
        // Recorded, but the log head could not cover it: the certificate is withheld (it does not
        // go), so the delivery is taken back, and the station waits for the head as after an
        // issuance withheld.
        if (isWithheld(e)) {
          if (rec.state !== "DELIVERED")
            await this.withdrawDelivery(
              id,
              undefined,
              rec.state === "DELIVERY_FAILED" ? "DELIVERY_FAILED" : "ISSUED",
            );
          this.ctx.health.report("log-head", e as LinesignError, () => this.checkpointer.advance());
        }
        throw e;
      }
      return this.mustGet(id);
    });
  }

  /**
   * The device reported the SHA-256 of the certificate it stored: CONFIRMED
   * when it matches, else CONFIRMATION_MISMATCH (and the issuance is DELIVERY_FAILED).
   */
  async confirm(id: number, storedSha256Hex: string): Promise<IssuanceRecord> {
    const rec = this.mustGet(id);
    if (rec.state === "CONFIRMED" && storedSha256Hex.toLowerCase() === rec.fingerprint) return rec;
    if (storedSha256Hex.toLowerCase() !== rec.fingerprint) {
      await this.transition(
        id,
        "issuance.delivery-failed",
        ["ISSUED", "DELIVERED"],
        "DELIVERY_FAILED",
        "the device stored something else",
      );
      const err = new LinesignError(
        "CONFIRMATION_MISMATCH",
        `The device stored a certificate whose SHA-256 is ${storedSha256Hex.slice(0, 16)}..., not the one issued (${rec.fingerprint.slice(0, 16)}...). The transfer was corrupted: provision the device again.`,
        { details: { issuance: id, expected: rec.fingerprint, got: storedSha256Hex } },
      );
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "issuance.confirm",
        subject: rec.deviceId,
        outcome: "refused",
        code: err.code,
        message: err.message,
        details: err.details,
      });
      throw err;
    }
    return this.transition(id, "issuance.confirm", ["ISSUED", "DELIVERED"], "CONFIRMED", null);
  }

  /** ISSUED or DELIVERED -> DELIVERY_FAILED, with the reason. */
  async markDeliveryFailed(id: number, reason: string): Promise<IssuanceRecord> {
    return this.transition(
      id,
      "issuance.delivery-failed",
      ["ISSUED", "DELIVERED"],
      "DELIVERY_FAILED",
      reason,
    );
  }

  /** Names of the configured profiles. */
  profileNames(): string[] {
    return Object.keys(this.profilesNow());
  }

  private async transition(
    id: number,
    action: string,
    from: IssuanceState[],
    to: IssuanceState,
    reason: string | null,
  ): Promise<IssuanceRecord> {
    return act(this.ctx, action, String(id), async () => {
      // Shares a durable transaction with whatever other ports commit at the same moment.
      await this.committer.commit(() => this.writeTransition(id, action, from, to, reason));
      return this.mustGet(id);
    });
  }

  /** The state change and its log entry, inside the caller's transaction. */
  private writeTransition(
    id: number,
    action: string,
    from: IssuanceState[],
    to: IssuanceState,
    reason: string | null,
  ): void {
    const rec = this.mustGet(id);
    if (!from.includes(rec.state)) {
      throw new LinesignError(
        "ISSUANCE_STATE",
        `Issuance ${id} (${rec.deviceId}) is ${rec.state}; it cannot become ${to}.`,
      );
    }
    this.ctx.store.setIssuanceState(id, to, reason);
    this.ctx.store.appendEvent({
      actor: this.ctx.actor,
      action,
      subject: rec.deviceId,
      outcome: "ok",
      details: { issuance: id, serial: rec.serial, from: rec.state, to, reason },
    });
  }

  /**
   * DELIVERED -> `to` (ISSUED unless said) for a certificate recorded as handed over that never
   * left: withheld after its issuance's commit (the log head could not be moved), or its device
   * went away before CERTIFICATE went out. So it is neither uploaded nor listed as delivered.
   * Durable even while the head still cannot move; a failure is logged, never thrown.
   */
  async withdrawDelivery(
    id: number,
    reason = "withheld: the log head could not be moved, so the certificate was not handed over",
    to: "ISSUED" | "DELIVERY_FAILED" = "ISSUED",
  ): Promise<void> {
    try {
      await this.committer.commit(() =>
        this.writeTransition(id, "issuance.withhold", ["DELIVERED"], to, reason),
      );
    } catch (e) {
      if (isWithheld(e)) return; // recorded; the head is still stuck, which is already said
      this.ctx.logger.error(
        { err: e, issuance: id },
        "a certificate that was not handed over could not be recorded so: it is listed DELIVERED",
      );
    }
  }

  private mustGet(id: number): IssuanceRecord {
    const rec = this.ctx.store.getIssuance(id);
    if (!rec) throw new LinesignError("ISSUANCE_UNKNOWN", `No issuance has id ${id}.`);
    return rec;
  }

  private profile(name: string): Profile {
    const profiles = this.profilesNow();
    const p = profiles[name];
    if (p) return p;
    const known = Object.keys(profiles);
    throw new LinesignError(
      "PROFILE_UNKNOWN",
      `No profile is named "${name}". ${known.length ? `Profiles: ${known.join(", ")}.` : 'The station has no profiles: add one under "profiles" in station.json.'}`,
    );
  }

  /**
   * A device with a live certificate gets another only when its profile
   * allows re-issue or an officer approved one re-issue for it.
   * @returns the approval that lets it through, if one is needed
   */
  private checkLive(
    live: IssuanceRecord | null,
    profile: Profile,
    deviceId: string,
  ): ReissueApproval | null {
    if (!live || profile.allowReissue) return null;
    const approval = this.ctx.store.openReissueApproval(deviceId);
    if (approval) return approval;
    throw new LinesignError(
      "DEVICE_ALREADY_ISSUED",
      `Device "${deviceId}" already has a live certificate (serial ${live.serial}, ${live.state}). This profile does not allow re-issue: ` +
        `an officer must approve one ("linesign reissue approve --device-id ${deviceId} --reason ...") or revoke it first.`,
      { details: { serial: live.serial } },
    );
  }

  private keyReused(prior: IssuanceRecord): LinesignError {
    return new LinesignError(
      "KEY_REUSED",
      `This public key was already certified (device "${prior.deviceId}", serial ${prior.serial}). A repeated key means a broken random number generator or a cloned device: set the device aside.`,
      { details: { priorDevice: prior.deviceId, priorSerial: prior.serial } },
    );
  }

  /** The same device sending the same request again (e.g. after a dropped transfer) gets the same certificate. */
  private async redeliver(
    prior: IssuanceRecord,
    deviceId: string,
    profileName: string,
    req: IssueRequest,
  ): Promise<Issued> {
    if (
      prior.deviceId !== deviceId ||
      !REDELIVERABLE.includes(prior.state) ||
      prior.profile !== profileName
    ) {
      throw this.keyReused(prior);
    }
    const ca = this.ctx.store.getCa(prior.caLabel)!;
    this.ctx.store.appendEvent({
      actor: this.ctx.actor,
      action: "issuance.redeliver",
      subject: deviceId,
      outcome: "ok",
      details: { issuance: prior.id, serial: prior.serial, state: prior.state, origin: req.origin },
    });
    return {
      issuance: prior,
      chainDer: [ca.certDer!, ...ca.chainDer],
      redelivery: true,
      delivered: false,
    };
  }

  private issuingCa(profile: Profile, ca: CaRecord | null): CaRecord {
    if (!ca || !ca.certDer || !ca.notAfter || !ca.notBefore) {
      throw new LinesignError(
        "CA_UNKNOWN",
        `The profile's CA "${profile.ca}" does not exist or has no certificate yet.`,
      );
    }
    if (ca.kind === "root")
      throw new LinesignError(
        "CA_NOT_FOR_DEVICES",
        `CA "${ca.label}" is a root: roots never sign device certificates. An officer moves the profile to an intermediate made for devices ("linesign ca rotate --profile NAME --to CA").`,
      );
    if (ca.retiredAt) this.cas.refuseKeyMissing(ca);
    if (ca.status !== "active" || ca.retiredAt) {
      throw new LinesignError(
        "CA_INACTIVE",
        `CA "${ca.label}" is ${ca.retiredAt ? "retired (it no longer signs here)" : ca.status}. An officer must activate it, or move the profile to another CA ("linesign ca rotate"), before devices can be issued under it.`,
      );
    }
    const t = this.ctx.clock.now();
    if (t >= new Date(ca.notAfter) || t < new Date(ca.notBefore)) {
      throw new LinesignError(
        "CA_EXPIRED",
        `CA "${ca.label}" is outside its validity (${ca.notBefore} to ${ca.notAfter}).`,
      );
    }
    return ca;
  }

  private signer(ca: CaRecord): Promise<Signer> {
    let p = this.signers.get(ca.label);
    if (!p) {
      p = this.cas.signerFor(ca);
      p.catch(() => this.signers.delete(ca.label));
      this.signers.set(ca.label, p);
    }
    return p;
  }

  private recordRejection(
    err: LinesignError,
    req: IssueRequest,
    profile: string,
    deviceId: string | null,
    knownCsrSha256: string | null,
  ): void {
    const csrSha256 = knownCsrSha256 ?? fingerprintInput(req.csr);
    const stamp = this.ctx.clock.now().toISOString();
    const write = (): void => {
      this.ctx.store.transaction(() => {
        this.ctx.store.insertRejection({
          reason: err.code,
          message: err.message,
          deviceId,
          csrSha256,
          profile,
          operator: this.ctx.actor,
          station: this.ctx.stationId,
          origin: req.origin,
          workOrder: req.workOrder ?? null,
          createdAt: stamp,
        });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "issuance.reject",
          subject: deviceId,
          outcome: outcomeOf(err.code as ErrorCode),
          code: err.code,
          message: err.message,
          details: { csrSha256, profile, origin: req.origin, ...err.details },
        });
      });
    };
    try {
      write();
    } catch (logErr) {
      if (isLinesignError(logErr, "DB_LOCKED")) {
        // Another process holds the lock: recorded as soon as it goes, without blocking.
        void this.committer
          .commit(write)
          .catch((e: unknown) =>
            this.ctx.logger.error({ err: e, code: err.code }, "could not record a rejection"),
          );
      } else {
        this.ctx.logger.error({ err: logErr, code: err.code }, "could not record a rejection");
      }
    }
    this.ctx.logger.warn(
      { code: err.code, deviceId, origin: req.origin, err: err.cause },
      err.message,
    );
  }
}
