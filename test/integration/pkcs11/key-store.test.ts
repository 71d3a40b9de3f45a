import { createPublicKey, verify } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pkcs11js from "pkcs11js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pkcs11KeyStore } from "../../../src/adapters/pkcs11/key-store.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { KEY_TYPES, type KeyType } from "../../../src/domain/keys.js";
import { parsePkcs11Uri } from "../../../src/domain/pkcs11-uri.js";
import type { KeyInfo } from "../../../src/domain/ports.js";
import { SOFTHSM_MODULE, tempSoftHsm } from "../../helpers/softhsm.js";

const USER_PIN = "user-pin-4711";
const SO_PIN = "so-pin-0815";
const hsm = tempSoftHsm();
let store: Pkcs11KeyStore;
const keys = new Map<KeyType, KeyInfo>();

async function caught(p: Promise<unknown> | (() => unknown)): Promise<LinesignError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("expected a LinesignError");
}

beforeAll(async () => {
  // SoftHSM reads SOFTHSM2_CONF at C_Initialize: set it before the module loads in this process.
  process.env.SOFTHSM2_CONF = hsm.conf;
  store = new Pkcs11KeyStore(SOFTHSM_MODULE, async (label) =>
    label === "station" ? USER_PIN : "wrong-pin",
  );
  store.initToken("station", SO_PIN, USER_PIN);
  store.initToken("other", SO_PIN, USER_PIN);
  for (const t of KEY_TYPES) keys.set(t, await store.generateKeyPair("station", `ca-${t}`, t));
});

afterAll(() => store?.close());

