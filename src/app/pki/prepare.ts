/**
 * The pure first half of an issuance: parse the request, check its signature
 * and everything the profile decides without the database (key type, device
 * id, subject, requested extensions), work out subject, SANs and validity,
 * and build the to-be-signed certificate. The same code runs in the station's
 * thread or in a worker (see preparer.ts); only data crosses between them.
 * The station's thread wraps the signature around the TBS it gets back
 * (leaf.ts assembleCertificate), so a job crosses once each way.
 */
import { toLinesignError, type ErrorCode } from "../../domain/errors.js";
import {
  buildSubject,
  checkKeyAllowed,
  checkRequestedExtensions,
  checkSubject,
  deviceKeyName,
  resolveDeviceId,
} from "../../domain/csr-policy.js";
import type { KeyType } from "../../domain/keys.js";
import { expandTemplate, type Profile } from "../../domain/profile.js";
import {
  fingerprintInput,
  parseCsr,
  signedRequest,
  verifyCsrSignature,
  type SignedRequest,
} from "./csr.js";
import { buildTbs, IssuerEncodings } from "./leaf.js";

export interface PrepareInput {
  csr: Uint8Array;
  profile: Profile;
  deviceId: string | null;
  /**
   * The profile's CA, when it has a certificate; without it nothing is built
   * (the engine refuses later, in order). `certDer` may be left out once this
   * context has seen the CA (the worker pool sends it once per thread).
   */
  ca: { fingerprint: string; certDer?: Uint8Array; keyType: KeyType; notAfter: string } | null;
  nowMs: number;
  serialHex: string;
  /**
   * Leave the signature check to the caller (the pool balances work between
   * threads this way). Policy refusals are then held back so the caller can
   * report a bad signature first, keeping the order of checks.
   */
  callerVerifies?: boolean;
}

/** Nanoseconds spent in each step. */
export interface PrepareTimings {
  parse: number;
  verify: number;
  policy: number;
  build: number;
}

export interface Prepared {
  csrSha256: string;
  spkiSha256: string;
  keyType: string;
  deviceId: string;
  notBefore: string;
  notAfter: string;
  validityCut: boolean;
  /** The TBS to sign; null when there was no CA certificate to build against. */
  tbsDer: Uint8Array | null;
  timings: PrepareTimings;
}

/** A refusal, as data (it may cross a thread boundary). */
export interface PrepareFailure {
  code: ErrorCode;
  message: string;
  details: Record<string, unknown>;
  csrSha256: string;
  deviceId: string | null;
}

/** `verify` is present when the caller must check the signature before acting on the result. */
export type PrepareResult =
  | { ok: true; prepared: Prepared; verify?: SignedRequest }
  | { ok: false; failure: PrepareFailure; verify?: SignedRequest };

const now = (): bigint => process.hrtime.bigint();

/** Keeps what is reused between requests in one thread: the CAs' encodings. */
export class PrepareContext {
  private readonly issuers = new IssuerEncodings();

  /** Runs the pure steps; a refusal comes back as data, never thrown. */
  prepare(input: PrepareInput): PrepareResult {
    let csrSha256 = "";
    let deviceId: string | null = input.deviceId;
    let verify: SignedRequest | undefined;
    // Keep the CA whenever it is sent, even if this request fails early: the pool sends it once.
    if (input.ca?.certDer) this.issuers.of(input.ca);
    try {
      let t = now();
      const timings: PrepareTimings = { parse: 0, verify: 0, policy: 0, build: 0 };
      const csr = parseCsr(input.csr);
      csrSha256 = csr.sha256;
      timings.parse = Number(now() - t);
      t = now();
      if (input.callerVerifies) verify = signedRequest(csr);
      else verifyCsrSignature(signedRequest(csr));
      timings.verify = Number(now() - t);
      t = now();
      const profile = input.profile;
      checkKeyAllowed(profile, csr.key);
      deviceId = resolveDeviceId(profile, csr, input.deviceId);
      const copied = checkSubject(profile, csr);
      checkRequestedExtensions(profile, csr);
      // Whole seconds: certificates carry no fractions, and the record must say what the certificate says.
      const nowSec = Math.floor(input.nowMs / 1000) * 1000;
      const notBefore = new Date(nowSec - profile.backdateMinutes * 60_000);
      const wanted = new Date(nowSec + profile.validityDays * 86_400_000);
      const caNotAfter = input.ca ? new Date(input.ca.notAfter) : wanted;
      const validityCut = wanted > caNotAfter;
      const notAfter = validityCut ? caNotAfter : wanted;
      timings.policy = Number(now() - t);
      t = now();
      let tbsDer: Uint8Array | null = null;
      if (input.ca) {
        const issuer = this.issuers.of(input.ca);
        const id = deviceId;
        tbsDer = buildTbs(issuer, {
          serialHex: input.serialHex,
          subject: buildSubject(profile, id, copied),
          spki: csr.spki,
          publicKeyBits: csr.publicKeyBits,
          rsaKey: csr.key.kind === "rsa",
          notBefore,
          notAfter,
          sans: profile.san.map((s) => ({ type: s.type, value: expandTemplate(s.template, id) })),
        });
      }
      timings.build = Number(now() - t);
      return {
        ok: true,
        ...(verify ? { verify } : {}),
        prepared: {
          csrSha256,
          spkiSha256: csr.spkiSha256,
          keyType: deviceKeyName(csr.key),
          deviceId,
          notBefore: notBefore.toISOString(),
          notAfter: notAfter.toISOString(),
          validityCut,
          tbsDer,
          timings,
        },
      };
    } catch (e) {
      const err = toLinesignError(e);
      return {
        ok: false,
        ...(verify ? { verify } : {}),
        failure: {
          code: err.code,
          message: err.message,
          details: err.details,
          csrSha256: csrSha256 || fingerprintInput(input.csr),
          deviceId,
        },
      };
    }
  }
}
