/**
 * Token custody acts: the station's wrong-PIN guard, and the officer's unlock.
 * SoftHSM never locks a user PIN; real HSMs do (some zeroise), so the station
 * stops presenting PINs after `maxAttempts` consecutive failures.
 */
import { LinesignError } from "../domain/errors.js";
import { checkTokenLabel } from "../domain/pkcs11-uri.js";
import type { KeyType } from "../domain/keys.js";
import type { LoginGuard, TokenInfo, TokenProbe } from "../domain/ports.js";
import { act, type AppContext } from "./context.js";

/** Default consecutive wrong PINs before the station stops trying. */
export const DEFAULT_MAX_PIN_ATTEMPTS = 5;

/** Default consecutive wrong SO PINs before the station stops trying (HSMs that erase themselves allow few). */
export const DEFAULT_MAX_SO_PIN_ATTEMPTS = 3;

/** How long a PIN waits for another process's write to end before it is refused (DB_LOCKED). */
const PIN_LOCK_WAIT_MS = 5_000;

/** The guard row of `who`'s PIN on `token` (the SO PIN's is kept apart from the user PIN's). */
const guardKey = (token: string, who: "user" | "so"): string =>
  who === "so" ? `so:${token}` : token;

/** The LoginGuard the PKCS#11 adapter calls around each login, user or security officer. */
export function pinGuard(
  ctx: AppContext,
  maxAttempts: number,
  maxSoAttempts = DEFAULT_MAX_SO_PIN_ATTEMPTS,
): LoginGuard {
  const beforeLogin = (token: string, who: "user" | "so" = "user"): void => {
    const state = ctx.store.pinGuard(guardKey(token, who));
    if (state.lockedAt) {
      throw new LinesignError(
        "HSM_PIN_LOCKED",
        who === "so"
          ? `The station stopped presenting SO PINs to token "${token}" after ${state.failures} wrong attempts (at ${state.lockedAt}), ` +
              `before the token's own limit (some HSMs erase themselves when it is reached). Find the right SO PIN with its custodian; ` +
              `then an officer lifts this stop with "linesign token unlock --token ${token} --clear-so-guard" (recorded) and tries once more.`
          : `The station stopped using the PIN of token "${token}" after ${state.failures} wrong attempts (at ${state.lockedAt}). ` +
              `A security officer must run "linesign token unlock --token ${token}" with the SO PIN in LINESIGN_SO_PIN.`,
        { details: { token, failures: state.failures, pin: who === "so" ? "SO" : "user" } },
      );
    }
  };
  const loginFailed = (token: string, who: "user" | "so"): void => {
    const state = ctx.store.pinGuard(guardKey(token, who));
    const failures = state.failures + 1;
    const max = who === "so" ? maxSoAttempts : maxAttempts;
    const lock = failures >= max;
    ctx.store.setPinGuard(guardKey(token, who), {
      failures,
      lockedAt: lock ? ctx.clock.now().toISOString() : null,
    });
    if (lock) {
      ctx.store.appendEvent({
        actor: ctx.actor,
        action: who === "so" ? "token.so-pin-locked" : "token.pin-locked",
        subject: token,
        outcome: "refused",
        code: "HSM_PIN_LOCKED",
        message: `${failures} consecutive wrong ${who === "so" ? "SO " : ""}PINs: the station will not present ${who === "so" ? "an SO PIN" : "a PIN"} to this token until an officer ${who === "so" ? "lifts the stop" : "unlocks it"}.`,
        details: { failures, maxAttempts: max, pin: who === "so" ? "SO" : "user" },
      });
    }
  };
  return {
    beforeLogin,
    present(token, who, attempt, isWrongPin, opts = {}) {
      // The station's write lock (a database transaction taken at once) is the
      // one lock every process of the station shares: held from the guard's
      // reading through the PIN to its count, so that two processes can never
      // both spend the last attempt the guard or the token's counter allows.
      // A wrong PIN's count is committed, then its error thrown.
      // The line and the service otherwise never wait for a lock (they wait without blocking,
      // see GroupCommitter); a login is rare, and failing it for a commit in progress would
      // fail a device. Another process's writes are short.
      let wrong: { error: unknown } | null = null;
      const value = ctx.store.withLockWait(PIN_LOCK_WAIT_MS, () =>
        ctx.store.transaction(() => {
          if (opts.checkStop !== false) beforeLogin(token, who);
          let v: ReturnType<typeof attempt>;
          try {
            v = attempt();
          } catch (e) {
            if (!isWrongPin(e)) throw e;
            wrong = { error: e };
            loginFailed(token, who);
            return undefined;
          }
          if (ctx.store.pinGuard(guardKey(token, who)).failures > 0)
            ctx.store.setPinGuard(guardKey(token, who), { failures: 0, lockedAt: null });
          return v;
        }),
      );
      if (wrong !== null) throw (wrong as { error: unknown }).error;
      return value as ReturnType<typeof attempt>;
    },
  };
}

