/**
 * The station certificate signed by the offline root, in the key ceremony:
 * the audit key's certificate issued by the same root the device CAs chain
 * to, so an auditor who trusts the root trusts the audit key through it (and
 * checks exports with `audit verify --bundle F --trust STATION.pem --root ROOT.pem`).
 */
import { LinesignError } from "../domain/errors.js";
import { act, type AppContext } from "./context.js";
import type { CaService } from "./ca.js";
import type { Checkpointer } from "./checkpoint.js";
import { BACKDATE_MS, checkChain, newSerialHex, sha256Hex } from "./pki/certificates.js";
import { keyAlgorithm, signingKeyPair } from "./pki/signing-crypto.js";
import { x509 } from "./pki/x509.js";
import { formatPkcs11Uri } from "../domain/pkcs11-uri.js";
import type { KeyStore } from "../domain/ports.js";
import type { EventRecord } from "../domain/event-log.js";
import type { HeadBinding } from "./checkpoint.js";
import type { RolloverEndorsement } from "./audit-keys.js";

const DAY_MS = 86_400_000;

/**
 * Issues the station certificate (CN = station id, the audit key's public
 * key) under root CA `rootLabel`, whose key is in its own token (PIN from
 * LINESIGN_ROOT_PIN or a prompt). Validity `days` (default 3650), cut at the root's end.
 * @throws LinesignError CA_UNKNOWN, CA_STATE (not a root), CA_NO_CERTIFICATE, HSM_*
 */
export async function rootSignedStationCertificate(
  ctx: AppContext,
  checkpointer: Checkpointer,
  cas: CaService,
  rootLabel: string,
  days = 3650,
  /** The audit key to certify (a rollover's new key); default the token's audit key. */
  auditSpki?: Uint8Array,
  /** The keys the root signs with (a rollover's: the log is not bound yet). */
  keys?: KeyStore,
): Promise<string> {
  return act(ctx, "station.cert", ctx.stationId, async () => {
    const root = cas.get(rootLabel);
    if (root.kind !== "root" || !root.certDer)
      throw new LinesignError(
        root.certDer ? "CA_STATE" : "CA_NO_CERTIFICATE",
        `CA "${rootLabel}" is not a root with its certificate: the station certificate is signed by the offline root the device CAs chain to.`,
      );
    const rootCert = new x509.X509Certificate(root.certDer);
    const spki = auditSpki ?? (await checkpointer.signer()).key.spki;
    const rootSigner = await cas.signerFor(root, keys);
    const { crypto, privateKey } = await signingKeyPair(rootSigner);
    const now = Date.now();
    let notAfter = new Date(now + days * DAY_MS);
    if (notAfter > rootCert.notAfter) notAfter = rootCert.notAfter;
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: newSerialHex(),
        subject: [{ CN: [ctx.stationId] }, { O: ["Linesign station"] }],
        issuer: rootCert.subjectName,
        notBefore: new Date(now - BACKDATE_MS),
        notAfter,
        publicKey: spki,
        signingKey: privateKey,
        signingAlgorithm: keyAlgorithm(rootSigner),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          await x509.SubjectKeyIdentifierExtension.create(spki, false, crypto),
          await x509.AuthorityKeyIdentifierExtension.create(rootCert.publicKey, false, crypto),
        ],
      },
      crypto,
    );
    const der = new Uint8Array(cert.rawData);
    ctx.store.appendEvent({
      actor: ctx.actor,
      action: "station.cert",
      subject: ctx.stationId,
      outcome: "ok",
      // The certificate itself (public): an auditor shows it later without the PIN.
      details: {
        serial: cert.serialNumber,
        issuer: rootLabel,
        fingerprint: sha256Hex(der),
        pem: cert.toString("pem"),
      },
    });
    return cert.toString("pem") + "\n";
  });
}

