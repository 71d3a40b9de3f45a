/**
 * KeyStore over a PKCS#11 module (pkcs11js). Tokens are found by label (and,
 * where configured, serial number), never by slot number (SoftHSM reassigns
 * slot ids). Keys are generated inside the token from the strictest template
 * it accepts, read back, and named by RFC 7512 URIs; signing uses the
 * mechanism the token offers. The PIN is asked for lazily, once per token,
 * through the PIN source. A lost session or a token that went away for a
 * moment is reopened and logged in again once; then the call fails clearly.
 */
import { randomBytes } from "node:crypto";
import { LinesignError } from "../../domain/errors.js";
import { isEc, KEY_TYPES, type KeyType } from "../../domain/keys.js";
import {
  formatPkcs11Uri,
  formatTokenUri,
  paddedLabel,
  parsePkcs11Uri,
  selectorMatches,
  type TokenSelector,
} from "../../domain/pkcs11-uri.js";
import type {
  KeyCustody,
  KeyInfo,
  KeyStore,
  LoginGuard,
  Signer,
  TokenDataStore,
  TokenInfo,
  TokenRegisterStore,
  TokenOfficer,
  TokenProbe,
  TokenProber,
  TokenProvisioner,
} from "../../domain/ports.js";
import {
  readCustody,
  TEMPLATE_TIERS,
  templates,
  tightenAfterGeneration,
  type TemplateTier,
} from "./custody.js";
import {
  allowedSignMechanisms,
  generationMechanism,
  readMechanisms,
  requireFit,
  signInput,
  signPlan,
  unfitReason,
  type MechanismFact,
  type SignPlan,
} from "./mechanisms.js";
import {
  acquireModule,
  beginThreadCall,
  ckrName,
  mapPkcs11Error,
  moduleGeneration,
  pkcs11js,
  reinitialiseWhenQuiet,
  releaseModule,
  type Pkcs11,
} from "./module.js";
import { defaultSignSessions, SignSessions } from "./sign-sessions.js";
import { ecPointToSpki, rsaToSpki } from "./spki.js";

type Handle = Buffer;
type Pkcs11Template = Parameters<Pkcs11["C_CreateObject"]>[1];

/** Supplies the user PIN for a token; may prompt. Must never log the PIN. */
export type PinSource = (tokenLabel: string) => Promise<string>;

/** What the store tells its owner about a token that went away and came back. */
export type TokenStateListener = (
  tokenLabel: string,
  state: "lost" | "absent" | "back",
  detail: { ckr?: string; waitedMs?: number },
) => void;

export interface Pkcs11StoreOptions {
  /** Extra C_Initialize arguments (NSS softokn's `configdir=...`); default none. */
  libraryParameters?: string;
  /** Tokens selected by more than their label (serial, manufacturer, model); default none. */
  selectors?: TokenSelector[];
  /** How long a token that went away is waited for before a call fails (default 30 s). */
  absentWaitMs?: number;
  /** How often an absent token is looked for (default 200 ms). */
  pollMs?: number;
  onTokenState?: TokenStateListener;
  /**
   * Sessions per token that sign at once, each on a thread of libuv's pool
   * (default: the machine's cores, at most libuv's threads less two).
   */
  signSessions?: number;
}

interface OpenToken {
  slot: Handle;
  session: Handle;
  loggedIn: boolean;
  generation: number;
  /**
   * Private key handles found in this session, by URI; valid in every session
   * of the token (an object handle belongs to the application, not to a session).
   */
  handles: Map<string, Handle>;
  /** The sessions signatures run on, beside the main one. */
  signing: SignSessions;
}

const trim = (s: string): string => s.replace(/[\s\0]+$/, "");

/** CKA_APPLICATION of the station's data objects. */
const APPLICATION = "linesign";

/** Return codes that mean the session, the login or the token went away, not that the request was wrong. */
const LOSS = new Set<number>([
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
]);

function isLoss(e: unknown): e is InstanceType<typeof pkcs11js.Pkcs11Error> {
  return e instanceof pkcs11js.Pkcs11Error && LOSS.has(e.code);
}

