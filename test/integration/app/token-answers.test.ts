/**
 * A token that answers C_Sign with a signature of the wrong length (a truncated
 * one, an empty one, an ECDSA signature in DER instead of r||s), through a
 * PKCS#11 proxy over SoftHSM2: a refusal with an HSM code that names the token,
 * what it returned and what was expected; nothing committed, no certificate out,
 * the failure in the log like other HSM failures; and normal signing again as
 * soon as the token answers rightly, on the same open station.
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";
import { refusal } from "../../helpers/refusal.js";
import { buildSignProxy, type SignAnswer } from "../../helpers/sign-proxy.js";
import { stationCount } from "../../helpers/db-rows.js";

const proxy = buildSignProxy();
let es: EngineStation;
let s: Station;
let n = 0;

const csr = () => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `answer-${++n}`]] });
const count = (table: string): number => stationCount(es.home, table);

/** Issues on `profile` and checks the certificate's signature with its CA's key. */
async function issuesRightly(profile: string, ca: string): Promise<void> {
  const out = await s.issuance.issue({ csr: csr(), profile, origin: "test" });
  const caCert = new X509Certificate(Buffer.from(s.ctx.store.getCa(ca)!.certDer!));
  const cert = new X509Certificate(Buffer.from(out.issuance.certDer));
  expect(
    cert.verify(createPublicKey(caCert.publicKey.export({ format: "pem", type: "spki" }))),
  ).toBe(true);
}

beforeAll(async () => {
  // The whole station, its making included, runs on the proxy (answering rightly until told).
  process.env.LINESIGN_PKCS11_MODULE = proxy.module;
  es = await engineStation({ rsa: { ca: "rsa-ica", validityDays: 30 } });
  s = es.open();
  await s.ca.create({
    label: "rsa-root",
    keyType: "rsa-2048",
    subject: "CN=RSA Root",
    signing: { mode: "self-signed" },
  });
  await s.ca.create({
    label: "rsa-ica",
    keyType: "rsa-2048",
    subject: "CN=RSA ICA",
    signing: { mode: "root", rootLabel: "rsa-root" },
  });
});

afterAll(async () => {
  proxy.answer("pass");
  await s?.close();
  delete process.env.LINESIGN_PKCS11_MODULE;
});

const cases: {
  profile: string;
  ca: string;
  answer: SignAnswer;
  returned: RegExp;
  expected: string;
}[] = [
  {
    profile: "default",
    ca: "dev-ica",
    answer: "truncate",
    returned: /63 octets/,
    expected: "64 octets",
  },
  {
    profile: "default",
    ca: "dev-ica",
    answer: "empty",
    returned: /no octets/,
    expected: "64 octets",
  },
  {
    profile: "default",
    ca: "dev-ica",
    answer: "der",
    returned: /7\d octets.*DER/,
    expected: "64 octets",
  },
  {
    profile: "rsa",
    ca: "rsa-ica",
    answer: "truncate",
    returned: /255 octets/,
    expected: "256 octets",
  },
  { profile: "rsa", ca: "rsa-ica", answer: "empty", returned: /no octets/, expected: "256 octets" },
];

describe("a token that answers C_Sign with a signature of the wrong length", () => {
  it.each(cases)(
    "$ca, answering $answer: refused with HSM_ERROR naming the token, nothing committed, then signs again",
    async ({ profile, ca, answer, returned, expected }) => {
      await issuesRightly(profile, ca);
      const before = { issued: count("issuances"), rejected: count("rejections") };
      proxy.answer(answer);
      let e: Awaited<ReturnType<typeof refusal>>;
      try {
        e = await refusal(s.issuance.issue({ csr: csr(), profile, origin: "test" }));
      } finally {
        proxy.answer("pass");
      }
      expect(e.code).toBe("HSM_ERROR");
      expect(e.message).toContain('Token "linesign-dev"');
      expect(e.message).toMatch(returned);
      expect(e.message).toContain(expected);
      // What to do.
      expect(e.message).toMatch(/module|firmware/);
      expect(count("issuances")).toBe(before.issued);
      expect(count("rejections")).toBe(before.rejected + 1);
      const ev = [...s.ctx.store.events()].at(-1)!;
      expect(ev).toMatchObject({
        action: "issuance.reject",
        outcome: "failed",
        code: "HSM_ERROR",
        message: e.message,
      });
      await issuesRightly(profile, ca);
      expect(count("issuances")).toBe(before.issued + 1);
    },
  );
});
