/**
 * CA custody: creating CA keys in the token, certifying them (self-signed, by
 * an offline root through a request, or by another CA the station knows),
 * activating and deactivating, exporting, and proving ownership to AWS IoT.
 * Every act, done or refused, is in the event log.
 */
import { LinesignError } from "../domain/errors.js";
import type { KeyType } from "../domain/keys.js";
import type { CaKind, CaRecord, CaStatus, KeyInfo, KeyStore, Signer } from "../domain/ports.js";
import { parseRegistrationCode } from "../domain/registration-code.js";
import { formatPkcs11Uri, parsePkcs11Uri } from "../domain/pkcs11-uri.js";
import type { Profile } from "../domain/profile.js";
import { act, type AppContext } from "./context.js";
import { deviceCaProblem } from "./profiles.js";
import {
  checkCaSuitable,
  checkChain,
  checkIssuerValid,
  createCaCertificate,
  createCaRequest,
  createVerificationCertificate,
  isCaCertificate,
  parseSubject,
  readCertificate,
  readCertificates,
  sha256Hex,
} from "./pki/certificates.js";
import { x509 } from "./pki/x509.js";

const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** Default validity: roots ten years, intermediates five. */
export const DEFAULT_ROOT_DAYS = 3650;
export const DEFAULT_INTERMEDIATE_DAYS = 1825;

export type CaSigning =
  { mode: "self-signed" } | { mode: "csr" } | { mode: "root"; rootLabel: string };

export interface CreateCaInput {
  label: string;
  /** The key type to generate; with `keyUri`, the type the adopted key must have (optional). */
  keyType?: KeyType;
  /**
   * Adopt a key made with the HSM vendor's tool instead of generating one:
   * its `pkcs11:` URI. Its attributes are read back and a key that could
   * leave the token, decrypt, unwrap or derive is refused.
   */
  keyUri?: string;
  subject: string;
  signing: CaSigning;
  days?: number;
  /** Token to generate the key in; default the station's token. */
  tokenLabel?: string;
  /**
   * Reuse a key of this label already in the token (left by an interrupted
   * run) instead of refusing. Only development provisioning sets it.
   */
  reuseKey?: boolean;
}

export interface CreateCaResult {
  ca: CaRecord;
  /** PEM request for the offline root, with `--csr-out`. */
  csrPem?: string;
}

/** A CA as shown to people and scripts. */
export interface CaView {
  label: string;
  kind: CaKind;
  /** A root (or a self-signed certificate): it signs CAs only, never devices. */
  root: boolean;
  status: CaStatus;
  keyType: KeyType;
  keyUri: string;
  development: boolean;
  subject: string;
  issuer: string | null;
  notBefore: string | null;
  notAfter: string | null;
  fingerprint: string | null;
  /** When it stopped signing here (still ACTIVE at AWS IoT); null when it signs. */
  retiredAt: string | null;
  /** Its key is not in the station's token (the token was replaced): it signs nothing here. */
  keyMissing: boolean;
}

/** The action recording that a CA's key is not in the replaced token. */
export const KEY_MISSING_ACTION = "ca.key-missing";

export function viewCa(ca: CaRecord, keyMissing = false): CaView {
  const cert = ca.certDer ? new x509.X509Certificate(ca.certDer) : null;
  return {
    label: ca.label,
    kind: ca.kind,
    root: ca.kind === "root" || (cert !== null && cert.subject === cert.issuer),
    status: ca.status,
    keyType: ca.keyType,
    keyUri: ca.keyUri,
    development: ca.development,
    subject: ca.subject,
    issuer: cert ? cert.issuer : null,
    notBefore: ca.notBefore,
    notAfter: ca.notAfter,
    fingerprint: ca.fingerprint,
    retiredAt: ca.retiredAt ?? null,
    keyMissing,
  };
}

export class CaService {
  /**
   * @param profiles the profiles as station.json has them now (read when a CA
   *   is about to stop signing); none by default.
   */
  constructor(
    private readonly ctx: AppContext,
    private readonly profiles: () => Readonly<Record<string, Profile>> = () => ({}),
  ) {}

