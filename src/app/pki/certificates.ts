/**
 * Building and checking the station's CA-side certificates with @peculiar/x509.
 * Private keys are reached only through the Signer port.
 */
import { createHash } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import { LinesignError } from "../../domain/errors.js";
import type { KeyType } from "../../domain/keys.js";
import type { Signer } from "../../domain/ports.js";
import { assertDer } from "./der.js";
import { keyAlgorithm, signingKeyPair } from "./signing-crypto.js";
import { x509 } from "./x509.js";

/** Clock skew tolerance: certificates start this long before they are made. */
export const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A positive serial of 128 bits, 126 of them random (RFC 5280 allows up to 20
 * octets; CA/B and AWS expect at least 64 random bits).
 */
export function newSerialHex(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x3f) | 0x40; // positive, and never shortened by a leading zero
  return Buffer.from(bytes).toString("hex");
}

/**
 * Parses a distinguished name like "CN=Line 3 ICA,O=Acme,C=DE". Requires a
 * non-empty CN. Throws SUBJECT_INVALID naming the problem.
 */
export function parseSubject(dn: string): x509.Name {
  let name: x509.Name;
  try {
    name = new x509.Name(dn);
  } catch (cause) {
    throw new LinesignError(
      "SUBJECT_INVALID",
      `The subject "${dn}" is not a distinguished name. Write it like "CN=Line 3 Issuing CA,O=Example Corp,C=DE".`,
      { cause },
    );
  }
  const cn = name.getField("CN");
  if (cn.length !== 1 || !cn[0] || cn[0].trim() === "") {
    throw new LinesignError(
      "SUBJECT_INVALID",
      `The subject "${dn}" needs exactly one non-empty CN.`,
    );
  }
  return name;
}

const SIGNATURE_OIDS: Record<KeyType, string> = {
  "ec-p256": "1.2.840.10045.4.3.2",
  "ec-p384": "1.2.840.10045.4.3.3",
  "rsa-2048": "1.2.840.113549.1.1.11",
  "rsa-3072": "1.2.840.113549.1.1.11",
};

/** The signature AlgorithmIdentifier a CA key signs with (ECDSA: no parameters; RSA: NULL). */
export function signatureAlgorithmFor(keyType: KeyType): asn1.AlgorithmIdentifier {
  const rsa = keyType.startsWith("rsa");
  return new asn1.AlgorithmIdentifier({
    algorithm: SIGNATURE_OIDS[keyType],
    parameters: rsa ? null : undefined,
  });
}

/**
 * The key identifier to name an issuer by: its certificate's own subject key
 * identifier, whatever method made it (an offline root's or an imported CA's
 * may not be the SHA-1 of its key); RFC 5280's method 1 only when it has none.
 */
export function issuerKeyIdentifier(issuer: asn1.Certificate): ArrayBuffer {
  const ski = issuer.tbsCertificate.extensions?.find(
    (e) => e.extnID === asn1.id_ce_subjectKeyIdentifier,
  );
  if (ski) return AsnConvert.parse(ski.extnValue.buffer, asn1.SubjectKeyIdentifier).buffer;
  return createHash("sha1")
    .update(new Uint8Array(issuer.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey))
    .digest()
    .slice().buffer;
}

/** The authority key identifier extension for certificates and CRLs `issuer` signs. */
export function authorityKeyIdentifierFrom(
  issuer: x509.X509Certificate,
): x509.AuthorityKeyIdentifierExtension {
  const id = issuerKeyIdentifier(AsnConvert.parse(issuer.rawData, asn1.Certificate));
  return new x509.AuthorityKeyIdentifierExtension(Buffer.from(id).toString("hex"), false);
}

/**
 * Refuses to sign under an issuer outside its validity: what it signed would
 * start after it ends, or not chain. Throws CA_EXPIRED naming the CA.
 */