export class TokenService {
  constructor(private readonly ctx: AppContext) {}

  list(): TokenInfo[] {
    return this.ctx.keys().listTokens();
  }

  /**
   * Initialises a free slot's token with `label` and its user PIN.
   * @throws LinesignError HSM_NO_FREE_SLOT, CA_LABEL_EXISTS (a token with that label exists), HSM_*
   */
  async init(label: string, soPin: string, userPin: string): Promise<void> {
    await act(this.ctx, "token.init", label, async () => {
      checkTokenLabel(label);
      if (this.list().some((t) => t.label === label)) {
        throw new LinesignError(
          "CA_LABEL_EXISTS",
          `A token labelled "${label}" already exists; tokens are never re-initialised by the station.`,
        );
      }
      this.ctx.tokenAdmin().initToken(label, soPin, userPin);
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "token.init",
        subject: label,
        outcome: "ok",
      });
    });
  }

  /**
   * Proves the SO PIN to the token, optionally sets a new user PIN (which
   * unlocks a user PIN the HSM itself locked), and lifts the station's guard.
   * `opts.finalTry` (default false): present the SO PIN although the token
   * reports one SO attempt left (CKF_SO_PIN_FINAL_TRY); recorded.
   * @throws LinesignError HSM_PIN_INCORRECT (wrong SO PIN), HSM_PIN_LOCKED, HSM_TOKEN_NOT_FOUND
   */
  async unlock(
    token: string,
    soPin: string,
    newUserPin?: string,
    opts: { finalTry?: boolean } = {},
  ): Promise<void> {
    await act(this.ctx, "token.unlock", token, async () => {
      this.ctx.tokenAdmin().officerReset(token, soPin, newUserPin, opts);
      this.ctx.store.transaction(() => {
        this.ctx.store.setPinGuard(token, { failures: 0, lockedAt: null });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "token.unlock",
          subject: token,
          outcome: "ok",
          details: {
            userPinChanged: newUserPin !== undefined,
            ...(opts.finalTry ? { finalTry: true } : {}),
          },
        });
      });
    });
  }

  /**
   * Lifts the station's stop on SO PINs for `token` (an officer's recorded act,
   * after the right SO PIN was found); presents no PIN.
   * @throws LinesignError USAGE when there is no stop to lift
   */
  async clearSoGuard(token: string): Promise<{ failures: number }> {
    return act(this.ctx, "token.so-guard-clear", token, async () => {
      const state = this.ctx.store.pinGuard(guardKey(token, "so"));
      if (state.failures === 0)
        throw new LinesignError(
          "USAGE",
          `The station has no wrong SO PIN on record for token "${token}": there is nothing to lift.`,
        );
      this.ctx.store.transaction(() => {
        this.ctx.store.setPinGuard(guardKey(token, "so"), { failures: 0, lockedAt: null });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "token.so-guard-clear",
          subject: token,
          outcome: "ok",
          details: { failures: state.failures, lockedAt: state.lockedAt },
        });
      });
      return { failures: state.failures };
    });
  }

  /**
   * Changes a token's user or SO PIN, proving the current one; recorded (never
   * the PINs). A new PIN must have 6 to 64 characters and differ from the old.
   * @throws LinesignError USAGE, HSM_PIN_INCORRECT (nothing changed), HSM_TOKEN_NOT_FOUND
   */
  async changePin(
    token: string,
    who: "user" | "so",
    oldPin: string,
    newPin: string,
  ): Promise<void> {
    await act(this.ctx, "token.pin", token, async () => {
      if (newPin.length < 6 || newPin.length > 64)
        throw new LinesignError("USAGE", "A new PIN has 6 to 64 characters.");
      if (newPin === oldPin)
        throw new LinesignError("USAGE", "The new PIN is the current one; nothing was changed.");
      this.ctx.tokenAdmin().changePin(token, who, oldPin, newPin);
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "token.pin",
        subject: token,
        outcome: "ok",
        details: { pin: who === "so" ? "SO" : "user" },
      });
    });
  }
}