/** Errors after which the next, less demanding template is tried (tpm2-pkcs11 answers CKR_GENERAL_ERROR). */
function isTemplateRefusal(e: unknown): boolean {
  if (!(e instanceof pkcs11js.Pkcs11Error)) return false;
  return ![
    pkcs11js.CKR_SESSION_CLOSED,
    pkcs11js.CKR_SESSION_HANDLE_INVALID,
    pkcs11js.CKR_DEVICE_REMOVED,
    pkcs11js.CKR_TOKEN_NOT_PRESENT,
    pkcs11js.CKR_USER_NOT_LOGGED_IN,
    pkcs11js.CKR_PIN_EXPIRED,
    pkcs11js.CKR_DEVICE_MEMORY,
  ].includes(e.code);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ulong(buf: Buffer): number {
  return buf.length >= 8 ? Number(buf.readBigUInt64LE(0)) : buf.readUInt32LE(0);
}

/** CKR_OBJECT_HANDLE_INVALID: an object handle that ended with a login or a module restart. */
const STALE_HANDLE = 0x82;

/** The two slots of a register, named in the objects' CKA_VALUE (which tokens keep read-only). */
const REGISTER_SLOTS = ["#1", "#2"] as const;

export class Pkcs11KeyStore
  implements
    KeyStore,
    TokenProvisioner,
    TokenOfficer,
    TokenDataStore,
    TokenRegisterStore,
    TokenProber
{
  /** Per token and register: the slot objects found, and which slot was written last. */
  private readonly registers = new Map<string, { handles: Handle[]; last: number }>();
  private readonly lib: Pkcs11;
  private readonly tokens = new Map<string, OpenToken>();
  private readonly mechs = new Map<string, Map<number, MechanismFact>>();
  private readonly recovering = new Map<string, Promise<void>>();
  /** A login under way, per token: concurrent callers wait for it rather than present the PIN again. */
  private readonly loggingIn = new Map<string, Promise<OpenToken>>();
  /** Signatures running now (close() waits for them). */
  private readonly signing = new Set<Promise<unknown>>();
  private readonly signSessions: number;
  /**
   * The template each token accepted, per key family: later keys start there
   * (tpm2-pkcs11 leaks a TPM object context with every refused template, and
   * runs out after a few dozen).
   */
  private readonly acceptedTier = new Map<string, number>();
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly absentWaitMs: number;
  private readonly pollMs: number;

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
    private readonly opts: Pkcs11StoreOptions = {},
  ) {
    this.lib = acquireModule(modulePath, opts.libraryParameters);
    this.absentWaitMs = opts.absentWaitMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 200;
    this.signSessions = Math.max(1, Math.floor(opts.signSessions ?? defaultSignSessions()));
  }

  listTokens(): TokenInfo[] {
    try {
      return this.lib.C_GetSlotList(true).flatMap((slot) => {
        const info = this.lib.C_GetTokenInfo(slot);
        if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) return [];
        return [tokenInfoOf(info)];
      });
    } catch (e) {
      throw mapPkcs11Error(e, "listing tokens");
    }
  }

  initToken(label: string, soPin: string, userPin: string): void {
    // 32 bytes, blank-padded: the module reads exactly 32 bytes from the pointer.
    const field = Buffer.from(paddedLabel(label)).toString("utf8");
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
      this.lib.C_InitToken(slot, soPin, field);
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

  /**
   * Stops before the token does: refuses to present `who`'s PIN when the token
   * reports it locked or at its last attempt, or when the station's own guard
   * stopped; otherwise runs `present` and tells the guard how it went. The
   * guard holds the station's lock around the reading of the token's counters
   * and the PIN, so another process cannot spend the last attempt in between.
   */
  private presentPin<T>(
    slot: Handle,
    tokenLabel: string,
    who: "user" | "so",
    present: () => T,
    finalTry = false,
  ): T {
    const attempt = (): T => {
      this.refuseOnCounters(slot, tokenLabel, who, finalTry);
      return present();
    };
    return this.guard
      ? this.guard.present(tokenLabel, who, attempt, (e) => this.isWrongPin(e, tokenLabel))
      : attempt();
  }

  private isWrongPin(e: unknown, tokenLabel: string): boolean {
    return mapPkcs11Error(e, "presenting a PIN", tokenLabel).code === "HSM_PIN_INCORRECT";
  }

  /**
   * C_InitPIN does not reset every token's wrong-PIN counter: opencryptoki 3.8
   * clears CKF_USER_PIN_LOCKED but keeps FINAL_TRY, and its next wrong PIN
   * locks. Where the token still reports a user counter, one login with the PIN
   * just set (so certainly right) resets it.
   * @throws LinesignError HSM_ERROR when the token refuses the PIN it was just given
   */
  private resetUserCounter(slot: Handle, session: Handle, tokenLabel: string, pin: string): void {
    const counting =
      pkcs11js.CKF_USER_PIN_COUNT_LOW |
      pkcs11js.CKF_USER_PIN_FINAL_TRY |
      pkcs11js.CKF_USER_PIN_LOCKED;
    if ((this.tokenFlags(slot, tokenLabel) & counting) === 0) return;
    const login = (): void => {
      try {
        this.lib.C_Login(session, pkcs11js.CKU_USER, pin);
      } catch (e) {
        if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN))
          throw e;
        return;
      }
      this.lib.C_Logout(session);
    };
    try {
      // The officer's reset lifts the station's stop after this: it is not checked here.
      if (this.guard)
        this.guard.present(tokenLabel, "user", login, (e) => this.isWrongPin(e, tokenLabel), {
          checkStop: false,
        });
      else login();
    } catch (e) {
      throw new LinesignError(
        "HSM_ERROR",
        `Token "${tokenLabel}" took the new user PIN but refused it at the login that resets its wrong-PIN counter ` +
          `(${e instanceof pkcs11js.Pkcs11Error ? ckrName(e.code) : "no code"}). Check the token with the HSM vendor's tool before the next try.`,
        { cause: e, details: { token: tokenLabel } },
      );
    }
  }

  /**
   * A wrong PIN's error with what the token's own counter says now
   * (CKF_*_PIN_COUNT_LOW, FINAL_TRY, LOCKED), read right after the failure;
   * any other error unchanged.
   */
  private withCounter(
    err: LinesignError,
    slot: Handle,
    tokenLabel: string,
    who: "user" | "so",
  ): LinesignError {
    if (err.code !== "HSM_PIN_INCORRECT") return err;
    let flags: number;
    try {
      flags = this.lib.C_GetTokenInfo(slot).flags;
    } catch {
      return err;
    }
    const so = who === "so";
    const [low, final, locked] = so
      ? [pkcs11js.CKF_SO_PIN_COUNT_LOW, pkcs11js.CKF_SO_PIN_FINAL_TRY, pkcs11js.CKF_SO_PIN_LOCKED]
      : [
          pkcs11js.CKF_USER_PIN_COUNT_LOW,
          pkcs11js.CKF_USER_PIN_FINAL_TRY,
          pkcs11js.CKF_USER_PIN_LOCKED,
        ];
    const prefix = `CKF_${so ? "SO" : "USER"}_PIN_`;
    const counter =
      flags & locked
        ? `${prefix}LOCKED`
        : flags & final
          ? `${prefix}FINAL_TRY`
          : flags & low
            ? `${prefix}COUNT_LOW`
            : null;
    if (!counter) return err;
    const name = so ? "SO" : "user";
    const now = counter.endsWith("LOCKED")
      ? ` Token "${tokenLabel}" now reports its ${name} PIN locked (${counter}).`
      : counter.endsWith("FINAL_TRY")
        ? ` ${finalTryText(tokenLabel, who)}`
        : ` Token "${tokenLabel}" now reports that few ${name} PIN attempts are left (${counter}): be sure of the PIN before the next try.`;
    return new LinesignError(err.code, err.message + now, {
      cause: err.cause,
      details: { ...err.details, tokenCounter: counter },
    });
  }

  /**
   * Throws HSM_PIN_LOCKED when the token's flags or the station's guard say not
   * to present `who`'s PIN. `finalTry`: an officer chose to present the SO PIN
   * although the token reports one attempt left (never when it reports LOCKED).
   */
  private refuseOnCounters(
    slot: Handle,
    tokenLabel: string,
    who: "user" | "so",
    finalTry = false,
  ): void {
    const flags = this.tokenFlags(slot, tokenLabel);
    const [lockedFlag, finalFlag] =
      who === "so"
        ? [pkcs11js.CKF_SO_PIN_LOCKED, pkcs11js.CKF_SO_PIN_FINAL_TRY]
        : [pkcs11js.CKF_USER_PIN_LOCKED, pkcs11js.CKF_USER_PIN_FINAL_TRY];
    const name = who === "so" ? "SO" : "user";
    const stopAt = finalTry && who === "so" ? lockedFlag : lockedFlag | finalFlag;
    if (flags & stopAt) {
      const locked = (flags & lockedFlag) !== 0;
      throw new LinesignError(
        "HSM_PIN_LOCKED",
        locked
          ? `The ${name} PIN of token "${tokenLabel}" is locked (CKF_${who === "so" ? "SO" : "USER"}_PIN_LOCKED): ` +
              (who === "so"
                ? "only the HSM vendor's recovery procedure can help."
                : 'a security officer sets a new user PIN with "linesign token unlock" (LINESIGN_SO_PIN and LINESIGN_NEW_USER_PIN).')
          : finalTryText(tokenLabel, who),
        {
          details: {
            token: tokenLabel,
            pin: name,
            ...(who === "so" ? { soPinLocked: locked } : { userPinLocked: locked }),
            finalTry: !locked,
            tokenCounter: `CKF_${who === "so" ? "SO" : "USER"}_PIN_${locked ? "LOCKED" : "FINAL_TRY"}`,
          },
        },
      );
    }
  }

  officerReset(
    tokenLabel: string,
    soPin: string,
    newUserPin?: string,
    opts: { finalTry?: boolean } = {},
  ): void {
    const slot = this.findSlot(tokenLabel);
    let session: Handle | null = null;
    try {
      session = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      const s = session;
      this.presentPin(
        slot,
        tokenLabel,
        "so",
        () => this.lib.C_Login(s, pkcs11js.CKU_SO, soPin),
        opts.finalTry === true,
      );
      if (newUserPin !== undefined) this.lib.C_InitPIN(session, newUserPin);
      this.lib.C_Logout(session);
      if (newUserPin !== undefined) this.resetUserCounter(slot, s, tokenLabel, newUserPin);
    } catch (e) {
      if (e instanceof LinesignError) throw e;
      const err = mapPkcs11Error(
        e,
        `logging in as security officer to token "${tokenLabel}"`,
        tokenLabel,
      );
      if (err.code === "HSM_PIN_INCORRECT") {
        throw this.withCounter(
          new LinesignError(
            "HSM_PIN_INCORRECT",
            `The SO PIN for token "${tokenLabel}" is incorrect. Check LINESIGN_SO_PIN.`,
            { cause: e, details: err.details },
          ),
          slot,
          tokenLabel,
          "so",
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

  changePin(tokenLabel: string, who: "user" | "so", oldPin: string, newPin: string): void {
    const slot = this.findSlot(tokenLabel);
    let session: Handle | null = null;
    try {
      session = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      const s = session;
      // C_SetPIN changes the PIN of whoever the session is logged in as; a public session's is the user's.
      if (who === "so") {
        this.presentPin(slot, tokenLabel, "so", () => this.lib.C_Login(s, pkcs11js.CKU_SO, oldPin));
        this.lib.C_SetPIN(session, oldPin, newPin);
        this.lib.C_Logout(session);
      } else {
        this.presentPin(slot, tokenLabel, "user", () => this.lib.C_SetPIN(s, oldPin, newPin));
      }
    } catch (e) {
      if (e instanceof LinesignError) throw e;
      const err = mapPkcs11Error(
        e,
        `changing the ${who === "so" ? "SO" : "user"} PIN of token "${tokenLabel}"`,
        tokenLabel,
      );
      if (err.code === "HSM_PIN_INCORRECT")
        throw this.withCounter(
          new LinesignError(
            "HSM_PIN_INCORRECT",
            `The current ${who === "so" ? "SO" : "user"} PIN of token "${tokenLabel}" is incorrect; nothing was changed. Check ${who === "so" ? "LINESIGN_SO_PIN" : "LINESIGN_USER_PIN"}.`,
            { cause: e, details: err.details },
          ),
          slot,
          tokenLabel,
          who,
        );
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
    return this.withToken(tokenLabel, `reading data object "${label}"`, (t) =>
      this.findData(t.session, label).map((obj) => {
        const [value] = this.lib.C_GetAttributeValue(t.session, obj, [
          { type: pkcs11js.CKA_VALUE },
        ]);
        return new Uint8Array(value?.value as Buffer);
      }),
    );
  }

  async writeData(tokenLabel: string, label: string, value: Uint8Array): Promise<void> {
    await this.withToken(tokenLabel, `writing data object "${label}"`, (t) => {
      const old = this.findData(t.session, label);
      // Tokens may refuse to modify CKA_VALUE (SoftHSM does): create the new object first,
      // then remove the old, so a crash in between leaves two values, never none.
      this.lib.C_CreateObject(t.session, dataTemplate(label, Buffer.from(value)));
      for (const obj of old) this.lib.C_DestroyObject(t.session, obj);
    });
  }

  /**
   * A register is two private data objects whose CKA_LABEL holds the value:
   * the label is the one attribute PKCS#11 keeps modifiable on a data object,
   * and rewriting it costs one attribute write instead of a create and a
   * destroy (about ten times less on SoftHSM). Writes alternate between the
   * two, so a write the token fails to store leaves the other value readable.
   */
  async readRegister(tokenLabel: string, name: string): Promise<string[]> {
    const key = `${tokenLabel}\n${name}`;
    return this.withToken(tokenLabel, `reading register "${name}"`, (t) => {
      try {
        const { handles } = this.registerSlots(t.session, tokenLabel, name, false);
        return handles.map((h) => {
          const [label] = this.lib.C_GetAttributeValue(t.session, h, [
            { type: pkcs11js.CKA_LABEL },
          ]);
          return trim((label?.value as Buffer).toString("utf8"));
        });
      } catch (e) {
        // Handles may be stale (a new login, a token re-plugged): found again on the retry.
        this.registers.delete(key);
        throw e;
      }
    });
  }

  async writeRegister(
    tokenLabel: string,
    name: string,
    value: string,
    opts: { public?: boolean } = {},
  ): Promise<void> {
    const key = `${tokenLabel}\n${name}`;
    await this.withToken(tokenLabel, `writing register "${name}"`, (t) => {
      const write = (): void => {
        const reg = this.registerSlots(
          t.session,
          tokenLabel,
          name,
          opts.public ? "public" : "private",
        );
        const slot = (reg.last + 1) % reg.handles.length;
        this.lib.C_SetAttributeValue(t.session, reg.handles[slot]!, [
          { type: pkcs11js.CKA_LABEL, value },
        ]);
        reg.last = slot;
      };
      try {
        write();
      } catch (e) {
        // Handles end with a login and with a module restart: find the slots again, once.
        this.registers.delete(key);
        if (!(e instanceof pkcs11js.Pkcs11Error && e.code === STALE_HANDLE)) throw e;
        write();
      }
    });
  }

  /**
   * A public register's values, read in a session of its own that never logs
   * in: the objects an auditor without the user PIN can see. Only public
   * objects are asked for (a logged-in process would see its private ones too).
   * @throws LinesignError HSM_TOKEN_NOT_FOUND, HSM_ERROR
   */
  async readPublicRegister(tokenLabel: string, name: string): Promise<string[]> {
    await Promise.resolve();
    const slot = this.findSlot(tokenLabel);
    const doing = `reading the public register "${name}" without login`;
    let session: Handle;
    try {
      session = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    } catch (e) {
      throw mapPkcs11Error(e, doing, tokenLabel);
    }
    try {
      this.lib.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
        { type: pkcs11js.CKA_PRIVATE, value: false },
      ]);
      let all: Handle[];
      try {
        all = this.lib.C_FindObjects(session, 64);
      } finally {
        this.lib.C_FindObjectsFinal(session);
      }
      const values: string[] = [];
      for (const h of all) {
        const [tag, label] = this.lib.C_GetAttributeValue(session, h, [
          { type: pkcs11js.CKA_VALUE },
          { type: pkcs11js.CKA_LABEL },
        ]);
        const t = (tag?.value as Buffer).toString("utf8");
        if (REGISTER_SLOTS.some((s) => t === `${name}${s}`))
          values.push(trim((label?.value as Buffer).toString("utf8")));
      }
      return values;
    } catch (e) {
      throw mapPkcs11Error(e, doing, tokenLabel);
    } finally {
      try {
        this.lib.C_CloseSession(session);
      } catch {
        // the session is gone either way
      }
    }
  }

  private registerSlots(
    session: Handle,
    tokenLabel: string,
    name: string,
    /** Create missing slots as private or public objects; false: find only. */
    create: false | "private" | "public",
  ): { handles: Handle[]; last: number } {
    const key = `${tokenLabel}\n${name}`;
    const known = this.registers.get(key);
    if (known && known.handles.length === REGISTER_SLOTS.length) return known;
    this.lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
    ]);
    let all: Handle[];
    try {
      all = this.lib.C_FindObjects(session, 64);
    } finally {
      this.lib.C_FindObjectsFinal(session);
    }
    const bySlot = new Map<string, Handle>();
    for (const h of all) {
      const [v] = this.lib.C_GetAttributeValue(session, h, [{ type: pkcs11js.CKA_VALUE }]);
      const tag = (v?.value as Buffer).toString("utf8");
      for (const s of REGISTER_SLOTS) if (tag === `${name}${s}`) bySlot.set(s, h);
    }
    if (create) {
      for (const s of REGISTER_SLOTS) {
        if (bySlot.has(s)) continue;
        bySlot.set(
          s,
          this.lib.C_CreateObject(session, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
            { type: pkcs11js.CKA_TOKEN, value: true },
            // Private: reading or rewriting it needs the user PIN, like the keys. A public
            // register is for readers without the PIN (its value carries its own signature).
            { type: pkcs11js.CKA_PRIVATE, value: create === "private" },
            { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
            { type: pkcs11js.CKA_LABEL, value: "" },
            { type: pkcs11js.CKA_VALUE, value: Buffer.from(`${name}${s}`) },
          ]),
        );
      }
    }
    const reg = {
      handles: REGISTER_SLOTS.flatMap((s) => (bySlot.has(s) ? [bySlot.get(s)!] : [])),
      last: -1,
    };
    if (reg.handles.length === REGISTER_SLOTS.length) this.registers.set(key, reg);
    return reg;
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

  /** The token's mechanisms (read once per token and process). */
  private mechanisms(tokenLabel: string): Map<number, MechanismFact> {
    let m = this.mechs.get(tokenLabel);
    if (!m) {
      const slot = this.findSlot(tokenLabel);
      try {
        m = readMechanisms(this.lib, slot);
      } catch (e) {
        throw mapPkcs11Error(e, `reading the mechanisms of token "${tokenLabel}"`, tokenLabel);
      }
      this.mechs.set(tokenLabel, m);
    }
    return m;
  }

  async generateKeyPair(tokenLabel: string, label: string, keyType: KeyType): Promise<KeyInfo> {
    // Refused before anything is made when the token cannot make or use this key type.
    const mechs = this.mechanisms(tokenLabel);
    requireFit(mechs, keyType, tokenLabel);
    const allowed = allowedSignMechanisms(mechs, keyType);
    const made = await this.withToken(
      tokenLabel,
      `generating a ${keyType} key in token "${tokenLabel}"`,
      (t) => {
        if (this.findObjects(t.session, pkcs11js.CKO_PRIVATE_KEY, { label }).length > 0) {
          throw new LinesignError(
            "CA_LABEL_EXISTS",
            `Token "${tokenLabel}" already holds a key labelled "${label}". Keys are never overwritten: choose another label.`,
            { details: { token: tokenLabel, label } },
          );
        }
        const id = randomBytes(16);
        const refusals: string[] = [];
        let first: unknown = null;
        const family = `${tokenLabel}\0${isEc(keyType) ? "ec" : "rsa"}`;
        for (const [index, tier] of TEMPLATE_TIERS.entries()) {
          if (index < (this.acceptedTier.get(family) ?? 0)) continue;
          const { publicTmpl, privateTmpl } = templates(tier, keyType, label, id, allowed);
          try {
            const pair = this.lib.C_GenerateKeyPair(
              t.session,
              { mechanism: generationMechanism(keyType) },
              publicTmpl,
              privateTmpl,
            );
            this.acceptedTier.set(family, index);
            return { id, tier, pair };
          } catch (e) {
            if (!isTemplateRefusal(e)) throw e;
            first ??= e;
            refusals.push(`${tier}: ${ckrName((e as { code: number }).code)}`);
            // A module that failed half-way must not leave a key behind.
            this.destroyById(t.session, id);
          }
        }
        throw new LinesignError(
          "HSM_KEY_CUSTODY",
          `Token "${tokenLabel}" refused every key template the station tries for a ${keyType} key ` +
            `(${refusals.join("; ")}). See hsm/README.md; a key made with the HSM vendor's tool can be adopted with "ca create --key-uri".`,
          { cause: first, details: { token: tokenLabel, keyType, refusals } },
        );
      },
    );
    return this.withToken(tokenLabel, `checking the key just made in "${tokenLabel}"`, (t) => {
      const { privateKey, publicKey } = made.pair;
      tightenAfterGeneration(this.lib, t.session, privateKey, publicKey, allowed);
      const custody = readCustody(
        this.lib,
        t.session,
        privateKey,
        made.tier satisfies TemplateTier,
      );
      const uri = formatPkcs11Uri({
        token: tokenLabel,
        ...this.serialFor(tokenLabel),
        object: label,
        id: made.id.toString("hex"),
      });
      if (custody.faults.length > 0) {
        this.destroyById(t.session, made.id);
        throw custodyRefusal(uri, custody, "made");
      }
      const info = this.keyInfo(t.session, uri, privateKey);
      t.handles.set(uri, privateKey);
      return { ...info, custody };
    });
  }

  async adoptKey(uri: string): Promise<KeyInfo> {
    const parsed = parsePkcs11Uri(uri);
    return this.withToken(parsed.token, `checking key "${uri}"`, (t) => {
      const priv = this.privateHandle(t, uri);
      const info = this.keyInfo(t.session, uri, priv);
      signPlan(this.mechanisms(parsed.token), info.keyType, parsed.token);
      const custody = readCustody(this.lib, t.session, priv, "adopted");
      if (custody.faults.length > 0) throw custodyRefusal(info.uri, custody, "adopted");
      return { ...info, custody };
    });
  }

  async destroyKey(uri: string): Promise<void> {
    const parsed = parsePkcs11Uri(uri);
    await this.withToken(parsed.token, `removing key "${uri}"`, (t) => {
      const by = lookup(parsed);
      const privs = this.findObjects(t.session, pkcs11js.CKO_PRIVATE_KEY, by);
      const ids = privs.map(
        (h) =>
          this.lib.C_GetAttributeValue(t.session, h, [{ type: pkcs11js.CKA_ID }])[0]
            ?.value as Buffer,
      );
      for (const h of privs) this.lib.C_DestroyObject(t.session, h);
      for (const id of ids) {
        for (const h of this.findObjects(t.session, pkcs11js.CKO_PUBLIC_KEY, { id }))
          this.lib.C_DestroyObject(t.session, h);
      }
      t.handles.clear();
    });
  }

  private destroyById(session: Handle, id: Buffer): void {
    for (const cls of [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY]) {
      try {
        for (const h of this.findObjects(session, cls, { id }))
          this.lib.C_DestroyObject(session, h);
      } catch {
        // best effort: the caller reports the original failure
      }
    }
  }

  async findKey(uri: string): Promise<KeyInfo | null> {
    const parsed = parsePkcs11Uri(uri);
    return this.withToken(parsed.token, `reading key "${uri}"`, (t) => {
      const priv = this.privateHandle(t, uri, false);
      return priv ? this.keyInfo(t.session, uri, priv) : null;
    });
  }

  async signer(uri: string): Promise<Signer> {
    const parsed = parsePkcs11Uri(uri);
    const tokenLabel = parsed.token;
    const info = await this.findKey(uri);
    if (!info) {
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `Token "${parsed.token}" has no private key "${parsed.object}". The CA's key is missing from the HSM: ` +
          `check that the right token is connected.`,
        { details: { uri } },
      );
    }
    const plan: SignPlan = signPlan(this.mechanisms(tokenLabel), info.keyType, tokenLabel);
    const outLength =
      info.keyType === "ec-p256"
        ? 64
        : info.keyType === "ec-p384"
          ? 96
          : info.keyType === "rsa-2048"
            ? 256
            : 384;
    return {
      key: info,
      sign: async (message: Uint8Array): Promise<Uint8Array> => {
        if (this.closed) throw closedError(tokenLabel);
        const input = signInput(plan, message);
        const run = this.withToken(tokenLabel, `signing with key "${uri}"`, (t) =>
          this.signOnPool(t, uri, plan.mechanism, input, outLength, (got) =>
            wrongSignature(tokenLabel, parsed.object, info.keyType, got, outLength),
          ),
        );
        this.signing.add(run);
        try {
          return await run;
        } finally {
          this.signing.delete(run);
        }
      },
    };
  }

  /**
   * One signature on a session of the token's signing pool: C_SignInit here
   * (quick: it names the key), C_Sign on libuv's thread pool (pkcs11js's
   * callback form), so the event loop goes on meanwhile. A signature of any
   * length but `outLength` is refused with what `wrong` makes of it (null: more
   * than the buffer held); nothing of it is returned.
   */
  private async signOnPool(
    t: OpenToken,
    uri: string,
    mechanism: number,
    input: Buffer,
    outLength: number,
    wrong: (got: Buffer | null) => LinesignError,
  ): Promise<Uint8Array> {
    const priv = this.privateHandle(t, uri);
    const session = await t.signing.take();
    let ok = false;
    try {
      this.lib.C_SignInit(session, { mechanism }, priv);
      const out = Buffer.alloc(outLength + SIGNATURE_ROOM);
      const done = beginThreadCall(this.modulePath);
      const sig = await new Promise<Buffer>((resolve, reject) => {
        try {
          // The module reads `input` and writes `out` on its thread (pkcs11js keeps no reference to them):
          // the callback holds both until the call returns.
          const held = [input, out];
          this.lib.C_Sign(session, input, out, (err, data) => {
            held.length = 0;
            done();
            if (err) reject(err);
            else resolve(data);
          });
        } catch (e) {
          done();
          reject(e);
        }
      });
      // The operation ended (C_Sign returned): the session serves again, whatever it answered.
      ok = true;
      if (sig.length !== outLength) throw wrong(sig);
      return new Uint8Array(sig);
    } catch (e) {
      // More than the buffer holds: the operation is still active (the session is closed below).
      if (e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_BUFFER_TOO_SMALL)
        throw wrong(null);
      throw e;
    } finally {
      t.signing.give(session, ok);
    }
  }

  async probe(tokenLabel: string, opts: { login: boolean }): Promise<TokenProbe> {
    const slot = this.findSlot(tokenLabel);
    let raw: ReturnType<Pkcs11["C_GetTokenInfo"]>;
    try {
      raw = this.lib.C_GetTokenInfo(slot);
    } catch (e) {
      throw mapPkcs11Error(e, `reading token "${tokenLabel}"`, tokenLabel);
    }
    const info = tokenInfoOf(raw);
    const mechs = this.mechanisms(tokenLabel);
    const f = raw.flags;
    const probe: TokenProbe = {
      token: info,
      uri: formatTokenUri(info),
      mechanisms: [...mechs.values()].map((m) => ({
        name: m.name,
        minKeySize: m.minKeySize,
        maxKeySize: m.maxKeySize,
        flags: m.flags,
      })),
      pin: {
        userCountLow: (f & pkcs11js.CKF_USER_PIN_COUNT_LOW) !== 0,
        userFinalTry: (f & pkcs11js.CKF_USER_PIN_FINAL_TRY) !== 0,
        userLocked: (f & pkcs11js.CKF_USER_PIN_LOCKED) !== 0,
        soCountLow: (f & pkcs11js.CKF_SO_PIN_COUNT_LOW) !== 0,
        soFinalTry: (f & pkcs11js.CKF_SO_PIN_FINAL_TRY) !== 0,
        soLocked: (f & pkcs11js.CKF_SO_PIN_LOCKED) !== 0,
        minLength: raw.minPinLen,
        maxLength: raw.maxPinLen,
      },
      keyTypes: KEY_TYPES.map((keyType) => {
        const reason = unfitReason(mechs, keyType);
        return reason
          ? { keyType, fit: false, reason }
          : { keyType, fit: true, signWith: signPlan(mechs, keyType, tokenLabel).name };
      }),
      dataObjects: null,
      template: null,
    };
    if (!opts.login) return probe;
    // With the PIN: store and remove a private data object, and make and remove a throwaway key.
    probe.dataObjects = await this.withToken(tokenLabel, "trying a data object", (t) => {
      const label = `linesign-probe-${randomBytes(4).toString("hex")}`;
      try {
        const obj = this.lib.C_CreateObject(t.session, dataTemplate(label, Buffer.from("probe")));
        const found = this.findData(t.session, label);
        this.lib.C_DestroyObject(t.session, obj);
        return found.length === 1
          ? { kept: true, reason: null }
          : {
              kept: false,
              reason: "a private data object with CKA_APPLICATION is not found again",
            };
      } catch (e) {
        for (const h of this.findData(t.session, label)) this.lib.C_DestroyObject(t.session, h);
        const name = e instanceof pkcs11js.Pkcs11Error ? ckrName(e.code) : String(e);
        return { kept: false, reason: `C_CreateObject refused a private data object (${name})` };
      }
    });
    probe.publicDataObjects = await this.probePublicData(tokenLabel);
    const fit = probe.keyTypes.find((k) => k.fit);
    if (fit) {
      const label = `linesign-probe-${randomBytes(4).toString("hex")}`;
      try {
        const key = await this.generateKeyPair(tokenLabel, label, fit.keyType);
        probe.template = {
          keyType: fit.keyType,
          accepted: key.custody?.template ?? null,
          custody: key.custody ?? null,
          reason: null,
        };
        await this.destroyKey(key.uri);
      } catch (e) {
        const err = e instanceof LinesignError ? e : mapPkcs11Error(e, "making a throwaway key");
        probe.template = {
          keyType: fit.keyType,
          accepted: null,
          custody: (err.details?.custody as KeyCustody | undefined) ?? null,
          reason: err.message,
        };
      }
    }
    return probe;
  }

  /**
   * Makes a public data object in the user session, logs out, and looks for
   * it in a public session (what an auditor without the PIN would read); then
   * removes it (logged in again).
   */
  private async probePublicData(
    tokenLabel: string,
  ): Promise<{ kept: boolean; reason: string | null }> {
    const label = `linesign-probe-public-${randomBytes(4).toString("hex")}`;
    const template: Pkcs11Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_VALUE, value: Buffer.from("probe") },
    ];
    const made = await this.withToken(tokenLabel, "trying a public data object", (t) => {
      try {
        this.lib.C_CreateObject(t.session, template);
        return null;
      } catch (e) {
        const name = e instanceof pkcs11js.Pkcs11Error ? ckrName(e.code) : String(e);
        return `C_CreateObject refused a public data object (${name})`;
      }
    });
    if (made) return { kept: false, reason: made };
    let seen = false;
    let reason: string | null = null;
    try {
      this.logout(tokenLabel);
      const slot = this.findSlot(tokenLabel);
      const session = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
      try {
        // CKS_RO_PUBLIC_SESSION (0) or CKS_RW_PUBLIC_SESSION (2): no user is logged in.
        const state = this.lib.C_GetSessionInfo(session).state;
        seen = (state === 0 || state === 2) && this.findData(session, label).length === 1;
      } finally {
        this.lib.C_CloseSession(session);
      }
      if (!seen)
        reason = "a public data object made in the user session is not found without login";
    } catch (e) {
      const name = e instanceof pkcs11js.Pkcs11Error ? ckrName(e.code) : String(e);
      reason = `a public session could not read it (${name})`;
    }
    await this.withToken(tokenLabel, "removing the probe's public data object", (t) => {
      for (const h of this.findData(t.session, label)) this.lib.C_DestroyObject(t.session, h);
    });
    return { kept: seen, reason };
  }

  /**
   * Ends every session and releases the module, after the signatures in
   * flight have returned (a signature asked for after close() is refused).
   * Without signatures in flight it is done when close() returns.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const finish = (): void => {
      for (const t of this.tokens.values()) {
        t.signing.end();
        if (t.generation !== moduleGeneration(this.modulePath)) continue;
        try {
          this.lib.C_CloseSession(t.session);
        } catch {
          // closing is best effort; finalise below ends everything anyway
        }
      }
      this.tokens.clear();
      releaseModule(this.modulePath);
    };
    if (this.signing.size === 0) {
      finish();
      this.closing = Promise.resolve();
    } else {
      this.closing = (async () => {
        while (this.signing.size > 0) await Promise.allSettled([...this.signing]);
        finish();
      })();
    }
    return this.closing;
  }

  async login(tokenLabel: string): Promise<void> {
    await this.open(tokenLabel);
  }

  logout(tokenLabel: string): void {
    const token = this.tokens.get(tokenLabel);
    if (!token?.loggedIn) return;
    token.loggedIn = false;
    // Private object handles end with the login; find them again after the next one.
    token.handles.clear();
    for (const key of [...this.registers.keys()])
      if (key.startsWith(`${tokenLabel}\n`)) this.registers.delete(key);
    try {
      this.lib.C_Logout(token.session);
    } catch (e) {
      if (!(e instanceof pkcs11js.Pkcs11Error && LOSS.has(e.code)))
        throw mapPkcs11Error(e, `logging out of token "${tokenLabel}"`, tokenLabel);
    }
  }

  /** True when this store holds a logged-in session on the token (no PIN will be asked). */
  loggedIn(tokenLabel: string): boolean {
    const t = this.tokens.get(tokenLabel);
    return (t?.loggedIn ?? false) && t?.generation === moduleGeneration(this.modulePath);
  }

  /** For tests and HSM checks: the raw module and the session of a logged-in token. */
  async rawSession(tokenLabel: string): Promise<{ lib: Pkcs11; session: Handle }> {
    const t = await this.open(tokenLabel);
    return { lib: this.lib, session: t.session };
  }

  private serialFor(tokenLabel: string): { serial?: string } {
    const sel = this.opts.selectors?.find((s) => s.label === tokenLabel && s.serial);
    return sel?.serial ? { serial: sel.serial } : {};
  }

  private tokenFlags(slot: Handle, tokenLabel: string): number {
    try {
      return this.lib.C_GetTokenInfo(slot).flags;
    } catch (e) {
      throw mapPkcs11Error(e, `reading token "${tokenLabel}"`, tokenLabel);
    }
  }

  private findSlot(tokenLabel: string): Handle {
    let slots: Handle[];
    try {
      slots = this.lib.C_GetSlotList(true);
    } catch (e) {
      throw mapPkcs11Error(e, "listing slots", tokenLabel);
    }
    const narrowing = this.opts.selectors?.find((s) => s.label === tokenLabel) ?? null;
    const matches: { slot: Handle; info: TokenInfo }[] = [];
    for (const slot of slots) {
      let info: TokenInfo;
      try {
        const raw = this.lib.C_GetTokenInfo(slot);
        if ((raw.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
        info = tokenInfoOf(raw);
      } catch {
        continue;
      }
      if (info.label !== tokenLabel) continue;
      if (narrowing && !selectorMatches(narrowing, info)) continue;
      matches.push({ slot, info });
    }
    const [only] = matches;
    if (only && matches.length === 1) return only.slot;
    if (matches.length > 1) {
      throw new LinesignError(
        "HSM_TOKEN_NOT_FOUND",
        `${matches.length} tokens are labelled "${tokenLabel}" (serial numbers ${matches.map((m) => m.info.serial).join(", ")}). ` +
          `Name one by serial: set pkcs11.tokenSerial in the station config, or use a token URI such as ` +
          `"${formatTokenUri(matches[0]!.info)}".`,
        { details: { token: tokenLabel, matches: matches.length } },
      );
    }
    let present: string[];
    try {
      present = this.listTokens().map((t) => `"${t.label}" (serial ${t.serial})`);
    } catch {
      present = [];
    }
    const wanted = narrowing?.serial ? ` with serial ${narrowing.serial}` : "";
    throw new LinesignError(
      "HSM_TOKEN_NOT_FOUND",
      `No token labelled "${tokenLabel}"${wanted} is present. ` +
        (present.length > 0
          ? `Tokens present: ${present.join(", ")}. Set pkcs11.tokenLabel (or LINESIGN_TOKEN_LABEL) to one of them.`
          : `No initialised token is present: connect the HSM, or create a development token with "linesign init --dev".`),
      { details: { token: tokenLabel, present: present.length } },
    );
  }

  /**
   * An open, logged-in session on the token (opening and logging in when
   * needed). Callers that come while a login is under way wait for it: the
   * PIN is presented once, however many signatures are waiting.
   */
  private async open(tokenLabel: string): Promise<OpenToken> {
    const pending = this.recovering.get(tokenLabel);
    if (pending) await pending;
    const token = this.tokens.get(tokenLabel);
    // Sessions opened before the module was initialised again are gone.
    if (token && token.generation !== moduleGeneration(this.modulePath)) {
      this.tokens.delete(tokenLabel);
      token.signing.end();
    } else if (token?.loggedIn) return token;
    const under = this.loggingIn.get(tokenLabel);
    if (under) return under;
    const run = this.logIn(tokenLabel);
    this.loggingIn.set(tokenLabel, run);
    const done = () => {
      if (this.loggingIn.get(tokenLabel) === run) this.loggingIn.delete(tokenLabel);
    };
    run.then(done, done);
    return run;
  }

  private async logIn(tokenLabel: string): Promise<OpenToken> {
    let token = this.tokens.get(tokenLabel);
    if (!token) {
      const slot = this.findSlot(tokenLabel);
      const flags = this.tokenFlags(slot, tokenLabel);
      if (flags & pkcs11js.CKF_USER_PIN_LOCKED) {
        throw new LinesignError(
          "HSM_PIN_LOCKED",
          `The PIN of token "${tokenLabel}" is locked after too many wrong attempts. ` +
            `A security officer must unlock it with the SO PIN (see hsm/README.md).`,
          { details: { token: tokenLabel } },
        );
      }
      try {
        const session = this.lib.C_OpenSession(
          slot,
          pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
        );
        const generation = moduleGeneration(this.modulePath);
        token = {
          slot,
          session,
          loggedIn: false,
          generation,
          handles: new Map(),
          signing: new SignSessions(
            this.lib,
            slot,
            this.signSessions,
            () => moduleGeneration(this.modulePath) === generation,
          ),
        };
        this.tokens.set(tokenLabel, token);
      } catch (e) {
        throw mapPkcs11Error(e, `opening token "${tokenLabel}"`, tokenLabel);
      }
    }
    // Stop before the token does: one attempt left means a wrong PIN now locks (or wipes) it.
    // Checked before the PIN is asked for, so nobody types a PIN that will not be used,
    // and again, under the station's lock, once it is here.
    this.refuseOnCounters(token.slot, tokenLabel, "user");
    this.guard?.beforeLogin(tokenLabel, "user");
    const pin = await this.pinSource(tokenLabel);
    const t = token;
    try {
      this.presentPin(t.slot, tokenLabel, "user", () => {
        try {
          this.lib.C_Login(t.session, pkcs11js.CKU_USER, pin);
        } catch (e) {
          if (!(
            e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN
          ))
            throw e;
        }
      });
    } catch (e) {
      if (e instanceof LinesignError) throw e;
      throw this.withCounter(
        mapPkcs11Error(e, `logging in to token "${tokenLabel}"`, tokenLabel),
        t.slot,
        tokenLabel,
        "user",
      );
    }
    token.loggedIn = true;
    return token;
  }

  /**
   * Runs `work` on a logged-in session. When the session, the login or the
   * token is lost (CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID,
   * CKR_DEVICE_REMOVED, CKR_USER_NOT_LOGGED_IN, CKR_OBJECT_HANDLE_INVALID ...),
   * reopens it once (waiting up to `absentWaitMs` for a token that went away),
   * logs in again, finds the objects again and runs `work` once more.
   */
  private async withToken<T>(
    tokenLabel: string,
    doing: string,
    work: (t: OpenToken) => T | Promise<T>,
  ): Promise<T> {
    const first = await this.open(tokenLabel);
    try {
      return await work(first);
    } catch (e) {
      if (!isLoss(e)) throw mapPkcs11Error(e, doing, tokenLabel);
      // Told once per loss: signatures in flight on the same token share the recovery.
      if (!this.recovering.has(tokenLabel) && this.tokens.get(tokenLabel) === first)
        this.opts.onTokenState?.(tokenLabel, "lost", { ckr: ckrName(e.code) });
      await this.recover(tokenLabel, first);
    }
    const again = await this.open(tokenLabel);
    try {
      return await work(again);
    } catch (e) {
      if (isLoss(e)) this.forget(tokenLabel);
      const err = mapPkcs11Error(e, doing, tokenLabel);
      if (!isLoss(e)) throw err;
      throw new LinesignError(
        err.code === "HSM_ERROR" ? "HSM_TOKEN_NOT_FOUND" : err.code,
        `Token "${tokenLabel}" was lost while ${doing}, and again after the station reopened its session and ` +
          `logged in once more (${ckrName(e.code)}). Check the HSM and its connection, then try again.`,
        { cause: e, details: { token: tokenLabel, ckr: ckrName(e.code) } },
      );
    }
  }

  /**
   * Whether the token is there now, in one look (no waiting): the probe of a
   * station paused because the token went away. When the module lost the
   * token, it is initialised again first.
   * @throws LinesignError HSM_TOKEN_NOT_FOUND while the token is away
   */
  async checkPresent(tokenLabel: string): Promise<void> {
    await Promise.resolve();
    const away = (cause?: unknown) =>
      new LinesignError(
        "HSM_TOKEN_NOT_FOUND",
        `Token "${tokenLabel}" is still away. Reconnect the HSM (or restore its storage); the station resumes by itself.`,
        { cause, details: { token: tokenLabel } },
      );
    if (this.recovering.has(tokenLabel)) throw away();
    let slot: Handle;
    try {
      slot = this.findSlot(tokenLabel);
    } catch {
      try {
        this.dropSessions();
        await reinitialiseWhenQuiet(this.modulePath);
        this.mechs.delete(tokenLabel);
        slot = this.findSlot(tokenLabel);
      } catch (e) {
        throw away(e);
      }
    }
    try {
      this.lib.C_CloseSession(this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
    } catch (e) {
      throw away(e);
    }
  }

  /** Every token's sessions end (before the module is initialised again). */
  private dropSessions(): void {
    for (const t of this.tokens.values()) t.signing.end();
    this.tokens.clear();
  }

  private forget(tokenLabel: string): void {
    const t = this.tokens.get(tokenLabel);
    this.tokens.delete(tokenLabel);
    if (!t) return;
    // Idle signing sessions close now, those signing when their signature returns.
    t.signing.end();
    if (t.generation !== moduleGeneration(this.modulePath)) return;
    try {
      this.lib.C_CloseSession(t.session);
    } catch {
      // already gone
    }
  }

  /**
   * Brings a lost token back: a new session first; when the module itself
   * lost the token, initialise it again and wait for the token to return.
   * Concurrent callers share one recovery.
   */
  private recover(tokenLabel: string, lost: OpenToken): Promise<void> {
    const pending = this.recovering.get(tokenLabel);
    if (pending) return pending;
    // Another caller already reopened it.
    const current = this.tokens.get(tokenLabel);
    if (current && current !== lost && current.generation === moduleGeneration(this.modulePath))
      return Promise.resolve();
    const run = (async () => {
      this.forget(tokenLabel);
      const started = Date.now();
      let announced = false;
      for (let attempt = 0; ; attempt++) {
        try {
          if (attempt > 0) {
            // Every session of this store ends with the re-initialisation, after the
            // signatures running on other threads have returned.
            this.dropSessions();
            await reinitialiseWhenQuiet(this.modulePath);
            this.mechs.delete(tokenLabel);
          }
          const slot = this.findSlot(tokenLabel);
          // A session that answers proves the token is back (the login follows in open()).
          const s = this.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
          this.lib.C_GetSessionInfo(s);
          this.lib.C_CloseSession(s);
          if (announced)
            this.opts.onTokenState?.(tokenLabel, "back", { waitedMs: Date.now() - started });
          return;
        } catch (e) {
          if (
            e instanceof LinesignError &&
            e.code !== "HSM_TOKEN_NOT_FOUND" &&
            e.code !== "HSM_ERROR"
          )
            throw e;
          if (attempt === 0) continue;
          if (!announced) {
            announced = true;
            this.opts.onTokenState?.(tokenLabel, "absent", { waitedMs: Date.now() - started });
          }
          if (Date.now() - started >= this.absentWaitMs) {
            throw new LinesignError(
              "HSM_TOKEN_NOT_FOUND",
              `Token "${tokenLabel}" went away and did not come back within ${Math.round(this.absentWaitMs / 1000)} s. ` +
                `Reconnect the HSM (or restore its storage), then try again.`,
              { cause: e, details: { token: tokenLabel, waitedMs: Date.now() - started } },
            );
          }
          await sleep(this.pollMs);
        }
      }
    })();
    this.recovering.set(tokenLabel, run);
    void run.then(
      () => this.recovering.delete(tokenLabel),
      () => this.recovering.delete(tokenLabel),
    );
    return run;
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

  /** The private key's handle in this session (found once per session). */
  private privateHandle(t: OpenToken, uri: string): Handle;
  private privateHandle(t: OpenToken, uri: string, required: false): Handle | null;
  private privateHandle(t: OpenToken, uri: string, required = true): Handle | null {
    const cached = t.handles.get(uri);
    if (cached) return cached;
    const parsed = parsePkcs11Uri(uri);
    const found = this.findObjects(t.session, pkcs11js.CKO_PRIVATE_KEY, lookup(parsed));
    if (found.length > 1) {
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `Token "${parsed.token}" holds ${found.length} private keys matching ${uri}; name one by its id.`,
        { details: { uri } },
      );
    }
    const [priv] = found;
    if (!priv) {
      if (!required) return null;
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `Token "${parsed.token}" has no private key "${parsed.object || parsed.id}". Check that the right token is connected.`,
        { details: { uri } },
      );
    }
    t.handles.set(uri, priv);
    return priv;
  }

  /** The key's public facts: type, SPKI, canonical URI (from its public half). */
  private keyInfo(session: Handle, uri: string, priv: Handle): KeyInfo {
    const parsed = parsePkcs11Uri(uri);
    const [idA, labelA] = this.lib.C_GetAttributeValue(session, priv, [
      { type: pkcs11js.CKA_ID },
      { type: pkcs11js.CKA_LABEL },
    ]);
    const idAttr = idA?.value as Buffer;
    const objectLabel =
      parsed.object || (labelA?.value as Buffer | undefined)?.toString("utf8") || "";
    const [pub] =
      idAttr.length > 0
        ? this.findObjects(session, pkcs11js.CKO_PUBLIC_KEY, { id: idAttr })
        : this.findObjects(session, pkcs11js.CKO_PUBLIC_KEY, { label: objectLabel });
    if (!pub) {
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `The public half of "${uri}" is missing from the token.`,
        { details: { uri } },
      );
    }
    const ckk = ulong(
      this.lib.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_KEY_TYPE }])[0]
        ?.value as Buffer,
    );
    const canonicalUri = formatPkcs11Uri({
      token: parsed.token,
      ...(parsed.serial ? { serial: parsed.serial } : this.serialFor(parsed.token)),
      object: objectLabel,
      id: idAttr.toString("hex"),
    });
    if (ckk === pkcs11js.CKK_EC) {
      const [params, point] = this.lib.C_GetAttributeValue(session, pub, [
        { type: pkcs11js.CKA_EC_PARAMS },
        { type: pkcs11js.CKA_EC_POINT },
      ]);
      const { keyType, spki } = ecPointToSpki(params?.value as Buffer, point?.value as Buffer);
      return { uri: canonicalUri, keyType, spki };
    }
    if (ckk === pkcs11js.CKK_RSA) {
      const [modulus, exponent] = this.lib.C_GetAttributeValue(session, pub, [
        { type: pkcs11js.CKA_MODULUS },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT },
      ]);
      const { keyType, spki } = rsaToSpki(modulus?.value as Buffer, exponent?.value as Buffer);
      return { uri: canonicalUri, keyType, spki };
    }
    throw new LinesignError("KEY_TYPE_UNSUPPORTED", `The key "${uri}" is neither EC nor RSA.`);
  }
}