export function checkIssuerValid(issuer: x509.X509Certificate, label: string, now: Date): void {
  if (now < issuer.notBefore || now >= issuer.notAfter) {
    throw new LinesignError(
      "CA_EXPIRED",
      `CA "${label}" is outside its validity (${issuer.notBefore.toISOString()} to ${issuer.notAfter.toISOString()}), so it cannot sign: ` +
        "use another CA, or have it certified again.",
      { details: { ca: label, notAfter: issuer.notAfter.toISOString() } },
    );
  }
}

export interface CaCertificateParams {
  subject: x509.Name | string;
  /** SPKI DER of the new CA's key. */
  spki: Uint8Array;
  /** Who signs: the issuer's signer and certificate, or null certificate for self-signed. */
  issuer: { signer: Signer; certificate: x509.X509Certificate | null };
  /** Validity in days from now (backdated by BACKDATE_MS). */
  days: number;
  /** 0 for intermediates that sign only end-entity certificates; undefined for roots. */
  pathLength?: number;
  /** The station's clock; default the system's. */
  now?: Date;
}

/** Creates a CA certificate with basicConstraints CA:TRUE and keyCertSign|cRLSign, both critical. */
export async function createCaCertificate(p: CaCertificateParams): Promise<x509.X509Certificate> {
  const { crypto, privateKey } = await signingKeyPair(p.issuer.signer);
  const at = p.now ?? new Date();
  if (p.issuer.certificate)
    checkIssuerValid(p.issuer.certificate, p.issuer.certificate.subject, at);
  const now = at.getTime();
  const notBefore = new Date(now - BACKDATE_MS);
  let notAfter = new Date(now + p.days * DAY_MS);
  if (p.issuer.certificate && notAfter > p.issuer.certificate.notAfter) {
    notAfter = p.issuer.certificate.notAfter; // never outlive the issuer
  }
  const subjectName = typeof p.subject === "string" ? parseSubject(p.subject) : p.subject;
  const issuerName = p.issuer.certificate ? p.issuer.certificate.subjectName : subjectName;
  const aki = p.issuer.certificate
    ? authorityKeyIdentifierFrom(p.issuer.certificate)
    : await x509.AuthorityKeyIdentifierExtension.create(p.spki, false, crypto);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: newSerialHex(),
      subject: subjectName,
      issuer: issuerName,
      notBefore,
      notAfter,
      publicKey: p.spki,
      signingKey: privateKey,
      signingAlgorithm: keyAlgorithm(p.issuer.signer),
      extensions: [
        new x509.BasicConstraintsExtension(true, p.pathLength, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(p.spki, false, crypto),
        aki,
      ],
    },
    crypto,
  );
  assertDer(new Uint8Array(cert.rawData), "a CA certificate");
  return cert;
}

/** A PKCS#10 request for a CA key, signed by that key, for an offline root to sign. */
export async function createCaRequest(
  subject: string,
  signer: Signer,
): Promise<x509.Pkcs10CertificateRequest> {
  const { crypto, privateKey, publicKey } = await signingKeyPair(signer);
  return x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: parseSubject(subject),
      keys: { privateKey, publicKey },
      signingAlgorithm: keyAlgorithm(signer),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
      ],
    },
    crypto,
  );
}

/**
 * The AWS IoT verification certificate (DEFAULT mode): subject CN is exactly
 * the registration code, the key pair is a throwaway made in software, and
 * the signature is the CA key's, made where that key lives.
 */
