/**
 * The sessions a token signs on: a few sessions of the slot beside the store's
 * main one, each running at most one operation at a time (PKCS#11 v2.40: a
 * session has at most one active operation of a kind; a second C_SignInit
 * answers CKR_OPERATION_ACTIVE). They are opened after the store's login, and
 * a login belongs to the application, not to one session (v2.40, section 5.6,
 * C_Login: "all sessions of the application with the token" are logged in),
 * so they are in the user state without presenting the PIN again.
 *
 * A session that failed in any way is closed, not reused: a C_Sign that fails
 * ends its operation, but one that failed half-way (CKR_BUFFER_TOO_SMALL keeps
 * it active) or a session the token lost would fail every later use.
 */
import os from "node:os";
import { pkcs11js, type Pkcs11 } from "./module.js";

type Handle = Buffer;

/**
 * The default number of signing sessions: as many as the machine has cores,
 * leaving two of libuv's threads (4 unless UV_THREADPOOL_SIZE says otherwise)
 * to file system, DNS and WebCrypto work; at least 1.
 */
export function defaultSignSessions(): number {
  const uvThreads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(os.availableParallelism(), uvThreads - 2));
}

/** The error a caller waiting for a session gets when the sessions ended (the token was lost or closed). */
export function sessionsEnded(): Error {
  return new pkcs11js.Pkcs11Error(
    `CKR_SESSION_CLOSED:${pkcs11js.CKR_SESSION_CLOSED}`,
    pkcs11js.CKR_SESSION_CLOSED,
    "C_OpenSession",
  );
}

export class SignSessions {
  private readonly idle: Handle[] = [];
  private readonly waiting: ((s: Handle | null) => void)[] = [];
  private open = 0;
  private ended = false;
  /** At most `size`; lowered to the sessions open when the token would hold no more. */
  private limit: number;

  constructor(
    private readonly lib: Pkcs11,
    private readonly slot: Handle,
    size: number,
    /** False once the module was initialised again: its old session handles may name new sessions. */
    private readonly current: () => boolean,
  ) {
    this.limit = size;
  }

  /** Sessions open now (idle or in use). */
  get opened(): number {
    return this.open;
  }

  /** A session for one operation; give it back with {@link give}. */
  async take(): Promise<Handle> {
    if (this.ended || !this.current()) throw sessionsEnded();
    const idle = this.idle.pop();
    if (idle) return idle;
    if (this.open < this.limit) {
      try {
        // Read-only: signing needs no write access (nor a R/W session's limits).
        const s = this.lib.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION);
        this.open++;
        return s;
      } catch (e) {
        // The token holds no more sessions (its limit, which counts the store's own session):
        // sign on those open, one after another, rather than fail the signature.
        if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_SESSION_COUNT)) throw e;
        if (this.open === 0) throw e;
        this.limit = this.open;
      }
    }
    const s = await new Promise<Handle | null>((r) => this.waiting.push(r));
    if (!s || !this.current()) throw sessionsEnded();
    return s;
  }

  /** Gives a session back: `ok` when its last operation completed, otherwise it is closed. */
  give(s: Handle, ok: boolean): void {
    if (!ok || this.ended) {
      this.closeOne(s);
      // A waiter gets a new session of its own.
      const next = this.waiting.shift();
      if (next) {
        if (this.ended) next(null);
        else
          void this.take().then(next, () => {
            next(null);
          });
      }
      return;
    }
    const next = this.waiting.shift();
    if (next) next(s);
    else this.idle.push(s);
  }

  /**
   * Ends the sessions: idle ones are closed now, those in use when they are
   * given back; callers waiting for one get CKR_SESSION_CLOSED (a loss: they
   * share the store's recovery).
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const s of this.idle.splice(0)) this.closeOne(s);
    for (const w of this.waiting.splice(0)) w(null);
  }

  private closeOne(s: Handle): void {
    this.open--;
    if (!this.current()) return;
    try {
      this.lib.C_CloseSession(s);
    } catch {
      // already gone with the token, the login or the module
    }
  }
}
