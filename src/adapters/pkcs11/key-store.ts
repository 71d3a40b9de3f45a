/**
 * KeyStore over a PKCS#11 module (pkcs11js). Tokens are found by label, never
 * by slot number (SoftHSM reassigns slot ids). Keys are generated inside the
 * token as non-extractable, sensitive, sign-only objects and named by RFC 7512
 * URIs. The PIN is asked for lazily, once per token, through the PIN source.
 */
import { createHash, randomBytes } from "node:crypto";
import * as asn1js from "asn1js";
import { LinesignError } from "../../domain/errors.js";
import { isEc, signatureHash, type KeyType } from "../../domain/keys.js";
import { formatPkcs11Uri, parsePkcs11Uri } from "../../domain/pkcs11-uri.js";
import type {
  KeyInfo,
  KeyStore,
  LoginGuard,
  Signer,
  TokenDataStore,
  TokenInfo,
  TokenOfficer,
  TokenProvisioner,
} from "../../domain/ports.js";
import { acquireModule, mapPkcs11Error, pkcs11js, releaseModule, type Pkcs11 } from "./module.js";
import { ecPointToSpki, rsaToSpki, EC_CURVE_OIDS } from "./spki.js";

type Handle = Buffer;

/** Supplies the user PIN for a token; may prompt. Must never log the PIN. */
export type PinSource = (tokenLabel: string) => Promise<string>;

interface OpenToken {
  slot: Handle;
  session: Handle;
  loggedIn: boolean;
}

interface ResolvedKey {
  info: KeyInfo;
  tokenLabel: string;
  privateHandle: Handle;
}

const trim = (s: string): string => s.replace(/[\s\0]+$/, "");

/** CKA_APPLICATION of the station's data objects. */
const APPLICATION = "linesign";

export class Pkcs11KeyStore implements KeyStore, TokenProvisioner, TokenOfficer, TokenDataStore {
  private readonly lib: Pkcs11;
  private readonly tokens = new Map<string, OpenToken>();
  private readonly keys = new Map<string, ResolvedKey>();
  private closed = false;

  /**
   * @param modulePath PKCS#11 module to load (once per process, shared).
   * @param pinSource asked for a token's user PIN the first time a private object is needed.
   * @param guard told of every login attempt; may refuse one (default: none).
   * @throws LinesignError HSM_MODULE_NOT_FOUND, HSM_MODULE_INVALID
   */
  constructor(
    private readonly modulePath: string,
    private readonly pinSource: PinSource,
    private readonly guard: LoginGuard | null = null,
  ) {
    this.lib = acquireModule(modulePath);
  }