export async function createVerificationCertificate(
  registrationCode: string,
  ca: { signer: Signer; certificate: x509.X509Certificate; label: string },
  at: Date = new Date(),
): Promise<x509.X509Certificate> {
  checkIssuerValid(ca.certificate, ca.label, at);
  const { crypto, privateKey } = await signingKeyPair(ca.signer);
  const throwaway = await globalThis.crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const spki = new Uint8Array(
    await globalThis.crypto.subtle.exportKey("spki", throwaway.publicKey),
  );
  const now = at.getTime();
  let notAfter = new Date(now + 30 * DAY_MS);
  if (notAfter > ca.certificate.notAfter) notAfter = ca.certificate.notAfter;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: newSerialHex(),
      subject: [{ CN: [registrationCode] }],
      issuer: ca.certificate.subjectName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter,
      publicKey: spki,
      signingKey: privateKey,
      signingAlgorithm: keyAlgorithm(ca.signer),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.SubjectKeyIdentifierExtension.create(spki, false, crypto),
        authorityKeyIdentifierFrom(ca.certificate),
      ],
    },
    crypto,
  );
  assertDer(new Uint8Array(cert.rawData), "a verification certificate");
  return cert;
}

/** Reads a certificate from PEM or DER bytes. Throws CA_CERT_UNREADABLE naming `what`. */
export function readCertificate(bytes: Uint8Array, what: string): x509.X509Certificate {
  try {
    const text = Buffer.from(bytes).toString("latin1");
    return text.includes("-----BEGIN")
      ? new x509.X509Certificate(text)
      : new x509.X509Certificate(bytes);
  } catch (cause) {
    throw new LinesignError(
      "CA_CERT_UNREADABLE",
      `${what} is not a readable X.509 certificate (PEM or DER).`,
      { cause },
    );
  }
}

/** Reads every certificate of a PEM bundle (or one DER). Throws CA_CERT_UNREADABLE. */
export function readCertificates(bytes: Uint8Array, what: string): x509.X509Certificate[] {
  const text = Buffer.from(bytes).toString("latin1");
  if (!text.includes("-----BEGIN")) return [readCertificate(bytes, what)];
  try {
    return x509.PemConverter.decode(text).map((der) => new x509.X509Certificate(der));
  } catch (cause) {
    throw new LinesignError(
      "CA_CERT_UNREADABLE",
      `${what} holds something that is not an X.509 certificate.`,
      { cause },
    );
  }
}

const STRONG_HASHES = ["SHA-256", "SHA-384", "SHA-512"];
const ID_KP_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const ANY_EKU = "2.5.29.37.0";

/**
 * Checks what a CA certificate needs to issue what the station issues:
 * keyUsage keyCertSign and cRLSign, no extendedKeyUsage that leaves out
 * clientAuth (validators apply a CA's EKU to what it signs), a signature with
 * SHA-256 or stronger. Throws CA_CERT_UNSUITABLE naming the missing property.
 */
export function checkCaSuitable(
  cert: x509.X509Certificate,
  what: string,
  opts: { chain?: boolean } = {},
): void {
  const refuse = (property: string, why: string): never => {
    throw new LinesignError("CA_CERT_UNSUITABLE", `${what} ${why}`, { details: { property } });
  };
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  // Above the CA being installed only what is there is checked (many roots carry no keyUsage).
  const flags = opts.chain
    ? ([[x509.KeyUsageFlags.keyCertSign, "keyCertSign"]] as const)
    : ([
        [x509.KeyUsageFlags.keyCertSign, "keyCertSign"],
        [x509.KeyUsageFlags.cRLSign, "cRLSign"],
      ] as const);
  if (!ku && !opts.chain)
    refuse(
      "keyUsage",
      "has no keyUsage extension; a CA certificate needs keyCertSign and cRLSign (RFC 5280 4.2.1.3). Ask the root's officer to sign it again with them.",
    );
  for (const [flag, name] of ku ? flags : []) {
    if ((ku!.usages & flag) === 0)
      refuse(
        `keyUsage.${name}`,
        `lacks keyUsage ${name}: ${name === "keyCertSign" ? "device certificates it signs would not verify" : "its CRLs would not verify"}. Ask the root's officer to sign it again with keyCertSign and cRLSign.`,
      );
  }
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku) {
    const usages = eku.usages.map(String);
    if (!usages.includes(ID_KP_CLIENT_AUTH) && !usages.includes(ANY_EKU))
      refuse(
        "extendedKeyUsage",
        `restricts its extended key usage to ${usages.join(", ")}, without clientAuth: TLS clients would refuse the device certificates it signs. Ask for it without extendedKeyUsage, or with clientAuth.`,
      );
  }
  if (opts.chain && cert.subject === cert.issuer) return; // a trust anchor's own signature is never checked
  const alg = cert.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  const hash = alg.hash?.name ?? "unknown";
  if (!STRONG_HASHES.includes(hash))
    refuse(
      "signatureAlgorithm",
      `is signed with ${alg.name ?? "an unknown algorithm"} over ${hash}; AWS IoT and TLS stacks need SHA-256 or stronger. Ask the root's officer to sign it again with SHA-256 or stronger.`,
    );
}

