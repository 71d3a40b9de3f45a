/**
 * The issuance engine: a request comes in, and either a device certificate
 * goes out, durably recorded first, or a rejection is recorded with its
 * reason. The serial line, the kiosk, the CLI and the sync job all call this.
 *
 * The write-ahead rule: the certificate is returned only after its record
 * (and its event-log entry) is committed with synchronous=FULL. Anything that
 * fails before that commit discards the signed bytes, which never left the
 * station.
 */
import { LinesignError, outcomeOf, toLinesignError, type ErrorCode } from "../domain/errors.js";
import {
  buildSubject,
  checkKeyAllowed,
  checkRequestedExtensions,
  checkSubject,
  deviceKeyName,
  resolveDeviceId,
} from "../domain/csr-policy.js";
import { expandTemplate, type Profile } from "../domain/profile.js";
import type { CaRecord, IssuanceRecord, IssuanceState } from "../domain/ports.js";
import { act, type AppContext } from "./context.js";
import type { CaService } from "./ca.js";
import type { Checkpointer } from "./checkpoint.js";
import { newSerialHex, sha256Hex } from "./pki/certificates.js";
import { fingerprintInput, parseCsr, verifyCsrSignature, type ParsedCsr } from "./pki/csr.js";
import { buildLeaf, issuerParts, type IssuerParts, type LeafTimings } from "./pki/leaf.js";

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
}

export interface Issued {
  issuance: IssuanceRecord;
  /** Issuer chain, nearest first, up to the root. */
  chainDer: Uint8Array[];
  /** True when the same request was answered before and its certificate is handed out again. */
  redelivery: boolean;
}

/** Accumulated stage times in nanoseconds (for the bench). */
export interface StageTimings extends LeafTimings {
  parse: bigint;
  verify: bigint;
  policy: bigint;
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
const REDELIVERABLE: readonly IssuanceState[] = ["ISSUED", "DELIVERED", "DELIVERY_FAILED"];

const now = (): bigint => process.hrtime.bigint();

export class IssuanceEngine {
  private readonly issuers = new Map<string, Promise<IssuerParts>>();

  constructor(
    private readonly ctx: AppContext,
    private readonly profiles: Readonly<Record<string, Profile>>,
    private readonly defaultProfile: string,
    private readonly cas: CaService,
    private readonly checkpointer: Checkpointer,
    private readonly hooks: IssuanceHooks = {},
  ) {}