/**
 * Octets of C_Sign's buffer beyond the signature's length: an answer in another
 * form (an ECDSA signature DER-encoded is 6 to 9 octets longer than r||s) then
 * arrives and is named, instead of failing as CKR_BUFFER_TOO_SMALL.
 */
const SIGNATURE_ROOM = 16;

/** Whether `sig` reads as a DER ECDSA-Sig-Value: SEQUENCE { INTEGER r, INTEGER s } filling it. */
function isDerEcdsaSig(sig: Buffer): boolean {
  if (sig.length < 8 || sig[0] !== 0x30 || sig[1] !== sig.length - 2 || sig[2] !== 0x02)
    return false;
  const r = 4 + sig[3]!;
  return sig[r] === 0x02 && r + 2 + sig[r + 1]! === sig.length;
}

/**
 * A token's answer to C_Sign that is no signature of the key's length (`got`
 * null: longer than the buffer): refused, naming the token, what it returned
 * and what was expected; the station uses nothing of it.
 */
function wrongSignature(
  tokenLabel: string,
  keyLabel: string,
  keyType: KeyType,
  got: Buffer | null,
  expected: number,
): LinesignError {
  const ec = isEc(keyType);
  const der = got !== null && ec && isDerEcdsaSig(got);
  const returned =
    got === null
      ? `a signature longer than ${expected + SIGNATURE_ROOM} octets`
      : got.length === 0
        ? "an empty signature (no octets)"
        : `a signature of ${got.length} octets` +
          (der ? " (a DER-encoded ECDSA-Sig-Value)" : got.length < expected ? " (cut short)" : "");
  const form = ec
    ? `r and s of ${expected / 2} octets each, side by side, as PKCS#11 CKM_ECDSA answers`
    : `the length of the key's modulus`;
  return new LinesignError(
    "HSM_ERROR",
    `Token "${tokenLabel}" returned ${returned} for its ${keyType} key "${keyLabel}"; ` +
      `a ${keyType} signature is ${expected} octets (${form}). The station used nothing of it. ` +
      (der
        ? "The token's PKCS#11 module answers ECDSA in DER, not in the form PKCS#11 defines: "
        : "The token's PKCS#11 module or its firmware is answering wrongly: ") +
      "check that pkcs11.module is the HSM vendor's module for this model and firmware (hsm/README.md) and report it to the vendor. " +
      "The station signs again as soon as the token answers rightly.",
    {
      details: {
        token: tokenLabel,
        key: keyLabel,
        keyType,
        returnedOctets: got?.length ?? null,
        expectedOctets: expected,
        ...(der ? { form: "der" } : {}),
      },
    },
  );
}