/** A probe with the station's verdict: can this token hold a CA key, and the audit key? */
export interface TokenAssessment {
  probe: TokenProbe;
  /** Fit to hold a CA key: some key type it can make and sign with, and (when tried) a key with sound custody. */
  caKey: { fit: boolean; keyTypes: KeyType[]; reason: string | null };
  /** Fit to hold the audit key of the given type. */
  auditKey: { fit: boolean; keyType: KeyType; reason: string | null };
  /** Where the log head can be kept: a private data object, or (without one) the signed head only. */
  headStore: "data-object" | "signed-head" | "not checked";
}

/** Judges a probe for the station's two uses of a token. */
export function assessToken(probe: TokenProbe, auditKeyType: KeyType): TokenAssessment {
  const fitTypes = probe.keyTypes.filter((k) => k.fit).map((k) => k.keyType);
  const custodyFault = probe.template?.custody?.faults.length
    ? `a key it made had ${probe.template.custody.faults.join(", ")}`
    : probe.template && !probe.template.accepted
      ? (probe.template.reason ?? "it refused every key template")
      : null;
  const caReason =
    fitTypes.length === 0
      ? `it can make and sign with none of the key types (${probe.keyTypes
          .map((k) => (k.fit ? "" : `${k.keyType}: ${k.reason}`))
          .filter(Boolean)
          .join("; ")})`
      : custodyFault;
  const audit = probe.keyTypes.find((k) => k.keyType === auditKeyType);
  const auditReason =
    audit && !audit.fit
      ? `${auditKeyType}: ${audit.reason} (set audit.keyType to one of: ${fitTypes.join(", ") || "none"})`
      : custodyFault;
  return {
    probe,
    caKey: { fit: caReason === null, keyTypes: fitTypes, reason: caReason },
    auditKey: { fit: auditReason === null, keyType: auditKeyType, reason: auditReason },
    headStore:
      probe.dataObjects === null
        ? "not checked"
        : probe.dataObjects.kept
          ? "data-object"
          : "signed-head",
  };
}

/** What `status` shows of a probe: the facts a station runs on (kept in the token.probe entry). */
export interface ProbeFacts {
  token: { label: string; serial: string; manufacturer: string; model: string };
  /** Per key type: the mechanism it signs with, or why the token cannot serve it. */
  keyTypes: { keyType: KeyType; signWith: string | null; reason: string | null }[];
  dataObjects: { kept: boolean; reason: string | null } | null;
  template: { keyType: KeyType; accepted: string | null; weaknesses: string[] } | null;
  pin: TokenProbe["pin"];
  headStore: TokenAssessment["headStore"];
}

