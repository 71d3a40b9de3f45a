/**
 * Revocation and CRLs. Revoking records why and who, marks the issuance
 * REVOKED (which queues UpdateCertificate REVOKED at every target where it
 * was registered), and the next CRL of its CA lists it. CRLs are RFC 5280 v2,
 * signed by the CA key where it lives, with reason codes, the CA's key
 * identifier and a CRL number that only grows.
 */
import { x509 } from "./pki/x509.js";
import { buildCrl } from "./pki/crl.js";
import { LinesignError } from "../domain/errors.js";
import type { IssuanceRecord } from "../domain/ports.js";
import { REVOCATION_REASONS, type RevocationReason } from "../domain/revocation.js";
import type { Profile } from "../domain/profile.js";
import { act, type AppContext } from "./context.js";
import type { CaService } from "./ca.js";
import { pemOfDer } from "./pki/certificates.js";

const DAY_MS = 86_400_000;

export interface RevokeResult {
  revoked: { serial: string; deviceId: string; ca: string }[];
}

export interface CrlResult {
  ca: string;
  number: number;
  thisUpdate: string;
  nextUpdate: string;
  entries: number;
  pem: string;
}

export class RevocationService {
  constructor(
    private readonly ctx: AppContext,
    private readonly cas: CaService,
  ) {}

  /** Revokes one certificate by serial, or every live certificate of a device. */
  revoke(
    target: { serial?: string; deviceId?: string },
    reason: RevocationReason,
  ): Promise<RevokeResult> {
    const subject = target.serial ?? target.deviceId ?? null;
    return act(this.ctx, "issuance.revoke", subject, async () => {
      let victims: IssuanceRecord[];
      if (target.serial) {
        const i = this.ctx.store.getIssuanceBySerial(target.serial.toLowerCase());
        if (!i)
          throw new LinesignError(
            "ISSUANCE_UNKNOWN",
            `No certificate has serial ${target.serial}.`,
          );
        if (i.state === "REVOKED")
          throw new LinesignError(
            "ISSUANCE_STATE",
            `Certificate ${i.serial} (${i.deviceId}) is revoked already.`,
          );
        victims = [i];
      } else if (target.deviceId) {
        victims = this.ctx.store
          .queryIssuances({ deviceId: target.deviceId })
          .filter((i) => i.state !== "REVOKED" && i.state !== "DELIVERY_FAILED");
        if (victims.length === 0)
          throw new LinesignError(
            "ISSUANCE_UNKNOWN",
            `Device "${target.deviceId}" has no certificate that could be revoked.`,
          );
      } else
        throw new LinesignError("USAGE", "Name the certificate: --serial S or --device-id ID.");
      this.record(victims, reason, {});
      return {
        revoked: victims.map((i) => ({ serial: i.serial, deviceId: i.deviceId, ca: i.caLabel })),
      };
    });
  }

  /**
   * Revokes, under each profile that sets `revokeUnconfirmedAfterHours`, every
   * certificate of it that left (or may have left) the station and was not
   * confirmed within that grace period (ISSUED, DELIVERED, DELIVERY_FAILED).
   * Reason "unspecified"; each entry says it was automatic and under which rule.
   * @throws LinesignError DB_ERROR
   */
  revokeUnconfirmed(profiles: Readonly<Record<string, Profile>>): RevokeResult {
    const now = this.ctx.clock.now().getTime();
    const victims: { i: IssuanceRecord; hours: number }[] = [];
    for (const [name, p] of Object.entries(profiles)) {
      const hours = p.revokeUnconfirmedAfterHours;
      if (hours === undefined) continue;
      const until = new Date(now - hours * 3_600_000).toISOString();
      for (const status of ["ISSUED", "DELIVERED", "DELIVERY_FAILED"])
        for (const i of this.ctx.store.queryIssuances({ until, status }))
          if (i.profile === name) victims.push({ i, hours });
    }
    for (const v of victims)
      this.record([v.i], "unspecified", {
        automatic: true,
        rule: `profile "${v.i.profile}": not confirmed within ${v.hours} h`,
      });
    return {
      revoked: victims.map(({ i }) => ({ serial: i.serial, deviceId: i.deviceId, ca: i.caLabel })),
    };
  }

