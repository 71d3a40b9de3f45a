/**
 * A token that goes away and comes back (its storage moved away for 3 s, as
 * a USB HSM re-plugged or a network HSM restarting): signing waits, finds its
 * objects again, logs in again and resumes, with no CKR_OBJECT_HANDLE_INVALID
 * for every later signature; a token that stays away fails clearly.
 */
import { createPublicKey, verify } from "node:crypto";
import { renameSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pkcs11KeyStore } from "../../../src/adapters/pkcs11/key-store.js";
import { LinesignError } from "../../../src/domain/errors.js";
import type { KeyInfo } from "../../../src/domain/ports.js";
import { SOFTHSM_MODULE, countingPins, tempSoftHsm } from "../../helpers/softhsm.js";

const hsm = tempSoftHsm();
const tokens = join(hsm.dir, "tokens");
const away = join(hsm.dir, "tokens-away");
const states: string[] = [];
let onAbsent: (() => void) | null = null;
let store: Pkcs11KeyStore;
let key: KeyInfo;

const verifies = (message: Buffer, sig: Uint8Array): boolean =>
  verify(
    "sha256",
    message,
    {
      key: createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" }),
      dsaEncoding: "ieee-p1363",
    },
    sig,
  );

beforeAll(async () => {
  process.env.SOFTHSM2_CONF = hsm.conf;
  store = new Pkcs11KeyStore(SOFTHSM_MODULE, async () => "246810", null, {
    absentWaitMs: 20_000,
    pollMs: 100,
    onTokenState: (_token, state) => {
      states.push(state);
      if (state === "absent") onAbsent?.();
    },
  });
  store.initToken("moving", "13572468", "246810");
  key = await store.generateKeyPair("moving", "ca", "ec-p256");
});

afterAll(() => store?.close());

describe("a token whose storage goes away for 3 s", () => {
  it("pauses signing while it is absent, then finds the key again and resumes", async () => {
    const signer = await store.signer(key.uri);
    expect(verifies(Buffer.from("before"), await signer.sign(Buffer.from("before")))).toBe(true);
    // The absent token is put back 3 s after the station noticed it was gone.
    onAbsent = () => setTimeout(() => renameSync(away, tokens), 3000);
    renameSync(tokens, away);
    const message = Buffer.from("while it was away");
    const sig = await signer.sign(message);
    expect(verifies(message, sig)).toBe(true);
    expect(states).toEqual(["lost", "absent", "back"]);
    // No storm: every later signature works at once, with no further recovery.
    for (let i = 0; i < 20; i++) {
      const m = Buffer.from(`after ${i}`);
      expect(verifies(m, await signer.sign(m))).toBe(true);
    }
    expect(states).toEqual(["lost", "absent", "back"]);
  });

  it("a burst of signatures at once while it goes away: one recovery, one PIN, each signature made or refused by name", async () => {
    const counted = countingPins();
    const guard = counted.guard;
    const seen: string[] = [];
    let putBack: (() => void) | null = null;
    const burst = new Pkcs11KeyStore(SOFTHSM_MODULE, async () => "246810", guard, {
      absentWaitMs: 20_000,
      pollMs: 100,
      signSessions: 2,
      onTokenState: (_token, state) => {
        seen.push(state);
        if (state === "absent") putBack?.();
      },
    });
    try {
      const signer = await burst.signer(key.uri);
      expect(verifies(Buffer.from("first"), await signer.sign(Buffer.from("first")))).toBe(true);
      expect(counted.pins).toBe(1);
      putBack = () => setTimeout(() => renameSync(away, tokens), 1000);
      const messages = Array.from({ length: 12 }, (_, i) => Buffer.from(`burst ${i}`));
      const signs = messages.map((m) => signer.sign(m));
      // Gone while the first two are on the token's threads and ten wait for a session.
      renameSync(tokens, away);
      const results = await Promise.allSettled(signs);
      results.forEach((r, i) => {
        if (r.status === "fulfilled") expect(verifies(messages[i]!, r.value)).toBe(true);
        else {
          expect(r.reason).toBeInstanceOf(LinesignError);
          expect(["HSM_TOKEN_NOT_FOUND", "HSM_ERROR"]).toContain((r.reason as LinesignError).code);
        }
      });
      expect(results.filter((r) => r.status === "fulfilled").length).toBeGreaterThan(0);
      // One login after the one recovery, however many signatures waited for it.
      expect(counted.pins).toBe(2);
      expect(seen).toEqual(["lost", "absent", "back"]);
      const after = await Promise.all(messages.map((m) => signer.sign(m)));
      after.forEach((sig, i) => expect(verifies(messages[i]!, sig)).toBe(true));
      expect(counted.pins).toBe(2);
      expect(seen).toEqual(["lost", "absent", "back"]);
    } finally {
      await burst.close();
    }
  });

  it("fails clearly, naming the token, when it does not come back", async () => {
    const quick = new Pkcs11KeyStore(SOFTHSM_MODULE, async () => "246810", null, {
      absentWaitMs: 1000,
      pollMs: 100,
    });
    try {
      const signer = await quick.signer(key.uri);
      renameSync(tokens, away);
      let err: unknown = null;
      try {
        await signer.sign(Buffer.from("into the void"));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LinesignError);
      expect((err as LinesignError).code).toBe("HSM_TOKEN_NOT_FOUND");
      expect((err as LinesignError).message).toContain(
        'Token "moving" went away and did not come back',
      );
    } finally {
      renameSync(away, tokens);
      quick.close();
    }
  });
});