describe("PKCS#11 key store on a real SoftHSM2 token", () => {
  it("finds tokens by label", () => {
    expect(
      store
        .listTokens()
        .map((t) => t.label)
        .sort(),
    ).toEqual(["other", "station"]);
  });

  it.each(KEY_TYPES)("generates a %s key in the token, named by an RFC 7512 URI", async (t) => {
    const key = keys.get(t)!;
    expect(key.keyType).toBe(t);
    const uri = parsePkcs11Uri(key.uri);
    expect(uri).toMatchObject({ token: "station", object: `ca-${t}`, type: "private" });
    expect(uri.id).toMatch(/^[0-9a-f]{32}$/);
    const spki = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
    if (t.startsWith("ec"))
      expect(spki.asymmetricKeyDetails?.namedCurve).toBe(
        t === "ec-p256" ? "prime256v1" : "secp384r1",
      );
    else expect(spki.asymmetricKeyDetails?.modulusLength).toBe(t === "rsa-2048" ? 2048 : 3072);
    // Found again by URI, and by label alone.
    expect(Buffer.from((await store.findKey(key.uri))!.spki)).toEqual(Buffer.from(key.spki));
    expect((await store.findKey(`pkcs11:token=station;object=ca-${t}`))!.uri).toBe(key.uri);
  });

  it.each(KEY_TYPES)(
    "signs with the %s key inside the token; node verifies the signature",
    async (t) => {
      const signer = await store.signer(keys.get(t)!.uri);
      const message = Buffer.from(`to be signed by ${t}`);
      const sig = await signer.sign(message);
      const pub = createPublicKey({
        key: Buffer.from(signer.key.spki),
        format: "der",
        type: "spki",
      });
      const hash = t === "ec-p384" ? "sha384" : "sha256";
      const opts = t.startsWith("ec") ? { key: pub, dsaEncoding: "ieee-p1363" as const } : pub;
      expect(verify(hash, message, opts, sig)).toBe(true);
      expect(verify(hash, Buffer.from("something else"), opts, sig)).toBe(false);
    },
  );

  it.each(["ec-p256", "rsa-2048"] as const)(
    "signs 24 messages at once with the %s key on its signing sessions, beside the event loop; every signature verifies",
    async (t) => {
      const signer = await store.signer(keys.get(t)!.uri);
      const messages = Array.from({ length: 24 }, (_, i) => Buffer.from(`at once ${t} ${i}`));
      // The event loop turns while the signatures run on other threads.
      let turns = 0;
      let signing = true;
      const turn = (): void => {
        turns++;
        if (signing) setImmediate(turn);
      };
      setImmediate(turn);
      const sigs = await Promise.all(messages.map((m) => signer.sign(m)));
      signing = false;
      expect(turns).toBeGreaterThan(0);
      const pub = createPublicKey({
        key: Buffer.from(signer.key.spki),
        format: "der",
        type: "spki",
      });
      const opts = t === "ec-p256" ? { key: pub, dsaEncoding: "ieee-p1363" as const } : pub;
      messages.forEach((m, i) => expect(verify("sha256", m, opts, sigs[i]!)).toBe(true));
    },
  );

  it("close() waits for the signatures in flight, then ends every session it opened", async () => {
    const { lib } = await store.rawSession("station");
    const closing = new Pkcs11KeyStore(SOFTHSM_MODULE, async () => USER_PIN, null, {
      signSessions: 2,
    });
    const signer = await closing.signer(keys.get("rsa-2048")!.uri);
    // Two at once open both signing sessions.
    await Promise.all([signer.sign(Buffer.from("a")), signer.sign(Buffer.from("b"))]);
    const before = liveSessions(lib);
    const messages = Array.from({ length: 6 }, (_, i) => Buffer.from(`in flight ${i}`));
    const order: string[] = [];
    const signs = messages.map((m, i) =>
      signer.sign(m).then((sig) => {
        order.push(`sign ${i}`);
        return sig;
      }),
    );
    const closed = closing.close().then(() => order.push("closed"));
    const sigs = await Promise.all(signs);
    await closed;
    expect(order.at(-1)).toBe("closed");
    expect(order).toHaveLength(7);
    const pub = createPublicKey({ key: Buffer.from(signer.key.spki), format: "der", type: "spki" });
    messages.forEach((m, i) => expect(verify("sha256", m, pub, sigs[i]!)).toBe(true));
    // Its main session and both signing sessions are gone; the other store's are not.
    const after = liveSessions(lib);
    expect([...before].filter((h) => !after.has(h))).toHaveLength(3);
    expect([...after].filter((h) => !before.has(h))).toEqual([]);
    expect((await caught(signer.sign(Buffer.from("after close")))).code).toBe("HSM_ERROR");
    // The module stays usable for the store still open.
    const again = await store.signer(keys.get("ec-p256")!.uri);
    expect(
      verify(
        "sha256",
        Buffer.from("x"),
        {
          key: createPublicKey({ key: Buffer.from(again.key.spki), format: "der", type: "spki" }),
          dsaEncoding: "ieee-p1363",
        },
        await again.sign(Buffer.from("x")),
      ),
    ).toBe(true);
  });

  it.each(KEY_TYPES)(
    "keeps the %s private key sensitive, never extractable and sign-only",
    async (t) => {
      const { lib, session } = await store.rawSession("station");
      const priv = findPrivate(lib, session, `ca-${t}`);
      const attrs = lib.C_GetAttributeValue(session, priv, [
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_PRIVATE },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_SIGN },
        { type: pkcs11js.CKA_DECRYPT },
        { type: pkcs11js.CKA_UNWRAP },
        { type: pkcs11js.CKA_DERIVE },
      ]);
      const flags = attrs.map((a) => (a.value as Buffer)[0]);
      expect(flags).toEqual([1, 1, 1, 1, 0, 1, 1, 0, 0, 0]);
    },
  );

  it.each(KEY_TYPES)(
    "refuses to reveal the %s private key: CKR_ATTRIBUTE_SENSITIVE and CKR_KEY_UNEXTRACTABLE",
    async (t) => {
      const { lib, session } = await store.rawSession("station");
      const priv = findPrivate(lib, session, `ca-${t}`);
      const secret = t.startsWith("ec") ? pkcs11js.CKA_VALUE : pkcs11js.CKA_PRIVATE_EXPONENT;
      expect(() => lib.C_GetAttributeValue(session, priv, [{ type: secret }])).toThrowError(
        expect.objectContaining({ code: pkcs11js.CKR_ATTRIBUTE_SENSITIVE }),
      );
      const wrapping = lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_WRAP, value: true },
      ]);
      expect(() =>
        lib.C_WrapKey(
          session,
          { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD },
          wrapping,
          priv,
          Buffer.alloc(8192),
        ),
      ).toThrowError(expect.objectContaining({ code: pkcs11js.CKR_KEY_UNEXTRACTABLE }));
    },
  );

  it("never overwrites a key: a taken label is refused", async () => {
    const e = await caught(store.generateKeyPair("station", "ca-ec-p256", "ec-p256"));
    expect(e.code).toBe("CA_LABEL_EXISTS");
    const { lib, session } = await store.rawSession("station");
    lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_LABEL, value: "ca-ec-p256" },
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    ]);
    const found = lib.C_FindObjects(session, 10);
    lib.C_FindObjectsFinal(session);
    expect(found).toHaveLength(1);
  });

  it("maps a wrong PIN to HSM_PIN_INCORRECT without the PIN in the message", async () => {
    const e = await caught(store.generateKeyPair("other", "x", "ec-p256"));
    expect(e.code).toBe("HSM_PIN_INCORRECT");
    expect(e.message).not.toContain("wrong-pin");
    expect(JSON.stringify(e.details)).not.toContain("wrong-pin");
  });

  it("names the tokens present when a label is not found", async () => {
    const e = await caught(store.findKey("pkcs11:token=nope;object=x"));
    expect(e.code).toBe("HSM_TOKEN_NOT_FOUND");
    expect(e.message).toContain('"other"');
    expect(e.message).toContain('"station"');
  });

  it("reports a missing key as HSM_KEY_NOT_FOUND", async () => {
    expect((await caught(store.signer("pkcs11:token=station;object=absent"))).code).toBe(
      "HSM_KEY_NOT_FOUND",
    );
  });

  it("refuses a module path that does not exist, or is not a PKCS#11 library", async () => {
    expect(
      (await caught(() => new Pkcs11KeyStore("/nonexistent/libpkcs11.so", async () => ""))).code,
    ).toBe("HSM_MODULE_NOT_FOUND");
    const notALibrary = join(hsm.dir, "not-a-module.so");
    writeFileSync(notALibrary, "this is text, not a shared library");
    const e = await caught(() => new Pkcs11KeyStore(notALibrary, async () => ""));
    expect(e.code).toBe("HSM_MODULE_INVALID");
    expect(e.message).toContain(notALibrary);
    const libz = "/usr/lib/x86_64-linux-gnu/libz.so.1";
    expect((await caught(() => new Pkcs11KeyStore(libz, async () => ""))).code).toBe(
      "HSM_MODULE_INVALID",
    );
  });
});

/** The session handles this process has open on SoftHSM now (its handles are small counters). */
function liveSessions(lib: InstanceType<typeof pkcs11js.PKCS11>): Set<number> {
  const live = new Set<number>();
  for (let h = 1; h <= 512; h++) {
    const handle = Buffer.alloc(8);
    handle.writeBigUInt64LE(BigInt(h));
    try {
      lib.C_GetSessionInfo(handle);
      live.add(h);
    } catch {
      // not a session
    }
  }
  return live;
}

function findPrivate(
  lib: InstanceType<typeof pkcs11js.PKCS11>,
  session: Buffer,
  label: string,
): Buffer {
  lib.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  const [h] = lib.C_FindObjects(session, 1);
  lib.C_FindObjectsFinal(session);
  if (!h) throw new Error(`no private key ${label}`);
  return h;
}