  /**
   * Generates the CA key in the token, then certifies it as `signing` says.
   * Validates everything before the key is made, so refused input changes nothing.
   * Default days: 3650 self-signed, 1825 otherwise (cut at the issuer's notAfter).
   * @throws LinesignError CA_LABEL_EXISTS, SUBJECT_INVALID, CA_UNKNOWN, CA_INACTIVE, CA_NO_CERTIFICATE, HSM_*
   */
  async create(input: CreateCaInput): Promise<CreateCaResult> {
    return act(this.ctx, "ca.create", input.label, async () => {
      this.checkNewLabel(input.label);
      parseSubject(input.subject);
      const days =
        input.days ??
        (input.signing.mode === "self-signed" ? DEFAULT_ROOT_DAYS : DEFAULT_INTERMEDIATE_DAYS);
      if (!Number.isInteger(days) || days < 1 || days > 36500) {
        throw new LinesignError(
          "USAGE",
          `--days must be a whole number of days from 1 to 36500, not ${days}.`,
        );
      }
      const issuer =
        input.signing.mode === "root" ? await this.issuerFor(input.signing.rootLabel) : null;
      const tokenLabel = input.tokenLabel ?? this.ctx.tokenLabel;
      if (!input.keyType && !input.keyUri)
        throw new LinesignError(
          "USAGE",
          "Give the CA's key type (--key), or a key to adopt (--key-uri).",
        );
      const existing = input.keyUri
        ? await this.ctx.keys().adoptKey(input.keyUri)
        : input.reuseKey
          ? await this.ctx
              .keys()
              .findKey(formatPkcs11Uri({ token: tokenLabel, object: input.label, id: "" }))
          : null;
      if (existing && input.keyType && existing.keyType !== input.keyType) {
        throw new LinesignError(
          input.keyUri ? "KEY_TYPE_UNSUPPORTED" : "CA_LABEL_EXISTS",
          `Token "${tokenLabel}" holds a ${existing.keyType} key ${input.keyUri ?? `labelled "${input.label}"`}, not ${input.keyType}.`,
        );
      }
      const key =
        existing ??
        (await this.ctx.keys().generateKeyPair(tokenLabel, input.label, input.keyType!));
      try {
        return await this.certifyNewKey(input, key, issuer, days);
      } catch (e) {
        // What this step made must not stay behind: a retry would find the label taken.
        if (!existing) {
          try {
            await this.ctx.keys().destroyKey(key.uri);
          } catch (cleanup) {
            this.ctx.logger.error(
              { err: cleanup, keyUri: key.uri },
              "the key of a failed ca create could not be removed",
            );
          }
        }
        throw e;
      }
    });
  }

