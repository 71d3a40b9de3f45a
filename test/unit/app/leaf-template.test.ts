/**
 * The certificate template against the builder it replaced (the whole tree
 * built with asn1js, test/helpers/leaf-reference.ts): the same bytes for the
 * same inputs, over CA key types, subjects, SANs, serials, dates and device
 * keys. And the request's signature checked with the key parsing made (also
 * after it crossed a thread boundary) against the key decoded again from the
 * SPKI, as before: the same answer for every request of the corpus.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel } from "node:worker_threads";
import { webcrypto } from "node:crypto";
import { describe, expect, it } from "vitest";
import { x509 } from "../../../src/app/pki/x509.js";
import { assembleCertificate, buildTbs, encodeIssuer } from "../../../src/app/pki/leaf.js";
import { readDer } from "../../../src/app/pki/der.js";
import {
  parseCsr,
  signedRequest,
  verifyCsrSignature,
  verifyCsrSignatureOffThread,
  type SignedRequest,
} from "../../../src/app/pki/csr.js";
import type { KeyType } from "../../../src/domain/keys.js";
import type { SubjectEntry } from "../../../src/domain/csr-policy.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import * as reference from "../../helpers/leaf-reference.js";

type Pair = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]["keys"];
const ALGORITHMS: Record<string, { name: string; [k: string]: unknown }> = {
  "ec-p256": { name: "ECDSA", namedCurve: "P-256" },
  "ec-p384": { name: "ECDSA", namedCurve: "P-384" },
  "rsa-2048": {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
};

/** A CA certificate of `keyType`, with or without its subject key identifier. */
async function caCert(keyType: KeyType, name: string, withSki: boolean): Promise<Uint8Array> {
  const alg = ALGORITHMS[keyType]!;
  const keys = (await webcrypto.subtle.generateKey(alg as never, false, [
    "sign",
    "verify",
  ])) as Pair;
  const signingAlgorithm =
    alg.name === "ECDSA" ? { ...alg, hash: keyType === "ec-p384" ? "SHA-384" : "SHA-256" } : alg;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: "0a1b",
      name,
      notBefore: new Date("2024-01-01T00:00:00Z"),
      notAfter: new Date("2060-01-01T00:00:00Z"),
      keys,
      signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        ...(withSki ? [await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)] : []),
      ],
    },
    webcrypto,
  );
  return new Uint8Array(cert.rawData);
}

const long = "ü-Ω-" + "x".repeat(150);
const SUBJECTS: SubjectEntry[][] = [
  [{ type: "CN", value: "dev-1" }],
  [
    { type: "C", value: "DE" },
    { type: "O", value: "Linesign Development" },
    { type: "OU", value: "Line 3" },
    { type: "CN", value: "Gerät-7" },
  ],
  [
    { type: "DC", value: "example" },
    { type: "emailAddress", value: "ops@example.com" },
    { type: "serialNumber", value: "SN-0001" },
    { type: "CN", value: long },
  ],
];
const SANS: { type: "uri" | "dns"; value: string }[][] = [
  [],
  [{ type: "uri", value: "urn:linesign:dev:device:dev-1" }],
  [
    { type: "dns", value: "dev-1.devices.example" },
    { type: "uri", value: "urn:x:" + "y".repeat(200) },
    { type: "dns", value: "b.example" },
  ],
];
const SERIALS = ["01", "7f00ff", "1a2b3c4d5e6f708192a3b4c5d6e7f801", "00ff" + "ab".repeat(18)];
const DATES: [Date, Date][] = [
  [new Date("2026-12-02T04:05:06.789Z"), new Date("2029-12-01T04:05:06Z")],
  [new Date("2049-12-31T23:59:59Z"), new Date("2050-01-01T00:00:00Z")],
];

function ecSignature(size: number, seed: number): Uint8Array {
  const sig = new Uint8Array(size * 2);
  for (let i = 0; i < sig.length; i++) sig[i] = (seed * 31 + i * 17) & 0xff;
  // Leading zeros and high bits in r and s, which the formatter trims or pads.
  if (seed % 2 === 0) sig[0] = 0;
  else sig[0] = 0x80;
  if (seed % 3 === 0) sig[size] = 0;
  // Two leading zeros; a zero before a high bit (the pad octet must stay).
  if (seed % 5 === 0) sig[1] = 0;
  if (seed % 7 === 1) [sig[size], sig[size + 1]] = [0, 0x80];
  return sig;
}