  /**
   * Runs the checks in order (parse, signature, key type, device id, subject,
   * requested extensions, key reuse, live certificate, CA state), signs in the
   * token, commits the record, and returns the certificate.
   * Every refusal throws a LinesignError whose code is the reason, after
   * recording the rejection.
   */
  async issue(req: IssueRequest, timings?: StageTimings): Promise<Issued> {
    const profileName = req.profile ?? this.defaultProfile;
    let csr: ParsedCsr | null = null;
    let deviceId: string | null = req.deviceId ?? null;
    try {
      const profile = this.profile(profileName);
      let t = timings ? now() : 0n;
      csr = parseCsr(req.csr);
      if (timings) [timings.parse, t] = [timings.parse + now() - t, now()];
      verifyCsrSignature(csr);
      if (timings) [timings.verify, t] = [timings.verify + now() - t, now()];
      checkKeyAllowed(profile, csr.key);
      deviceId = resolveDeviceId(profile, csr, req.deviceId);
      const copied = checkSubject(profile, csr);
      checkRequestedExtensions(profile, csr);
      const prior = this.ctx.store.findIssuanceBySpki(csr.spkiSha256);
      if (prior) return await this.redeliver(prior, deviceId, profileName, req);
      const live = this.ctx.store.liveIssuanceForDevice(deviceId);
      this.checkLive(live, profile, deviceId);
      const ca = this.issuingCa(profile);
      const issuer = await this.issuer(ca);
      if (timings) [timings.policy, t] = [timings.policy + now() - t, now()];

      const nowDate = this.ctx.clock.now();
      const notBefore = new Date(nowDate.getTime() - profile.backdateMinutes * 60_000);
      const wanted = new Date(nowDate.getTime() + profile.validityDays * 86_400_000);
      const caNotAfter = new Date(ca.notAfter!);
      const validityCut = wanted > caNotAfter;
      const notAfter = validityCut ? caNotAfter : wanted;
      const serial = newSerialHex();
      const der = await buildLeaf(
        issuer,
        {
          serialHex: serial,
          subject: buildSubject(profile, deviceId, copied),
          spki: csr.spki,
          rsaKey: csr.key.kind === "rsa",
          notBefore,
          notAfter,
          sans: profile.san.map((s) => ({
            type: s.type,
            value: expandTemplate(s.template, deviceId!),
          })),
        },
        timings,
      );
      if (timings) t = now();
      const fingerprint = sha256Hex(der);
      this.hooks.beforeCommit?.(der);
      const stamp = nowDate.toISOString();
      const record: Omit<IssuanceRecord, "id"> = {
        serial,
        deviceId,
        spkiSha256: csr.spkiSha256,
        keyType: deviceKeyName(csr.key),
        profile: profileName,
        caLabel: ca.label,
        certDer: der,
        fingerprint,
        notBefore: notBefore.toISOString(),
        notAfter: notAfter.toISOString(),
        validityCut,
        state: "ISSUED",
        stateReason: null,
        supersedes: null,
        operator: this.ctx.actor,
        station: this.ctx.stationId,
        origin: req.origin,
        workOrder: req.workOrder ?? null,
        csrSha256: csr.sha256,
        createdAt: stamp,
        updatedAt: stamp,
      };
      const parsed = csr;
      const id = this.ctx.store.transaction(() => {
        // Re-checked inside the transaction: another port may have committed meanwhile.
        const racedKey = this.ctx.store.findIssuanceBySpki(parsed.spkiSha256);
        if (racedKey) throw this.keyReused(racedKey);
        const racedLive = this.ctx.store.liveIssuanceForDevice(record.deviceId);
        this.checkLive(racedLive, profile, record.deviceId);
        if (racedLive) {
          this.ctx.store.setIssuanceState(
            racedLive.id,
            "SUPERSEDED",
            `superseded by serial ${serial}`,
          );
          record.supersedes = racedLive.id;
        }
        const newId = this.ctx.store.insertIssuance(record);
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
            ca: ca.label,
            origin: req.origin,
            workOrder: record.workOrder,
            notAfter: record.notAfter,
            validityCut,
            supersedes: record.supersedes,
          },
        });
        return newId;
      });
      if (timings) {
        timings.commit += now() - t;
        timings.count++;
      }
      await this.checkpointer.maybe();
      return {
        issuance: { ...record, id },
        chainDer: [ca.certDer!, ...ca.chainDer],
        redelivery: false,
      };
    } catch (e) {
      const err = toLinesignError(e);
      this.recordRejection(err, req, profileName, deviceId, csr);
      throw err;
    }
  }

  /** ISSUED (or DELIVERY_FAILED, on a retry) -> DELIVERED. */
  async markDelivered(id: number): Promise<IssuanceRecord> {
    return this.transition(
      id,
      "issuance.deliver",
      ["ISSUED", "DELIVERY_FAILED", "DELIVERED"],
      "DELIVERED",
      null,
    );
  }

  /**
   * The device reported the SHA-256 of the certificate it stored: CONFIRMED
   * when it matches, else CONFIRMATION_MISMATCH (and the issuance is DELIVERY_FAILED).
   */
  async confirm(id: number, storedSha256Hex: string): Promise<IssuanceRecord> {
    const rec = this.mustGet(id);
    if (storedSha256Hex.toLowerCase() !== rec.fingerprint) {
      await this.transition(
        id,
        "issuance.confirm",
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
    return Object.keys(this.profiles);
  }

  private async transition(
    id: number,
    action: string,
    from: IssuanceState[],
    to: IssuanceState,
    reason: string | null,
  ): Promise<IssuanceRecord> {
    return act(this.ctx, action, String(id), async () => {
      const rec = this.mustGet(id);
      if (!from.includes(rec.state)) {
        throw new LinesignError(
          "ISSUANCE_STATE",
          `Issuance ${id} (${rec.deviceId}) is ${rec.state}; it cannot become ${to}.`,
        );
      }
      this.ctx.store.transaction(() => {
        this.ctx.store.setIssuanceState(id, to, reason);
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action,
          subject: rec.deviceId,
          outcome: "ok",
          details: { issuance: id, serial: rec.serial, from: rec.state, to, reason },
        });
      });
      return this.mustGet(id);
    });
  }

  private mustGet(id: number): IssuanceRecord {
    const rec = this.ctx.store.getIssuance(id);
    if (!rec) throw new LinesignError("ISSUANCE_UNKNOWN", `No issuance has id ${id}.`);
    return rec;
  }

  private profile(name: string): Profile {
    const p = this.profiles[name];
    if (p) return p;
    const known = Object.keys(this.profiles);
    throw new LinesignError(
      "PROFILE_UNKNOWN",
      `No profile is named "${name}". ${known.length ? `Profiles: ${known.join(", ")}.` : 'The station has no profiles: add one under "profiles" in station.json.'}`,
    );
  }

  private checkLive(live: IssuanceRecord | null, profile: Profile, deviceId: string): void {
    if (live && !profile.allowReissue) {
      throw new LinesignError(
        "DEVICE_ALREADY_ISSUED",
        `Device "${deviceId}" already has a live certificate (serial ${live.serial}, ${live.state}). This profile does not allow re-issue: an officer must revoke it first, or use a profile that allows re-issue.`,
        { details: { serial: live.serial } },
      );
    }
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
    return { issuance: prior, chainDer: [ca.certDer!, ...ca.chainDer], redelivery: true };
  }

  private issuingCa(profile: Profile): CaRecord {
    const ca = this.ctx.store.getCa(profile.ca);
    if (!ca || !ca.certDer || !ca.notAfter || !ca.notBefore) {
      throw new LinesignError(
        "CA_UNKNOWN",
        `The profile's CA "${profile.ca}" does not exist or has no certificate yet.`,
      );
    }
    if (ca.status !== "active") {
      throw new LinesignError(
        "CA_INACTIVE",
        `CA "${ca.label}" is ${ca.status}. An officer must activate it before devices can be issued under it.`,
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

  private issuer(ca: CaRecord): Promise<IssuerParts> {
    let p = this.issuers.get(ca.label);
    if (!p) {
      p = this.cas.signerFor(ca).then((signer) => issuerParts(ca.certDer!, signer));
      p.catch(() => this.issuers.delete(ca.label));
      this.issuers.set(ca.label, p);
    }
    return p;
  }

  private recordRejection(
    err: LinesignError,
    req: IssueRequest,
    profile: string,
    deviceId: string | null,
    csr: ParsedCsr | null,
  ): void {
    const csrSha256 = csr?.sha256 ?? fingerprintInput(req.csr);
    const stamp = this.ctx.clock.now().toISOString();
    try {
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
    } catch (logErr) {
      this.ctx.logger.error({ err: logErr, code: err.code }, "could not record a rejection");
    }
    this.ctx.logger.warn(
      { code: err.code, deviceId, origin: req.origin, err: err.cause },
      err.message,
    );
  }
}