export function probeFacts(a: TokenAssessment): ProbeFacts {
  const p = a.probe;
  return {
    token: {
      label: p.token.label,
      serial: p.token.serial,
      manufacturer: p.token.manufacturer,
      model: p.token.model,
    },
    keyTypes: p.keyTypes.map((k) =>
      k.fit
        ? { keyType: k.keyType, signWith: k.signWith, reason: null }
        : { keyType: k.keyType, signWith: null, reason: k.reason },
    ),
    dataObjects: p.dataObjects,
    template: p.template
      ? {
          keyType: p.template.keyType,
          accepted: p.template.accepted,
          weaknesses: p.template.custody?.weaknesses ?? [],
        }
      : null,
    pin: p.pin,
    headStore: a.headStore,
  };
}

/** The token's facts as `status` shows them: read now (no PIN), and the last recorded probe. */
export interface TokenFacts {
  /** Read from the token now: the mechanism each key type signs with, the PIN counters. */
  now:
    | {
        keyTypes: ProbeFacts["keyTypes"];
        pin: ProbeFacts["pin"];
        caKey: TokenAssessment["caKey"];
        auditKey: TokenAssessment["auditKey"];
      }
    | { error: string };
  /** The last `token probe --record` (data objects kept, template accepted), or null. */
  recorded: (ProbeFacts & { seq: number; ts: string }) | null;
}

/** The token's facts for `status`: probes the station's token without a PIN, and reads the last recorded probe. */
export async function tokenFacts(
  ctx: AppContext,
  probe: () => Promise<TokenProbe>,
  auditKeyType: KeyType,
): Promise<TokenFacts> {
  const last = ctx.store.queryEvents({ action: "token.probe", outcome: "ok", limit: 1 }).at(-1);
  const d = last?.details as Partial<ProbeFacts> | undefined;
  const recorded =
    last && d && Array.isArray(d.keyTypes) && d.pin && d.token
      ? { ...(d as ProbeFacts), seq: last.seq, ts: last.ts }
      : null;
  let now: TokenFacts["now"];
  try {
    const a = assessToken(await probe(), auditKeyType);
    const f = probeFacts(a);
    now = { keyTypes: f.keyTypes, pin: f.pin, caKey: a.caKey, auditKey: a.auditKey };
  } catch (e) {
    now = { error: e instanceof Error ? e.message : String(e) };
  }
  return { now, recorded };
}

/** The facts as lines of `status`. */
export function renderTokenFacts(t: TokenFacts): string[] {
  const lines: string[] = [];
  if ("error" in t.now) lines.push(`Token facts: not read (${t.now.error})`);
  else {
    const n = t.now;
    lines.push(
      `Token signs: ${n.keyTypes.map((k) => `${k.keyType} ${k.signWith ?? "NO"}`).join("; ")}`,
      `Token PINs: user ${pinState(n.pin.userLocked, n.pin.userFinalTry, n.pin.userCountLow)}; SO ${pinState(n.pin.soLocked, n.pin.soFinalTry, n.pin.soCountLow)}`,
      `Token fit: CA key ${n.caKey.fit ? "yes" : `NO (${n.caKey.reason})`}; audit key (${n.auditKey.keyType}) ${n.auditKey.fit ? "yes" : `NO (${n.auditKey.reason})`}`,
    );
  }
  const r = t.recorded;
  if (!r)
    lines.push(
      'Token probe: none recorded (run "linesign token probe --record" with LINESIGN_USER_PIN)',
    );
  else
    lines.push(
      `Token probe recorded ${r.ts} (entry ${r.seq}): data objects ${r.dataObjects === null ? "not tried" : r.dataObjects.kept ? "kept" : `NOT kept (${r.dataObjects.reason})`}; ` +
        `template ${r.template === null ? "not tried" : `${r.template.accepted ?? "none accepted"} for ${r.template.keyType}${r.template.weaknesses.length ? ` (not accepted: ${r.template.weaknesses.join("; ")})` : ""}`}; log head: ${r.headStore}`,
    );
  return lines;
}

const yesNo = (b: boolean | null): string => (b === null ? "not kept" : b ? "yes" : "no");