function closedError(tokenLabel: string): LinesignError {
  return new LinesignError(
    "HSM_ERROR",
    `The station closed its sessions with token "${tokenLabel}": no more signatures are made with it in this process.`,
    { details: { token: tokenLabel } },
  );
}

function lookup(parsed: { object: string; id: string }): { label?: string; id?: Buffer } {
  const by: { label?: string; id?: Buffer } = {};
  if (parsed.id) by.id = Buffer.from(parsed.id, "hex");
  if (parsed.object) by.label = parsed.object;
  return by;
}

function tokenInfoOf(info: {
  label: string;
  serialNumber: string;
  manufacturerID: string;
  model: string;
}): TokenInfo {
  return {
    label: trim(info.label),
    serial: trim(info.serialNumber),
    manufacturer: trim(info.manufacturerID),
    model: trim(info.model),
  };
}

function dataTemplate(label: string, value: Buffer): Pkcs11Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    // Private: reading or replacing it needs the user PIN, like the keys.
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_VALUE, value },
  ];
}

function custodyRefusal(uri: string, custody: KeyCustody, how: "made" | "adopted"): LinesignError {
  return new LinesignError(
    "HSM_KEY_CUSTODY",
    how === "made"
      ? `The token made the key ${uri} with ${custody.faults.join(", ")}, so it could leave the token or be used ` +
          `for more than signing; the station removed it. See hsm/README.md for what the station needs of a token.`
      : `The key ${uri} cannot be a CA key: ${custody.faults.join(", ")}. Make it again with the HSM vendor's tool ` +
          `as a sensitive, non-extractable, sign-only key.`,
    { details: { uri, custody } },
  );
}

/** What the station says when the token reports one attempt left for `who`'s PIN, and what to do. */
function finalTryText(tokenLabel: string, who: "user" | "so"): string {
  return who === "so"
    ? `Token "${tokenLabel}" reports one SO PIN attempt left (CKF_SO_PIN_FINAL_TRY): the token's own counter, not the station's. ` +
        "A wrong SO PIN now locks it for good, and some HSMs erase themselves, so the station presents no SO PIN to it. " +
        'Find the right SO PIN with its custodian; then an officer presents it once with "linesign token unlock --final-try" (recorded), ' +
        "which resets the token's counter."
    : `Token "${tokenLabel}" reports one user PIN attempt left (CKF_USER_PIN_FINAL_TRY): the token's own counter, not the station's. ` +
        "A wrong PIN now locks the token (some HSMs erase themselves), so the station presents no user PIN to it, not even the right one. " +
        'A security officer resets the counter with "linesign token unlock" (LINESIGN_SO_PIN, and LINESIGN_NEW_USER_PIN: the user PIN to keep, which may be the current one).';
}