/**
 * Checks that a station certificate was issued by the root (signature,
 * validity, the root self-signed), for an auditor who trusts the root.
 * @throws LinesignError BUNDLE_INVALID (unreadable), CA_CHAIN_INVALID naming the broken link
 */
export async function checkStationCertificate(stationPem: string, rootPem: string): Promise<void> {
  let station: x509.X509Certificate;
  let root: x509.X509Certificate;
  try {
    station = new x509.X509Certificate(stationPem);
    root = new x509.X509Certificate(rootPem);
  } catch {
    throw new LinesignError(
      "BUNDLE_INVALID",
      "--trust and --root must each be a PEM certificate: the station certificate and the root's.",
    );
  }
  await checkChain(station, [root]);
}

export interface RolloverOptions {
  /** The ceremony: the offline root that signs the new station certificate (its token present). */
  root?: string;
  /** The old token, when it still works: its audit key signs the rollover. */
  oldToken?: string;
  /** Why (the token that died, what was examined). */
  reason: string;
  /** The audit key's label (audit.keyLabel). */
  keyLabel: string;
  /** The token's keys as they are (the old token is not bound to the log). */
  rawKeys: () => KeyStore;
}

export interface RolloverResult {
  entry: EventRecord;
  /** The new station certificate signed by the root (the ceremony), for auditors' --trust. */
  stationCert: string | null;
  /** Whether the new key was made now (else the token held one already). */
  created: boolean;
  /** How the log stood against the new token's head before the rollover bound it. */
  binding: HeadBinding;
  /** CAs whose keys are not in the token: they no longer sign here. */
  keysMissing: string[];
}

/**
 * `linesign audit rollover`: the token was replaced, so its audit key is
 * new. The officer's recorded act introduces it (see audit-keys.ts): with
 * `root`, the root signs a station certificate for the new key (the
 * ceremony); with `oldToken`, the old audit key signs the rollover. The
 * token's head starts at the rollover and a checkpoint signed by the new key
 * follows. CAs whose keys the token does not hold are recorded as missing
 * (`ca.key-missing`) and stop signing here (they stay ACTIVE at AWS IoT for
 * the devices they signed).
 * @throws LinesignError USAGE (neither or both ways; nothing to roll over; the old token's key is not the key in force), CA_*, HSM_*
 */
export async function auditKeyRollover(
  ctx: AppContext,
  checkpointer: Checkpointer,
  cas: CaService,
  o: RolloverOptions,
): Promise<RolloverResult> {
  return act(ctx, "audit.key.rollover", o.keyLabel, async () => {
    if (Boolean(o.root) === Boolean(o.oldToken))
      throw new LinesignError(
        "USAGE",
        "Say how the new audit key is endorsed: --root ROOT (the ceremony: the offline root signs its station certificate) or --old-token LABEL (the old token still works and its audit key signs).",
      );
    let stationCert: string | null = null;
    const { entry, binding, created } = await checkpointer.rollover(
      async (newSpki, previousSpki) => {
        if (o.root) {
          stationCert = await rootSignedStationCertificate(
            ctx,
            checkpointer,
            cas,
            o.root,
            3650,
            newSpki,
            o.rawKeys(),
          );
          return null;
        }
        const keys = o.rawKeys();
        const uri = formatPkcs11Uri({ token: o.oldToken!, object: o.keyLabel, id: "" });
        const old = await keys.findKey(uri);
        if (!old || !Buffer.from(old.spki).equals(Buffer.from(previousSpki)))
          throw new LinesignError(
            "USAGE",
            `Token "${o.oldToken}" ${old ? "holds another audit key than" : "holds no audit key, not even"} the one in force: it is not the station's old token. Use the ceremony (--root ROOT) instead.`,
            { details: { token: o.oldToken } },
          );
        return keys.signer(old.uri);
      },
      async (message, oldSigner): Promise<RolloverEndorsement> => {
        if (oldSigner)
          return {
            by: "previous-key",
            signature: Buffer.from(await oldSigner.sign(message)).toString("base64"),
          };
        const root = cas.get(o.root!);
        return {
          by: "ceremony",
          officer: ctx.actor,
          root: root.label,
          rootFingerprint: sha256Hex(root.certDer!),
          stationCert: stationCert!,
        };
      },
      o.reason,
    );
    const keysMissing = await cas.markMissingKeys(o.rawKeys(), entry.seq);
    await checkpointer.checkpoint();
    return { entry, stationCert, created, binding, keysMissing };
  });
}