  private async certifyNewKey(
    input: CreateCaInput,
    key: KeyInfo,
    issuer: Awaited<ReturnType<CaService["issuerFor"]>> | null,
    days: number,
  ): Promise<CreateCaResult> {
    const base = {
      label: input.label,
      keyType: key.keyType,
      keyUri: key.uri,
      development: false,
      subject: input.subject,
      createdAt: this.ctx.clock.now().toISOString(),
    };
    let ca: CaRecord;
    let csrPem: string | undefined;
    if (input.signing.mode === "csr") {
      const csr = await createCaRequest(input.subject, await this.ctx.keys().signer(key.uri));
      csrPem = csr.toString("pem");
      ca = {
        ...base,
        kind: "intermediate",
        status: "pending",
        certDer: null,
        chainDer: [],
        parentLabel: null,
        notBefore: null,
        notAfter: null,
        fingerprint: null,
      };
    } else {
      const selfSigner =
        input.signing.mode === "self-signed" ? await this.ctx.keys().signer(key.uri) : null;
      const cert = await createCaCertificate({
        subject: input.subject,
        spki: key.spki,
        issuer: issuer
          ? { signer: issuer.signer, certificate: issuer.certificate }
          : { signer: selfSigner!, certificate: null },
        days,
        pathLength: issuer ? 0 : undefined,
        now: this.ctx.clock.now(),
      });
      ca = {
        ...base,
        kind: issuer ? "intermediate" : "root",
        status: "active",
        ...(await this.certFields(cert)),
        chainDer: issuer ? [issuer.record.certDer!, ...issuer.record.chainDer] : [],
        parentLabel: issuer ? issuer.record.label : null,
      };
    }
    this.ctx.store.transaction(() => {
      this.ctx.store.insertCa(ca);
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "ca.create",
        subject: ca.label,
        outcome: "ok",
        details: {
          keyUri: ca.keyUri,
          keyType: ca.keyType,
          subject: ca.subject,
          mode: input.signing.mode,
          parent: ca.parentLabel,
          fingerprint: ca.fingerprint,
          status: ca.status,
          ...(input.keyUri ? { adopted: true } : {}),
          ...(key.custody ? { custody: key.custody } : {}),
        },
      });
    });
    return csrPem === undefined ? { ca } : { ca, csrPem };
  }

  /**
   * Installs the certificate an offline root signed for a pending CA.
   * `chain` (PEM bundle, nearest issuer first) may be omitted when the issuer
   * is a CA the station knows.
   * @throws LinesignError CA_UNKNOWN, CA_STATE, CA_CERT_UNREADABLE, CA_CERT_KEY_MISMATCH, CA_CERT_NOT_CA, CA_CERT_UNSUITABLE, CA_CHAIN_INVALID
   */
  async import(label: string, certBytes: Uint8Array, chainBytes?: Uint8Array): Promise<CaRecord> {
    return act(this.ctx, "ca.import", label, async () => {
      const ca = this.mustGet(label);
      if (ca.status !== "pending") {
        throw new LinesignError(
          "CA_STATE",
          `CA "${label}" already has its certificate; only a CA created with --csr-out can import one.`,
        );
      }
      const cert = readCertificate(certBytes, "The certificate file");
      const key = await this.ctx.keys().findKey(ca.keyUri);
      if (!key)
        throw new LinesignError(
          "HSM_KEY_NOT_FOUND",
          `The key of CA "${label}" is no longer in the token.`,
        );
      if (Buffer.compare(Buffer.from(cert.publicKey.rawData), Buffer.from(key.spki)) !== 0) {
        throw new LinesignError(
          "CA_CERT_KEY_MISMATCH",
          `The certificate's public key is not the key of CA "${label}" in the token. ` +
            `Check that the root signed the request made by "linesign ca create --label ${label} --csr-out".`,
        );
      }
      if (!isCaCertificate(cert)) {
        throw new LinesignError(
          "CA_CERT_NOT_CA",
          `The certificate for "${label}" lacks basicConstraints CA:TRUE: it cannot sign devices. Ask the root's officer to sign it as a CA.`,
        );
      }
      let chain = chainBytes ? readCertificates(chainBytes, "The chain file") : [];
      if (!chainBytes) {
        const parent = this.ctx.store
          .listCas()
          .find((c) => c.certDer && new x509.X509Certificate(c.certDer).subject === cert.issuer);
        if (parent?.certDer)
          chain = [
            new x509.X509Certificate(parent.certDer),
            ...parent.chainDer.map((d) => new x509.X509Certificate(d)),
          ];
      }
      if (chain.length === 0 && cert.issuer !== cert.subject) {
        throw new LinesignError(
          "CA_CHAIN_INVALID",
          `The certificate was issued by "${cert.issuer}", which the station does not know: give its chain with --chain.`,
        );
      }
      await checkChain(cert, chain);
      // A chain that does not verify is named first; then what the certificate itself lacks.
      checkCaSuitable(cert, `The certificate for "${label}"`);
      // The CAs above it must be able to sign CAs too.
      chain.forEach((c, i) =>
        checkCaSuitable(c, `Chain certificate ${i + 1} ("${c.subject}")`, { chain: true }),
      );
      const fields = await this.certFields(cert);
      const chainDer = chain.map((c) => new Uint8Array(c.rawData));
      this.ctx.store.transaction(() => {
        this.ctx.store.updateCa(label, { ...fields, chainDer, status: "active" });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "ca.import",
          subject: label,
          outcome: "ok",
          details: {
            fingerprint: fields.fingerprint,
            issuer: cert.issuer,
            chainLength: chainDer.length,
          },
        });
      });
      return this.mustGet(label);
    });
  }

  list(): CaRecord[] {
    return this.ctx.store.listCas();
  }

  /** Every CA as lists show it, with whether its key is missing from the token. */
  views(): CaView[] {
    const missing = this.keysMissing();
    return this.list().map((c) => viewCa(c, missing.has(c.label)));
  }

  /** Labels of the CAs whose keys a rollover found missing from the replaced token. */
  keysMissing(): Set<string> {
    return new Set(
      this.ctx.store
        .queryEvents({ action: KEY_MISSING_ACTION, outcome: "ok" })
        .map((e) => e.subject ?? ""),
    );
  }

  /**
   * After a token replacement: every CA whose key should be in the station's
   * token and is not stops signing here (retired: it stays ACTIVE at AWS IoT
   * for the devices it signed), recorded as `ca.key-missing`.
   * @returns the labels found missing now
   */
  async markMissingKeys(keys: KeyStore, rolloverSeq: number): Promise<string[]> {
    const already = this.keysMissing();
    const found: string[] = [];
    for (const ca of this.list()) {
      if (already.has(ca.label) || !ca.keyUri.startsWith("pkcs11:")) continue;
      let token: string;
      try {
        token = parsePkcs11Uri(ca.keyUri).token;
      } catch {
        continue;
      }
      if (token !== this.ctx.tokenLabel || (await keys.findKey(ca.keyUri))) continue;
      const now = this.ctx.clock.now().toISOString();
      this.ctx.store.transaction(() => {
        if (!ca.retiredAt) this.ctx.store.updateCa(ca.label, { retiredAt: now });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: KEY_MISSING_ACTION,
          subject: ca.label,
          outcome: "ok",
          message: `CA "${ca.label}"'s key is not in token "${token}" (the token was replaced): it signs nothing here from now on, and stays as it is at AWS IoT.`,
          details: { keyUri: ca.keyUri, rollover: rolloverSeq, status: ca.status },
        });
      });
      found.push(ca.label);
    }
    return found;
  }

  /** Refuses a CA whose key a rollover found missing. @throws LinesignError CA_KEY_MISSING */
  refuseKeyMissing(ca: CaRecord): void {
    if (ca.retiredAt && this.keysMissing().has(ca.label))
      throw new LinesignError(
        "CA_KEY_MISSING",
        `CA "${ca.label}"'s key is not in token "${this.ctx.tokenLabel}" (the token was replaced), so it signs nothing here: ` +
          `an officer creates a new CA in the token ("linesign ca create") and moves the profile to it ("linesign ca rotate --profile P --to NEW").`,
        { details: { ca: ca.label } },
      );
  }

  /** @throws LinesignError CA_UNKNOWN */
  get(label: string): CaRecord {
    return this.mustGet(label);
  }

  /** Marks a CA active (it may sign; a retired one signs again). @throws LinesignError CA_UNKNOWN, CA_STATE */
  async activate(label: string): Promise<CaRecord> {
    return this.setStatus(label, "active", "ca.activate");
  }

  /**
   * Marks a CA inactive: it signs nothing here, and the next sync marks it
   * INACTIVE at AWS IoT (where devices it signed then fail just-in-time
   * registration). Refused while a profile issues under it, unless
   * `stopProfiles` (a compromised CA: those profiles stop issuing, recorded,
   * and a line on them does not start until they are rotated).
   * @throws LinesignError CA_UNKNOWN, CA_STATE, CA_IN_USE
   */
  async deactivate(label: string, opts: { stopProfiles?: boolean } = {}): Promise<CaRecord> {
    return this.setStatus(label, "inactive", "ca.deactivate", Boolean(opts.stopProfiles));
  }

  /**
   * Stops a CA signing here while it stays ACTIVE at AWS IoT, so devices it
   * already signed keep registering; its CRLs are still signed. Refused while a
   * profile issues under it (rotate the profile first).
   * @throws LinesignError CA_UNKNOWN, CA_STATE, CA_IN_USE
   */
  async retire(label: string): Promise<CaRecord> {
    return act(this.ctx, "ca.retire", label, async () => {
      const ca = this.mustGet(label);
      if (ca.status !== "active" || ca.retiredAt)
        throw new LinesignError(
          "CA_STATE",
          `CA "${label}" is ${ca.retiredAt ? "retired" : ca.status} already; nothing was changed.`,
        );
      this.refuseInUse(label, "retire");
      const at = this.ctx.clock.now().toISOString();
      this.ctx.store.transaction(() => {
        this.ctx.store.updateCa(label, { retiredAt: at });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "ca.retire",
          subject: label,
          outcome: "ok",
          details: { at, aws: "stays ACTIVE" },
        });
      });
      return this.mustGet(label);
    });
  }

  /**
   * Checks that a profile's CA can sign devices now: it exists with its
   * certificate, is an intermediate for devices, is active and not retired.
   * @throws LinesignError CA_UNKNOWN, CA_NOT_FOR_DEVICES, CA_INACTIVE
   */
  requireIssuing(label: string, profile: string): CaRecord {
    const ca = this.ctx.store.getCa(label);
    const problem = deviceCaProblem(label, ca, this.ctx.store.listCas());
    if (problem)
      throw new LinesignError(problem.code, `Profile "${profile}": ${problem.message}`, {
        details: { ca: label, profile },
      });
    if (ca!.retiredAt) this.refuseKeyMissing(ca!);
    if (!ca!.certDer || ca!.status !== "active" || ca!.retiredAt)
      throw new LinesignError(
        "CA_INACTIVE",
        `Profile "${profile}" issues under CA "${label}", which is ${ca!.retiredAt ? "retired" : ca!.status}: an officer activates it ("linesign ca activate --label ${label}") or moves the profile to another CA ("linesign ca rotate --profile ${profile} --to NEW").`,
        { details: { ca: label, profile } },
      );
    return ca!;
  }

  /** Profiles that issue under `label` now. */
  profilesUsing(label: string): string[] {
    return Object.entries(this.profiles())
      .filter(([, p]) => p.ca === label)
      .map(([n]) => n);
  }

  private refuseInUse(label: string, verb: string): void {
    const using = this.profilesUsing(label);
    if (using.length === 0) return;
    throw new LinesignError(
      "CA_IN_USE",
      `CA "${label}" still issues for profile${using.length > 1 ? "s" : ""} ${using.map((n) => `"${n}"`).join(", ")}: the line would fail every device with CA_INACTIVE. ` +
        `Move ${using.length > 1 ? "them" : "it"} to another CA first ("linesign ca rotate --profile ${using[0]} --to NEW"), then ${verb} "${label}"` +
        (verb === "deactivate"
          ? `; or, if it must stop now (its key is compromised), "linesign ca deactivate --label ${label} --stop-profiles".`
          : "."),
      { details: { ca: label, profiles: using } },
    );
  }

  /**
   * PEM of the CA certificate, followed by its chain up to the root when `chain`.
   * @throws LinesignError CA_UNKNOWN, CA_NO_CERTIFICATE
   */
  async export(label: string, chain: boolean): Promise<string> {
    return act(this.ctx, "ca.export", label, async () => {
      const ca = this.mustGet(label);
      if (!ca.certDer)
        throw new LinesignError(
          "CA_NO_CERTIFICATE",
          `CA "${label}" has no certificate yet: import the one the offline root signed first.`,
        );
      const ders = chain ? [ca.certDer, ...ca.chainDer] : [ca.certDer];
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "ca.export",
        subject: label,
        outcome: "ok",
        details: { chain },
      });
      return (
        ders
          .map((d) => x509.PemConverter.encode(d.slice().buffer as ArrayBuffer, "CERTIFICATE"))
          .join("\n") + "\n"
      );
    });
  }

  /**
   * The AWS IoT verification certificate for DEFAULT-mode CA registration:
   * CN = the registration code, signed by the CA key in the token.
   * @throws LinesignError REGISTRATION_CODE_INVALID, CA_UNKNOWN, CA_NO_CERTIFICATE, HSM_*
   */
  async verificationCertificate(label: string, registrationCode: string): Promise<string> {
    return act(this.ctx, "ca.verification-cert", label, async () => {
      const code = parseRegistrationCode(registrationCode);
      const ca = this.mustGet(label);
      if (!ca.certDer)
        throw new LinesignError(
          "CA_NO_CERTIFICATE",
          `CA "${label}" has no certificate yet: import the one the offline root signed first.`,
        );
      const certificate = new x509.X509Certificate(ca.certDer);
      checkIssuerValid(certificate, label, this.ctx.clock.now());
      const signer = await this.signerFor(ca);
      const cert = await createVerificationCertificate(
        code,
        { signer, certificate, label },
        this.ctx.clock.now(),
      );
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "ca.verification-cert",
        subject: label,
        outcome: "ok",
        details: {
          registrationCode: code,
          serial: cert.serialNumber,
          fingerprint: sha256Hex(new Uint8Array(cert.rawData)),
        },
      });
      return cert.toString("pem") + "\n";
    });
  }

  /** The signer for a CA's key, wherever it lives (token, or the development root's file). */
  async signerFor(ca: CaRecord, keys: KeyStore = this.ctx.keys()): Promise<Signer> {
    if (ca.keyUri.startsWith("pkcs11:")) return keys.signer(ca.keyUri);
    if (ca.development && ca.keyUri.startsWith("file:"))
      return this.ctx.softKeys.load(new URL(ca.keyUri).pathname);
    throw new LinesignError(
      "HSM_KEY_NOT_FOUND",
      `CA "${ca.label}" names a key at ${ca.keyUri}, which the station cannot use.`,
    );
  }

  /** Records a CA made outside the token flow (the development root). */
  recordCa(ca: CaRecord, details: Record<string, unknown>): void {
    this.ctx.store.transaction(() => {
      this.ctx.store.insertCa(ca);
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "ca.create",
        subject: ca.label,
        outcome: "ok",
        details,
      });
    });
  }

  /** Fields derived from a CA certificate. */
  async certFields(
    cert: x509.X509Certificate,
  ): Promise<Pick<CaRecord, "certDer" | "notBefore" | "notAfter" | "fingerprint">> {
    const der = new Uint8Array(cert.rawData);
    return {
      certDer: der,
      notBefore: cert.notBefore.toISOString(),
      notAfter: cert.notAfter.toISOString(),
      fingerprint: sha256Hex(der),
    };
  }

  private async setStatus(
    label: string,
    status: "active" | "inactive",
    action: string,
    stopProfiles = false,
  ): Promise<CaRecord> {
    return act(this.ctx, action, label, async () => {
      const ca = this.mustGet(label);
      if (ca.status === "pending") {
        throw new LinesignError(
          "CA_STATE",
          `CA "${label}" has no certificate yet: import it before changing its status.`,
        );
      }
      if (ca.status === status && !(status === "active" && ca.retiredAt)) {
        throw new LinesignError(
          "CA_STATE",
          `CA "${label}" is already ${status}; nothing was changed.`,
        );
      }
      // A CA whose key went with a replaced token never signs here again.
      if (status === "active" && this.keysMissing().has(label))
        this.refuseKeyMissing({ ...ca, retiredAt: ca.retiredAt ?? "key missing" });
      const stopped = status === "inactive" ? this.profilesUsing(label) : [];
      if (status === "inactive" && !stopProfiles) this.refuseInUse(label, "deactivate");
      this.ctx.store.transaction(() => {
        this.ctx.store.updateCa(label, { status, retiredAt: null });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action,
          subject: label,
          outcome: "ok",
          details: {
            from: ca.retiredAt ? "retired" : ca.status,
            to: status,
            ...(stopped.length ? { profilesStopped: stopped } : {}),
          },
        });
      });
      return this.mustGet(label);
    });
  }

  private checkNewLabel(label: string): void {
    if (!LABEL.test(label)) {
      throw new LinesignError(
        "USAGE",
        `"${label}" is not a valid CA label: use 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit.`,
      );
    }
    if (this.ctx.store.getCa(label)) {
      throw new LinesignError(
        "CA_LABEL_EXISTS",
        `A CA labelled "${label}" already exists. Keys are never overwritten: choose another label.`,
        { details: { label } },
      );
    }
  }

  private mustGet(label: string): CaRecord {
    const ca = this.ctx.store.getCa(label);
    if (ca) return ca;
    const known = this.ctx.store.listCas().map((c) => c.label);
    throw new LinesignError(
      "CA_UNKNOWN",
      `No CA is labelled "${label}". ${known.length ? `Known CAs: ${known.join(", ")}.` : "The station has no CA yet."} See "linesign ca list".`,
      { details: { label } },
    );
  }

  private async issuerFor(
    rootLabel: string,
  ): Promise<{ record: CaRecord; signer: Signer; certificate: x509.X509Certificate }> {
    const record = this.mustGet(rootLabel);
    if (!record.certDer)
      throw new LinesignError(
        "CA_NO_CERTIFICATE",
        `CA "${rootLabel}" has no certificate yet, so it cannot sign another CA.`,
      );
    if (record.status !== "active") {
      throw new LinesignError(
        "CA_INACTIVE",
        `CA "${rootLabel}" is ${record.status}; activate it ("linesign ca activate --label ${rootLabel}") before it signs.`,
      );
    }
    const certificate = new x509.X509Certificate(record.certDer);
    // Checked before the new key is made: a refusal leaves nothing behind.
    checkIssuerValid(certificate, rootLabel, this.ctx.clock.now());
    const bc = certificate.getExtension(x509.BasicConstraintsExtension);
    if (bc?.pathLength === 0) {
      throw new LinesignError(
        "CA_STATE",
        `CA "${rootLabel}" may sign only devices (pathLen 0), not another CA.`,
      );
    }
    return { record, signer: await this.signerFor(record), certificate };
  }
}