  /** Marks each REVOKED, queues it for the targets, and logs it: all in one transaction. */
  private record(
    victims: IssuanceRecord[],
    reason: RevocationReason,
    extra: Record<string, unknown>,
  ): void {
    const at = this.ctx.clock.now().toISOString();
    this.ctx.store.transaction(() => {
      for (const i of victims) {
        this.ctx.store.setIssuanceState(i.id, "REVOKED", reason);
        this.ctx.store.insertRevocation({
          issuanceId: i.id,
          reason,
          revokedAt: at,
          actor: this.ctx.actor,
        });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "issuance.revoke",
          subject: i.deviceId,
          outcome: "ok",
          details: {
            issuance: i.id,
            serial: i.serial,
            ca: i.caLabel,
            reason,
            previousState: i.state,
            ...extra,
          },
        });
      }
    });
  }

  /** Each CA's CRL in the making: one at a time per CA within this process. */
  private readonly crlTurns = new Map<string, Promise<unknown>>();

  /**
   * Signs the CA's next CRL in the token (every certificate it issued that is revoked). Two
   * asked at once (the kiosk and a second screen) are made one after the other, each with its
   * own number; another process that stores a CRL of that CA meanwhile makes this one take the
   * next number, so no number is ever used for two CRLs.
   */
  crl(caLabel: string, days = 7): Promise<CrlResult> {
    const turn = (this.crlTurns.get(caLabel) ?? Promise.resolve()).then(
      () => this.nextCrl(caLabel, days),
      () => this.nextCrl(caLabel, days),
    );
    this.crlTurns.set(
      caLabel,
      turn.catch(() => undefined),
    );
    return turn;
  }

  private nextCrl(caLabel: string, days: number): Promise<CrlResult> {
    return act(this.ctx, "ca.crl", caLabel, async () => {
      if (!Number.isInteger(days) || days < 1 || days > 366)
        throw new LinesignError("USAGE", "--days must be a whole number from 1 to 366.");
      const ca = this.cas.get(caLabel);
      if (!ca.certDer)
        throw new LinesignError("CA_NO_CERTIFICATE", `CA "${caLabel}" has no certificate yet.`);
      const caCert = new x509.X509Certificate(ca.certDer);
      const now = this.ctx.clock.now();
      const signer = await this.cas.signerFor(ca);
      const nextUpdate = new Date(now.getTime() + days * DAY_MS);
      for (let attempt = 1; ; attempt++) {
        const number = (this.ctx.store.lastCrl(caLabel)?.number ?? 0) + 1;
        const revoked = this.ctx.store.revokedUnder(caLabel);
        const der = await buildCrl({
          issuer: caCert,
          signer,
          thisUpdate: now,
          nextUpdate,
          number,
          entries: revoked.map(({ issuance, revocation }) => ({
            serialHex: issuance.serial,
            revokedAt: new Date(revocation.revokedAt),
            reason: REVOCATION_REASONS[revocation.reason as RevocationReason] ?? 0,
          })),
        });
        const stored = this.ctx.store.transaction(() => {
          // Another process stored this number while the token signed: sign the next one.
          if ((this.ctx.store.lastCrl(caLabel)?.number ?? 0) >= number) return false;
          this.ctx.store.insertCrl({
            caLabel,
            number,
            thisUpdate: now.toISOString(),
            nextUpdate: nextUpdate.toISOString(),
            entries: revoked.length,
            der,
          });
          this.ctx.store.appendEvent({
            actor: this.ctx.actor,
            action: "ca.crl",
            subject: caLabel,
            outcome: "ok",
            details: { number, entries: revoked.length, nextUpdate: nextUpdate.toISOString() },
          });
          return true;
        });
        if (stored)
          return {
            ca: caLabel,
            number,
            thisUpdate: now.toISOString(),
            nextUpdate: nextUpdate.toISOString(),
            entries: revoked.length,
            pem: pemOfDer(der, "X509 CRL"),
          };
        if (attempt >= 3)
          throw new LinesignError(
            "DB_LOCKED",
            `Another process kept storing CRLs of CA "${caLabel}" while this one was signed. Try again when it has finished.`,
            { details: { ca: caLabel } },
          );
      }
    });
  }
}