/** The assessment as people read it (also the body of the capability tables in hsm/). */
export function renderAssessment(a: TokenAssessment): string {
  const p = a.probe;
  const lines: string[] = [];
  lines.push(
    `Token "${p.token.label}": ${p.token.manufacturer} ${p.token.model}, serial ${p.token.serial}`,
  );
  lines.push(`  URI: ${p.uri}`);
  lines.push(
    `  CA key: ${a.caKey.fit ? `fit (${a.caKey.keyTypes.join(", ")})` : `NOT FIT: ${a.caKey.reason}`}`,
  );
  lines.push(
    `  audit key (${a.auditKey.keyType}): ${a.auditKey.fit ? "fit" : `NOT FIT: ${a.auditKey.reason}`}`,
  );
  lines.push(
    `  log head: ${a.headStore}${p.dataObjects?.reason ? ` (${p.dataObjects.reason})` : ""}`,
  );
  lines.push("");
  lines.push("| key type | fit | signs with / why not |");
  lines.push("|---|---|---|");
  for (const k of p.keyTypes)
    lines.push(`| ${k.keyType} | ${k.fit ? "yes" : "no"} | ${k.fit ? k.signWith : k.reason} |`);
  lines.push("");
  if (p.template) {
    const c = p.template.custody;
    lines.push(
      `Template accepted for a ${p.template.keyType} key: ${p.template.accepted ?? `none (${p.template.reason})`}`,
    );
    if (c) {
      lines.push("");
      lines.push("| attribute | value |");
      lines.push("|---|---|");
      lines.push(`| CKA_SENSITIVE | ${yesNo(c.sensitive)} |`);
      lines.push(`| CKA_ALWAYS_SENSITIVE | ${yesNo(c.alwaysSensitive)} |`);
      lines.push(`| CKA_EXTRACTABLE | ${yesNo(c.extractable)} |`);
      lines.push(`| CKA_NEVER_EXTRACTABLE | ${yesNo(c.neverExtractable)} |`);
      lines.push(`| CKA_DECRYPT | ${yesNo(c.decrypt)} |`);
      lines.push(`| CKA_UNWRAP | ${yesNo(c.unwrap)} |`);
      lines.push(`| CKA_DERIVE | ${yesNo(c.derive)} |`);
      lines.push(`| CKA_SIGN_RECOVER | ${yesNo(c.signRecover)} |`);
      lines.push(`| CKA_MODIFIABLE | ${yesNo(c.modifiable)} |`);
      lines.push(`| CKA_COPYABLE | ${yesNo(c.copyable)} |`);
      lines.push(
        `| CKA_ALLOWED_MECHANISMS | ${c.allowedMechanisms === null ? "not kept" : c.allowedMechanisms.join(", ")} |`,
      );
      if (c.weaknesses.length > 0) lines.push("", `Not accepted here: ${c.weaknesses.join("; ")}.`);
    }
  } else {
    lines.push(
      "Template and data objects not tried: give the user PIN (LINESIGN_USER_PIN) to try them.",
    );
  }
  lines.push("");
  lines.push(
    `PIN: length ${p.pin.minLength}-${p.pin.maxLength}; user ${pinState(p.pin.userLocked, p.pin.userFinalTry, p.pin.userCountLow)}; SO ${pinState(p.pin.soLocked, p.pin.soFinalTry, p.pin.soCountLow)}`,
  );
  lines.push("");
  lines.push("| mechanism | key sizes | flags |");
  lines.push("|---|---|---|");
  for (const m of [...p.mechanisms].sort((x, y) => x.name.localeCompare(y.name)))
    lines.push(`| ${m.name} | ${m.minKeySize}-${m.maxKeySize} | ${m.flags.join(", ")} |`);
  return lines.join("\n") + "\n";
}

function pinState(locked: boolean, finalTry: boolean, low: boolean): string {
  return locked ? "LOCKED" : finalTry ? "one attempt left" : low ? "a wrong PIN was entered" : "ok";
}
