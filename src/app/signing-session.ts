/**
 * Signing sessions. Nothing is issued outside one. An officer opens it with
 * the token's user PIN, which the station keeps in memory only, and only
 * while the session lasts; it ends when the officer closes it or logs out,
 * after `idleMs` with neither signing nor officer activity, or when the
 * station stops. Operators never hold the PIN: they run the line inside the
 * session an officer opened.
 *
 * For a one-shot CLI command the session is the process: the signed-in
 * officer's command asks for the PIN (LINESIGN_USER_PIN, a prompt, or the
 * development default) the first time the token is needed, and the session
 * ends with the process.
 */
import { isLinesignError, LinesignError } from "../domain/errors.js";
import type { Role } from "../domain/roles.js";
import { act, type AppContext } from "./context.js";

export type SessionKind = "kiosk" | "process";
/** "disabled" and "reset": the officer's account was disabled or given a new passphrase. */
export type SessionEnd = "closed" | "logout" | "idle" | "shutdown" | "disabled" | "reset";

export interface SigningSessionView {
  open: boolean;
  officer: string | null;
  kind: SessionKind | null;
  openedAt: string | null;
  lastUsedAt: string | null;
  idleTimeoutSeconds: number;
  /** When the session ends unless something uses it first. */
  idleEndsAt: string | null;
  /** Certificates and other signatures made in this session. */
  uses: number;
}

/** What a signing session needs of the token: a login now, and a logout. */
export interface TokenLogin {
  login(): Promise<void>;
  logout(): void;
  loggedIn(): boolean;
}

interface Current {
  officer: string;
  kind: SessionKind;
  /**
   * The PIN as bytes, overwritten with zeros when the session ends (a string
   * cannot be wiped); or (process sessions) how to get it when first needed.
   */
  pin: Buffer | null;
  askPin: (() => Promise<string>) | null;
  openedAt: Date;
  lastUsedAt: Date;
  uses: number;
  /** Process sessions are recorded when the token is first used, not when the command starts. */
  recorded: boolean;
  /** The session is ending (its close has begun): nothing more is signed in it. */
  ending: boolean;
}

const DEFAULT_IDLE_MS = 15 * 60_000;

export class SigningSessions {
  private current: Current | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Asked before each signature (the service ends the session of an officer disabled or reset). */
  private beforeUse: () => void = () => {};
  private readonly listeners: ((v: SigningSessionView) => void)[] = [];

  constructor(
    private readonly ctx: AppContext,
    private readonly token: TokenLogin,
    private readonly idleMs: number = DEFAULT_IDLE_MS,
    /** Runs at the end of a session while the token is still logged in (the log checkpoint). */
    private readonly beforeLogout: () => Promise<void> = async () => {},
  ) {}