/** A station certificate as the log recorded it, with its chain to the station's root. */
export interface RecordedStationCertificate {
  /** The station certificate, PEM. */
  pem: string;
  /** The root that issued it (PEM), when it is one of the station's root CAs; empty for a self-signed one. */
  chain: string[];
  /** The root's label, or null (self-signed by the audit key). */
  root: string | null;
  /** The entry that recorded it. */
  seq: number;
  ts: string;
  fingerprint: string;
  notAfter: string;
}

/**
 * The station certificate for the audit key in force, as the log recorded it
 * (`station.cert`, or a rollover's ceremony): read-only, no token, no PIN, no
 * key made. A root-signed one is preferred to a self-signed one, the newest of
 * each; its root's certificate from the station's CA records follows when its
 * signature checks.
 * @throws LinesignError CA_NO_CERTIFICATE when none is recorded for the key in force
 */
export async function recordedStationCertificate(
  ctx: AppContext,
  checkpointer: Checkpointer,
): Promise<RecordedStationCertificate> {
  const inForce = checkpointer.keyInForce();
  const found: { pem: string; seq: number; ts: string }[] = [];
  for (const e of ctx.store.queryEvents({ action: "station.cert", outcome: "ok" })) {
    const pem = (e.details as { pem?: unknown }).pem;
    if (typeof pem === "string") found.push({ pem, seq: e.seq, ts: e.ts });
  }
  for (const e of ctx.store.queryEvents({ action: "audit.key.rollover", outcome: "ok" })) {
    const en = (e.details as { endorsement?: { stationCert?: unknown } }).endorsement;
    if (typeof en?.stationCert === "string")
      found.push({ pem: en.stationCert, seq: e.seq, ts: e.ts });
  }
  const candidates: RecordedStationCertificate[] = [];
  for (const f of found) {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(f.pem);
    } catch {
      continue; // not a certificate: never shown as one
    }
    const spki = Buffer.from(cert.publicKey.rawData).toString("base64");
    if (inForce && spki !== inForce) continue;
    let root: string | null = null;
    const chain: string[] = [];
    if (cert.subject !== cert.issuer) {
      for (const ca of ctx.store.listCas()) {
        if (ca.kind !== "root" || !ca.certDer) continue;
        const rootCert = new x509.X509Certificate(ca.certDer);
        if (rootCert.subject !== cert.issuer) continue;
        try {
          if (!(await cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true })))
            continue;
        } catch {
          continue;
        }
        root = ca.label;
        chain.push(rootCert.toString("pem") + "\n");
        break;
      }
    }
    candidates.push({
      pem: cert.toString("pem") + "\n",
      chain,
      root,
      seq: f.seq,
      ts: f.ts,
      fingerprint: sha256Hex(new Uint8Array(cert.rawData)),
      notAfter: cert.notAfter.toISOString(),
    });
  }
  candidates.sort((a, b) => Number(b.root !== null) - Number(a.root !== null) || b.seq - a.seq);
  const best = candidates[0];
  if (!best)
    throw new LinesignError(
      "CA_NO_CERTIFICATE",
      `No station certificate ${inForce ? "for the audit key in force " : ""}is recorded in this station's log. ` +
        'A security officer makes one ("linesign station-cert", or "linesign station-cert --root ROOT" in the key ceremony); the station records it, and auditors read it from then on.',
      { details: { station: ctx.stationId } },
    );
  return best;
}