describe("the certificate template", () => {
  it("writes the same bytes as the whole-tree builder, strict DER, for varied inputs", async () => {
    const cas: [KeyType, Uint8Array][] = [
      ["ec-p256", await caCert("ec-p256", "CN=Line ICA, O=Linesign, C=DE", true)],
      ["ec-p384", await caCert("ec-p384", "CN=P-384 ICA", false)],
      ["rsa-2048", await caCert("rsa-2048", "CN=RSA ICA, OU=Ops, O=Linesign", true)],
    ];
    const devices = [deviceKey("ec-p256"), deviceKey("ec-p384"), deviceKey("rsa-2048")].map((key) =>
      parseCsr(makeCsr({ key, subject: [["CN", "d"]] })),
    );
    let compared = 0;
    for (const [keyType, certDer] of cas) {
      const mine = encodeIssuer(certDer, keyType);
      const theirs = reference.encodeIssuer(certDer, keyType);
      let n = 0;
      for (const device of devices)
        for (const subject of SUBJECTS)
          for (const sans of SANS) {
            n++;
            const [notBefore, notAfter] = DATES[n % DATES.length]!;
            const params = {
              serialHex: SERIALS[n % SERIALS.length]!,
              subject,
              spki: device.spki,
              publicKeyBits: device.publicKeyBits,
              rsaKey: device.key.kind === "rsa",
              notBefore,
              notAfter,
              sans,
            };
            const tbs = buildTbs(mine, params);
            const old = reference.buildTbs(theirs, params);
            expect(Buffer.from(tbs).toString("hex")).toBe(Buffer.from(old.der).toString("hex"));
            const signature = keyType.startsWith("ec")
              ? ecSignature(keyType === "ec-p384" ? 48 : 32, n)
              : new Uint8Array(256).fill(n);
            const cert = assembleCertificate(mine, tbs, signature);
            expect(Buffer.from(cert).toString("hex")).toBe(
              Buffer.from(reference.assembleCertificate(theirs, old.tbs, signature)).toString(
                "hex",
              ),
            );
            expect(readDer(cert).end).toBe(cert.length);
            compared++;
          }
    }
    expect(compared).toBe(81);
  });

  it("wraps no signature that is not of the CA key's length, whatever signed it", async () => {
    const device = parseCsr(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "d"]] }));
    for (const [keyType, octets] of [
      ["ec-p256", 64],
      ["rsa-2048", 256],
    ] as const) {
      const issuer = encodeIssuer(await caCert(keyType, "CN=Some ICA", true), keyType);
      const tbs = buildTbs(issuer, {
        serialHex: SERIALS[0]!,
        subject: [{ type: "CN", value: "d" }],
        spki: device.spki,
        publicKeyBits: device.publicKeyBits,
        rsaKey: false,
        notBefore: DATES[0]![0],
        notAfter: DATES[0]![1],
        sans: [],
      });
      for (const length of [0, octets - 1, octets + 8]) {
        expect(() => assembleCertificate(issuer, tbs, new Uint8Array(length).fill(1))).toThrow(
          expect.objectContaining({
            code: "HSM_ERROR",
            details: { returnedOctets: length, expectedOctets: octets },
          }),
        );
      }
      expect(
        readDer(assembleCertificate(issuer, tbs, new Uint8Array(octets).fill(1))).end,
      ).toBeGreaterThan(0);
    }
  });
});

const corpusDir = fileURLToPath(new URL("../../../fixtures/csr-corpus/", import.meta.url));

/** What checking a request's signature answers: "ok" or the refusal's code. */
function answer(req: SignedRequest): string {
  try {
    verifyCsrSignature(req);
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** The same check on libuv's thread pool, as the issuance engine runs it. */
async function answerOffThread(req: SignedRequest): Promise<string> {
  try {
    await verifyCsrSignatureOffThread(req);
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** The request as it reaches the main thread from the worker pool (structured clone). */
async function acrossThreads(req: SignedRequest): Promise<SignedRequest> {
  const { port1, port2 } = new MessageChannel();
  const got = new Promise<SignedRequest>((resolve) =>
    port2.once("message", (m: SignedRequest) => resolve(m)),
  );
  port1.postMessage(req);
  const m = await got;
  port1.close();
  return m;
}

describe("the request's signature checked with the key parsing made", () => {
  it("answers as the key decoded again from the SPKI does, on and off the thread, for the corpus and a bad signature", async () => {
    const requests: Uint8Array[] = readdirSync(corpusDir)
      .filter((f) => f.endsWith(".pem") || f.endsWith(".der"))
      .map((f) => new Uint8Array(readFileSync(join(corpusDir, f))));
    const key = deviceKey("ec-p256");
    requests.push(
      makeCsr({ key, subject: [["CN", "bad"]], corruptSignature: true }),
      makeCsr({ key: deviceKey("rsa-2048"), subject: [["CN", "bad"]], corruptSignature: true }),
    );
    const answers = new Map<string, number>();
    let checked = 0;
    for (const bytes of requests) {
      let csr;
      try {
        csr = parseCsr(bytes);
      } catch {
        continue; // refused before its signature is looked at
      }
      const req = signedRequest(csr);
      const { publicKey, ...decodedAgain } = req;
      const before = answer(decodedAgain);
      expect(answer(req)).toBe(before);
      const crossed = await acrossThreads(req);
      expect(crossed.publicKey === undefined).toBe(publicKey === undefined);
      expect(answer(crossed)).toBe(before);
      expect(await answerOffThread(crossed)).toBe(before);
      expect(await answerOffThread(decodedAgain)).toBe(before);
      answers.set(before, (answers.get(before) ?? 0) + 1);
      checked++;
    }
    expect(checked).toBeGreaterThan(35);
    // Both corrupted requests, and the corpus's own bad signature, are refused.
    expect(answers.get("CSR_SIGNATURE_INVALID")).toBeGreaterThanOrEqual(3);
    expect(answers.get("ok")).toBeGreaterThan(10);
  });
});