  /** Told whenever a session opens or ends (the kiosk redraws, the line holds). Returns how to stop. */
  onChange(listener: (v: SigningSessionView) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  isOpen(): boolean {
    return this.current !== null;
  }

  view(): SigningSessionView {
    const c = this.current;
    return {
      open: c !== null,
      officer: c?.officer ?? null,
      kind: c?.kind ?? null,
      openedAt: c?.openedAt.toISOString() ?? null,
      lastUsedAt: c?.lastUsedAt.toISOString() ?? null,
      idleTimeoutSeconds: Math.round(this.idleMs / 1000),
      idleEndsAt:
        c?.kind === "kiosk" ? new Date(c.lastUsedAt.getTime() + this.idleMs).toISOString() : null,
      uses: c?.uses ?? 0,
    };
  }

  /**
   * An officer opens a session with the token's user PIN; the token is logged
   * in at once, so a wrong PIN is refused here and counted by the PIN guard.
   * @throws LinesignError ROLE_FORBIDDEN, SIGNING_SESSION_OPEN, HSM_PIN_INCORRECT, HSM_PIN_LOCKED
   */
  async open(officer: { name: string; role: Role }, pin: string): Promise<SigningSessionView> {
    return act(this.ctx, "signing.open", this.ctx.tokenLabel, async () => {
      if (officer.role !== "officer")
        throw new LinesignError(
          "ROLE_FORBIDDEN",
          `Only a security officer opens a signing session; ${officer.name} is ${officer.role === "sync" ? "the sync service" : `an ${officer.role}`}.`,
          { details: { user: officer.name, role: officer.role, needed: ["officer"] } },
        );
      if (this.current)
        throw new LinesignError(
          "SIGNING_SESSION_OPEN",
          `A signing session is already open (opened by ${this.current.officer} at ${this.current.openedAt.toISOString()}): close it first.`,
          { details: { officer: this.current.officer } },
        );
      if (!pin)
        throw new LinesignError(
          "HSM_PIN_REQUIRED",
          "Enter the token's user PIN to open a session.",
        );
      const now = this.ctx.clock.now();
      this.current = {
        officer: officer.name,
        kind: "kiosk",
        pin: Buffer.from(pin, "utf8"),
        askPin: null,
        openedAt: now,
        lastUsedAt: now,
        uses: 0,
        recorded: true,
        ending: false,
      };
      try {
        this.token.logout();
        await this.token.login();
      } catch (e) {
        this.current?.pin?.fill(0);
        this.current = null;
        throw e;
      }
      this.record("signing.open", { kind: "kiosk", idleTimeoutSeconds: this.idleMs / 1000 });
      this.arm();
      this.changed();
      return this.view();
    });
  }

  /**
   * A one-shot command's session: the signed-in officer's process. The PIN is
   * asked for (and the session recorded) only when the token is first needed.
   */
  openForProcess(officer: string, askPin: () => Promise<string>): void {
    const now = this.ctx.clock.now();
    this.current = {
      officer,
      kind: "process",
      pin: null,
      askPin,
      openedAt: now,
      lastUsedAt: now,
      uses: 0,
      recorded: false,
      ending: false,
    };
  }

  /**
   * The PIN for the token's login, from the open session.
   * @throws LinesignError SIGNING_SESSION_REQUIRED
   */
  async pin(): Promise<string> {
    const c = this.requireCurrent();
    if (c.pin === null && c.askPin) c.pin = Buffer.from(await c.askPin(), "utf8");
    if (!c.recorded) {
      c.recorded = true;
      try {
        this.record("signing.open", { kind: "process" });
      } catch (e) {
        // A home that takes no writes (full, read-only) still lets a command read and verify;
        // anything it would sign is refused at its own record.
        if (!isLinesignError(e) || !["DB_FULL", "DB_READ_ONLY"].includes(e.code)) throw e;
        this.ctx.logger.warn({ code: e.code }, "the signing session's start could not be recorded");
      }
    }
    return c.pin ? c.pin.toString("utf8") : "";
  }

  /**
   * Issuance calls this before it signs: refuses outside a session, and
   * counts as use (the idle clock starts again).
   * @throws LinesignError SIGNING_SESSION_REQUIRED
   */
  use(): void {
    this.beforeUse();
    const c = this.requireCurrent();
    if (c.ending) throw sessionEnded();
    c.uses++;
    this.touch();
  }

  /**
   * Refuses when no session is open (the line checks before it starts).
   * @throws LinesignError SIGNING_SESSION_REQUIRED
   */
  require(): void {
    if (this.requireCurrent().ending) throw sessionEnded();
  }

  /** What to check before each signature; it may close the session, and then nothing is signed. */
  checkBeforeUse(check: () => void): void {
    this.beforeUse = check;
  }

  /** Officer activity keeps the session from going idle. */
  touch(): void {
    if (!this.current) return;
    this.current.lastUsedAt = this.ctx.clock.now();
    this.arm();
  }

  /**
   * Ends the session: records it, checkpoints the log while the token is
   * still logged in, then forgets the PIN and logs the token out.
   */
  async close(reason: SessionEnd): Promise<SigningSessionView> {
    const c = this.current;
    // A close already under way (a logout and an account change at once) records the end once.
    if (!c || c.ending) return this.view();
    c.ending = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (c.recorded)
      this.ctx.store.appendEvent({
        actor: c.officer,
        action: "signing.close",
        subject: this.ctx.tokenLabel,
        outcome: "ok",
        details: {
          reason,
          kind: c.kind,
          uses: c.uses,
          seconds: Math.round((this.ctx.clock.now().getTime() - c.openedAt.getTime()) / 1000),
        },
      });
    try {
      if (this.token.loggedIn()) await this.beforeLogout();
    } catch (e) {
      this.ctx.logger.error({ err: e }, "the checkpoint at the end of a signing session failed");
    }
    this.current = null;
    c.pin?.fill(0);
    c.pin = null;
    try {
      this.token.logout();
    } catch (e) {
      this.ctx.logger.error({ err: e }, "logging out of the token at the end of a session failed");
    }
    this.changed();
    return this.view();
  }

  /** The officer logged out (or their account was disabled or reset): a session they opened ends with it. */
  async loggedOut(officer: string, reason: SessionEnd = "logout"): Promise<void> {
    if (this.current?.officer === officer) await this.close(reason);
  }

  /** The officer whose kiosk session is open (not a command's own process session), or null. */
  kioskOfficer(): string | null {
    return this.current?.kind === "kiosk" && !this.current.ending ? this.current.officer : null;
  }

  private requireCurrent(): Current {
    if (this.current) return this.current;
    throw new LinesignError(
      "SIGNING_SESSION_REQUIRED",
      "No signing session is open: a security officer must open one (kiosk: Officer > Open signing session; " +
        "command line: an officer's LINESIGN_USER and LINESIGN_PASSPHRASE with LINESIGN_USER_PIN).",
    );
  }

  private record(action: string, details: Record<string, unknown>): void {
    const c = this.current!;
    this.ctx.store.appendEvent({
      actor: c.officer,
      action,
      subject: this.ctx.tokenLabel,
      outcome: "ok",
      details,
    });
  }

  private arm(): void {
    if (this.current?.kind !== "kiosk") return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.close("idle"), this.idleMs);
    this.timer.unref();
  }

  private changed(): void {
    const v = this.view();
    for (const l of this.listeners) l(v);
  }
}

function sessionEnded(): LinesignError {
  return new LinesignError(
    "SIGNING_SESSION_REQUIRED",
    "The signing session has ended: a security officer must open a new one.",
  );
}