  listTokens(): TokenInfo[] {
    try {
      return this.lib.C_GetSlotList(true).flatMap((slot) => {
        const info = this.lib.C_GetTokenInfo(slot);
        if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) return [];
        return [
          {
            label: trim(info.label),
            serial: trim(info.serialNumber),
            manufacturer: trim(info.manufacturerID),
            model: trim(info.model),
          },
        ];
      });
    } catch (e) {
      throw mapPkcs11Error(e, "listing tokens");
    }
  }

  initToken(label: string, soPin: string, userPin: string): void {
    let slot: Handle | undefined;
    try {
      slot = this.lib.C_GetSlotList(true).find((s) => {
        const info = this.lib.C_GetTokenInfo(s);
        return (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0;
      });
    } catch (e) {
      throw mapPkcs11Error(e, "looking for a free slot", label);
    }
    if (!slot) {
      throw new LinesignError(
        "HSM_NO_FREE_SLOT",
        `There is no uninitialised token to create "${label}" in. Free a slot or initialise the token with your HSM's tools.`,
        { details: { token: label } },
      );
    }
    try {
      this.lib.C_InitToken(slot, soPin, label);
      // Slot ids may change after init (SoftHSM reassigns them): find the token again by label.
      const fresh = this.findSlot(label);
      const session = this.lib.C_OpenSession(
        fresh,
        pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
      );
      try {
        this.lib.C_Login(session, pkcs11js.CKU_SO, soPin);
        this.lib.C_InitPIN(session, userPin);
        this.lib.C_Logout(session);
      } finally {
        this.lib.C_CloseSession(session);
      }
    } catch (e) {
      throw mapPkcs11Error(e, `initialising token "${label}"`, label);
    }
  }

  officerReset(tokenLabel: string, soPin: string, newUserPin?: string): void {
    const slot = this.findSlot(tokenLabel);
    let session: Handle | null = null;
    try {
      session = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      this.lib.C_Login(session, pkcs11js.CKU_SO, soPin);
      if (newUserPin !== undefined) this.lib.C_InitPIN(session, newUserPin);
      this.lib.C_Logout(session);
    } catch (e) {
      const err = mapPkcs11Error(
        e,
        `logging in as security officer to token "${tokenLabel}"`,
        tokenLabel,
      );
      if (err.code === "HSM_PIN_INCORRECT") {
        throw new LinesignError(
          "HSM_PIN_INCORRECT",
          `The SO PIN for token "${tokenLabel}" is incorrect. Check LINESIGN_SO_PIN.`,
          {
            cause: e,
            details: err.details,
          },
        );
      }
      throw err;
    } finally {
      if (session) {
        try {
          this.lib.C_CloseSession(session);
        } catch {
          // the session is gone either way
        }
      }
    }
  }

  async readData(tokenLabel: string, label: string): Promise<Uint8Array[]> {
    const { session } = await this.open(tokenLabel);
    try {
      return this.findData(session, label).map((obj) => {
        const [value] = this.lib.C_GetAttributeValue(session, obj, [{ type: pkcs11js.CKA_VALUE }]);
        return new Uint8Array(value?.value as Buffer);
      });
    } catch (e) {
      throw mapPkcs11Error(e, `reading data object "${label}"`, tokenLabel);
    }
  }

  async writeData(tokenLabel: string, label: string, value: Uint8Array): Promise<void> {
    const { session } = await this.open(tokenLabel);
    try {
      const old = this.findData(session, label);
      // Tokens may refuse to modify CKA_VALUE (SoftHSM does): create the new object first,
      // then remove the old, so a crash in between leaves two values, never none.
      this.lib.C_CreateObject(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        // Private: reading or replacing it needs the user PIN, like the keys.
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from(value) },
      ]);
      for (const obj of old) this.lib.C_DestroyObject(session, obj);
    } catch (e) {
      throw mapPkcs11Error(e, `writing data object "${label}"`, tokenLabel);
    }
  }

  private findData(session: Handle, label: string): Handle[] {
    this.lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    try {
      return this.lib.C_FindObjects(session, 16);
    } finally {
      this.lib.C_FindObjectsFinal(session);
    }
  }

  async generateKeyPair(tokenLabel: string, label: string, keyType: KeyType): Promise<KeyInfo> {
    const { session } = await this.open(tokenLabel);
    if (this.findObjects(session, pkcs11js.CKO_PRIVATE_KEY, { label }).length > 0) {
      throw new LinesignError(
        "CA_LABEL_EXISTS",
        `Token "${tokenLabel}" already holds a key labelled "${label}". Keys are never overwritten: choose another label.`,
        { details: { token: tokenLabel, label } },
      );
    }
    const id = randomBytes(16);
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: id },
    ];
    const publicTmpl = [
      ...common,
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
    ];
    // Sign-only and never extractable; SoftHSM defaults some of DECRYPT/UNWRAP/DERIVE to true.
    const privateTmpl = [
      ...common,
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    let mechanism: number;
    if (isEc(keyType)) {
      mechanism = pkcs11js.CKM_EC_KEY_PAIR_GEN;
      const oid = new asn1js.ObjectIdentifier({
        value: EC_CURVE_OIDS[keyType as "ec-p256" | "ec-p384"],
      });
      publicTmpl.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(oid.toBER()) as never });
      publicTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC as never });
      privateTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC as never });
    } else {
      mechanism = pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN;
      const bits = keyType === "rsa-2048" ? 2048 : 3072;
      publicTmpl.push({ type: pkcs11js.CKA_MODULUS_BITS, value: bits as never });
      publicTmpl.push({
        type: pkcs11js.CKA_PUBLIC_EXPONENT,
        value: Buffer.from([1, 0, 1]) as never,
      });
      publicTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA as never });
      privateTmpl.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA as never });
    }
    try {
      this.lib.C_GenerateKeyPair(session, { mechanism }, publicTmpl, privateTmpl);
    } catch (e) {
      throw mapPkcs11Error(e, `generating a ${keyType} key in token "${tokenLabel}"`, tokenLabel);
    }
    const uri = formatPkcs11Uri({ token: tokenLabel, object: label, id: id.toString("hex") });
    const resolved = await this.resolve(uri);
    if (!resolved)
      throw new LinesignError(
        "HSM_ERROR",
        `The key just generated in "${tokenLabel}" cannot be found.`,
      );
    return resolved.info;
  }

  async findKey(uri: string): Promise<KeyInfo | null> {
    return (await this.resolve(uri))?.info ?? null;
  }

  async signer(uri: string): Promise<Signer> {
    const resolved = await this.resolve(uri);
    if (!resolved) {
      const parsed = parsePkcs11Uri(uri);
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `Token "${parsed.token}" has no private key "${parsed.object}". The CA's key is missing from the HSM: ` +
          `check that the right token is connected.`,
        { details: { uri } },
      );
    }
    const { info, tokenLabel } = resolved;
    const hash = signatureHash(info.keyType) === "SHA-384" ? "sha384" : "sha256";
    const lib = this.lib;
    // After a logout the private handle is gone: look it up again (which logs in again).
    const current = async (): Promise<{ session: Handle; privateHandle: Handle }> => {
      const token = this.tokens.get(tokenLabel);
      const cached = this.keys.get(uri);
      if (token?.loggedIn && cached)
        return { session: token.session, privateHandle: cached.privateHandle };
      const again = await this.resolve(uri);
      const reopened = this.tokens.get(tokenLabel);
      if (!again || !reopened)
        throw new LinesignError("HSM_KEY_NOT_FOUND", `The key "${uri}" is no longer in the token.`);
      return { session: reopened.session, privateHandle: again.privateHandle };
    };
    const outLength =
      info.keyType === "ec-p256"
        ? 64
        : info.keyType === "ec-p384"
          ? 96
          : info.keyType === "rsa-2048"
            ? 256
            : 384;
    const ec = isEc(info.keyType);
    const rsaMechanism =
      hash === "sha384" ? pkcs11js.CKM_SHA384_RSA_PKCS : pkcs11js.CKM_SHA256_RSA_PKCS;
    return {
      key: info,
      sign: async (message: Uint8Array): Promise<Uint8Array> => {
        const { session, privateHandle } = await current();
        try {
          // SoftHSM 2.6 has no CKM_ECDSA_SHA256: hash here, let the token sign the digest.
          if (ec) {
            const digest = createHash(hash).update(message).digest();
            lib.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, privateHandle);
            return new Uint8Array(lib.C_Sign(session, digest, Buffer.alloc(outLength)));
          }
          lib.C_SignInit(session, { mechanism: rsaMechanism }, privateHandle);
          return new Uint8Array(lib.C_Sign(session, Buffer.from(message), Buffer.alloc(outLength)));
        } catch (e) {
          throw mapPkcs11Error(e, `signing with key "${uri}"`, tokenLabel);
        }
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.tokens.values()) {
      try {
        this.lib.C_CloseSession(t.session);
      } catch {
        // closing is best effort; finalise below ends everything anyway
      }
    }
    this.tokens.clear();
    this.keys.clear();
    releaseModule(this.modulePath);
  }

  async login(tokenLabel: string): Promise<void> {
    await this.open(tokenLabel);
  }

  logout(tokenLabel: string): void {
    const token = this.tokens.get(tokenLabel);
    if (!token?.loggedIn) return;
    token.loggedIn = false;
    // Private object handles end with the login; resolve them again after the next one.
    for (const [uri, key] of this.keys) if (key.tokenLabel === tokenLabel) this.keys.delete(uri);
    try {
      this.lib.C_Logout(token.session);
    } catch (e) {
      if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_USER_NOT_LOGGED_IN))
        throw mapPkcs11Error(e, `logging out of token "${tokenLabel}"`, tokenLabel);
    }
  }

  /** True when this store holds a logged-in session on the token (no PIN will be asked). */
  loggedIn(tokenLabel: string): boolean {
    return this.tokens.get(tokenLabel)?.loggedIn ?? false;
  }

  /** For tests and HSM checks: the raw module and the session of a logged-in token. */
  async rawSession(tokenLabel: string): Promise<{ lib: Pkcs11; session: Handle }> {
    const t = await this.open(tokenLabel);
    return { lib: this.lib, session: t.session };
  }

  private findSlot(tokenLabel: string): Handle {
    let slots: Handle[];
    try {
      slots = this.lib.C_GetSlotList(true);
    } catch (e) {
      throw mapPkcs11Error(e, "listing slots", tokenLabel);
    }
    for (const slot of slots) {
      const info = this.lib.C_GetTokenInfo(slot);
      if (trim(info.label) === tokenLabel) return slot;
    }
    const present = this.listTokens().map((t) => `"${t.label}"`);
    throw new LinesignError(
      "HSM_TOKEN_NOT_FOUND",
      `No token labelled "${tokenLabel}" is present. ` +
        (present.length > 0
          ? `Tokens present: ${present.join(", ")}. Set pkcs11.tokenLabel (or LINESIGN_TOKEN_LABEL) to one of them.`
          : `No initialised token is present: connect the HSM, or create a development token with "linesign init --dev".`),
      { details: { token: tokenLabel, present: present.length } },
    );
  }

  private async open(tokenLabel: string): Promise<OpenToken> {
    const existing = this.tokens.get(tokenLabel);
    if (existing?.loggedIn) return existing;
    let token = existing;
    if (!token) {
      const slot = this.findSlot(tokenLabel);
      try {
        const info = this.lib.C_GetTokenInfo(slot);
        if (info.flags & pkcs11js.CKF_USER_PIN_LOCKED) {
          throw new LinesignError(
            "HSM_PIN_LOCKED",
            `The PIN of token "${tokenLabel}" is locked after too many wrong attempts. ` +
              `A security officer must unlock it with the SO PIN (see hsm/README.md).`,
            { details: { token: tokenLabel } },
          );
        }
        const session = this.lib.C_OpenSession(
          slot,
          pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
        );
        token = { slot, session, loggedIn: false };
        this.tokens.set(tokenLabel, token);
      } catch (e) {
        throw mapPkcs11Error(e, `opening token "${tokenLabel}"`, tokenLabel);
      }
    }
    this.guard?.beforeLogin(tokenLabel);
    const pin = await this.pinSource(tokenLabel);
    try {
      this.lib.C_Login(token.session, pkcs11js.CKU_USER, pin);
    } catch (e) {
      if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) {
        const err = mapPkcs11Error(e, `logging in to token "${tokenLabel}"`, tokenLabel);
        if (err.code === "HSM_PIN_INCORRECT") this.guard?.loginFailed(tokenLabel);
        throw err;
      }
    }
    this.guard?.loginSucceeded(tokenLabel);
    token.loggedIn = true;
    return token;
  }

  private findObjects(session: Handle, cls: number, by: { label?: string; id?: Buffer }): Handle[] {
    const tmpl: { type: number; value: number | string | Buffer }[] = [
      { type: pkcs11js.CKA_CLASS, value: cls },
    ];
    if (by.label) tmpl.push({ type: pkcs11js.CKA_LABEL, value: by.label });
    if (by.id) tmpl.push({ type: pkcs11js.CKA_ID, value: by.id });
    this.lib.C_FindObjectsInit(session, tmpl);
    try {
      return this.lib.C_FindObjects(session, 16);
    } finally {
      this.lib.C_FindObjectsFinal(session);
    }
  }

  private async resolve(uri: string): Promise<ResolvedKey | null> {
    const cached = this.keys.get(uri);
    if (cached) return cached;
    const parsed = parsePkcs11Uri(uri);
    const { session } = await this.open(parsed.token);
    const by: { label?: string; id?: Buffer } = {};
    if (parsed.id) by.id = Buffer.from(parsed.id, "hex");
    if (parsed.object) by.label = parsed.object;
    try {
      const [priv] = this.findObjects(session, pkcs11js.CKO_PRIVATE_KEY, by);
      if (!priv) return null;
      const idAttr = this.lib.C_GetAttributeValue(session, priv, [{ type: pkcs11js.CKA_ID }])[0]
        ?.value as Buffer;
      const [pub] = this.findObjects(session, pkcs11js.CKO_PUBLIC_KEY, { id: idAttr });
      if (!pub) {
        throw new LinesignError(
          "HSM_KEY_NOT_FOUND",
          `The public half of "${uri}" is missing from the token.`,
        );
      }
      const keyTypeAttr = this.lib.C_GetAttributeValue(session, pub, [
        { type: pkcs11js.CKA_KEY_TYPE },
      ])[0]?.value as Buffer;
      // CK_ULONG: 8 bytes on 64-bit platforms, 4 on some others (little-endian here).
      const ckk =
        keyTypeAttr.length >= 8
          ? Number(keyTypeAttr.readBigUInt64LE(0))
          : keyTypeAttr.readUInt32LE(0);
      let info: KeyInfo;
      const canonicalUri = formatPkcs11Uri({
        token: parsed.token,
        object: parsed.object,
        id: idAttr.toString("hex"),
      });
      if (ckk === pkcs11js.CKK_EC) {
        const [params, point] = this.lib.C_GetAttributeValue(session, pub, [
          { type: pkcs11js.CKA_EC_PARAMS },
          { type: pkcs11js.CKA_EC_POINT },
        ]);
        const { keyType, spki } = ecPointToSpki(params?.value as Buffer, point?.value as Buffer);
        info = { uri: canonicalUri, keyType, spki };
      } else if (ckk === pkcs11js.CKK_RSA) {
        const [modulus, exponent] = this.lib.C_GetAttributeValue(session, pub, [
          { type: pkcs11js.CKA_MODULUS },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT },
        ]);
        const { keyType, spki } = rsaToSpki(modulus?.value as Buffer, exponent?.value as Buffer);
        info = { uri: canonicalUri, keyType, spki };
      } else {
        throw new LinesignError("KEY_TYPE_UNSUPPORTED", `The key "${uri}" is neither EC nor RSA.`);
      }
      const resolved = { info, tokenLabel: parsed.token, privateHandle: priv };
      this.keys.set(uri, resolved);
      this.keys.set(canonicalUri, resolved);
      return resolved;
    } catch (e) {
      throw mapPkcs11Error(e, `reading key "${uri}"`, parsed.token);
    }
  }
}
