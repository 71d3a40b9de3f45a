/**
 * The signing sessions on a token that holds few sessions at once (an HSM's
 * session limit, through a PKCS#11 proxy over SoftHSM2 that answers
 * CKR_SESSION_COUNT beyond it): signatures asked for at once wait for a
 * session the store has rather than fail, and the PIN is presented once.
 */
import { createPublicKey, verify } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pkcs11KeyStore } from "../../../src/adapters/pkcs11/key-store.js";
import type { KeyInfo } from "../../../src/domain/ports.js";
import { buildSignProxy } from "../../helpers/sign-proxy.js";
import { countingPins, tempSoftHsm } from "../../helpers/softhsm.js";

const proxy = buildSignProxy();
const hsm = tempSoftHsm();
let store: Pkcs11KeyStore;
let key: KeyInfo;
const counted = countingPins();
const guard = counted.guard;

beforeAll(async () => {
  process.env.SOFTHSM2_CONF = hsm.conf;
  store = new Pkcs11KeyStore(proxy.module, async () => "246810", guard, { signSessions: 4 });
  store.initToken("few", "13572468", "246810");
  key = await store.generateKeyPair("few", "ca", "ec-p256");
});

afterAll(async () => {
  proxy.answer("pass");
  await store?.close();
});

describe("a token that holds two sessions at once", () => {
  it("signs eight messages asked for at once on the sessions it has, one PIN", async () => {
    // The store's own session and one more.
    proxy.answer("sessions 2");
    const signer = await store.signer(key.uri);
    const before = counted.pins;
    const messages = Array.from({ length: 8 }, (_, i) => Buffer.from(`message ${i}`));
    const sigs = await Promise.all(messages.map((m) => signer.sign(m)));
    const pub = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
    for (const [i, m] of messages.entries())
      expect(verify("sha256", m, { key: pub, dsaEncoding: "ieee-p1363" }, sigs[i]!)).toBe(true);
    expect(counted.pins - before).toBeLessThanOrEqual(1);
    // And again: the sessions it found it could open are the ones it uses.
    const again = await Promise.all(messages.map((m) => signer.sign(m)));
    expect(again).toHaveLength(8);
    expect(counted.pins - before).toBeLessThanOrEqual(1);
  });
});
