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
): Promise<string> {
  return act(ctx, "station.cert", ctx.stationId, async () => {
    const root = cas.get(rootLabel);
    if (root.kind !== "root" || !root.certDer)
      throw new LinesignError(
        root.certDer ? "CA_STATE" : "CA_NO_CERTIFICATE",
        `CA "${rootLabel}" is not a root with its certificate: the station certificate is signed by the offline root the device CAs chain to.`,
      );
    const rootCert = new x509.X509Certificate(root.certDer);
    const audit = await checkpointer.signer();
    const rootSigner = await cas.signerFor(root);
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
        publicKey: audit.key.spki,
        signingKey: privateKey,
        signingAlgorithm: keyAlgorithm(rootSigner),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          await x509.SubjectKeyIdentifierExtension.create(audit.key.spki, false, crypto),
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
      details: { serial: cert.serialNumber, issuer: rootLabel, fingerprint: sha256Hex(der) },
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