/** True when the certificate says CA:TRUE in basicConstraints. */
export function isCaCertificate(cert: x509.X509Certificate): boolean {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  return bc?.ca === true;
}

/**
 * Checks that `cert` chains through `chain` (nearest issuer first) to a
 * self-signed root, every link's signature verifying, every issuer a CA, all
 * within validity now. Throws CA_CHAIN_INVALID naming the broken link.
 */
export async function checkChain(
  cert: x509.X509Certificate,
  chain: x509.X509Certificate[],
): Promise<void> {
  const path = [cert, ...chain];
  const now = new Date();
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    const issuer = path[i + 1] ?? c;
    const where = i === 0 ? "the certificate" : `chain certificate ${i} (${c.subject})`;
    if (now < c.notBefore || now > c.notAfter) {
      throw new LinesignError(
        "CA_CHAIN_INVALID",
        `${where} is outside its validity (${c.notBefore.toISOString()} to ${c.notAfter.toISOString()}).`,
      );
    }
    if (c.issuer !== issuer.subject) {
      throw new LinesignError(
        "CA_CHAIN_INVALID",
        i + 1 < path.length
          ? `${where} was issued by "${c.issuer}", but the next certificate in the chain is "${issuer.subject}". Give the chain nearest issuer first.`
          : `The chain ends at "${c.subject}", which is not self-signed: add its issuer "${c.issuer}" up to the root.`,
      );
    }
    if (i > 0 && !isCaCertificate(c)) {
      throw new LinesignError(
        "CA_CHAIN_INVALID",
        `${where} is not a CA certificate (no basicConstraints CA:TRUE).`,
      );
    }
    const ok = await c.verify({ publicKey: issuer.publicKey, signatureOnly: true });
    if (!ok) {
      throw new LinesignError(
        "CA_CHAIN_INVALID",
        `The signature on ${where} does not verify with the key of "${issuer.subject}".`,
      );
    }
  }
}

/** Hex SHA-256 of DER bytes (synchronous: WebCrypto's digest would hop to the thread pool on the hot path). */
export function sha256Hex(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

/**
 * The station's own certificate: self-signed by the audit key in the token,
 * CN = the station id. An online machine trusts it to check the station's
 * signed bundles (`linesign upload --trust`).
 */
export async function createStationCertificate(
  stationId: string,
  signer: Signer,
  days = 3650,
): Promise<x509.X509Certificate> {
  const { crypto, privateKey, publicKey } = await signingKeyPair(signer);
  const now = Date.now();
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: newSerialHex(),
      name: [{ CN: [stationId] }, { O: ["Linesign station"] }],
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + days * DAY_MS),
      keys: { privateKey, publicKey },
      signingAlgorithm: keyAlgorithm(signer),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    },
    crypto,
  );
}

/** PEM of DER bytes under a label (CERTIFICATE, X509 CRL, ...). */
export const pemOfDer = (der: Uint8Array, label = "CERTIFICATE"): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "")}\n-----END ${label}-----\n`;
