/**
 * Token custody acts: the station's wrong-PIN guard, and the officer's unlock.
 * SoftHSM never locks a user PIN; real HSMs do (some zeroise), so the station
 * stops presenting PINs after `maxAttempts` consecutive failures.
 */
import { LinesignError } from "../domain/errors.js";
import { checkTokenLabel } from "../domain/pkcs11-uri.js";
import type { LoginGuard, TokenInfo } from "../domain/ports.js";
import { act, type AppContext } from "./context.js";

/** Default consecutive wrong PINs before the station stops trying. */
export const DEFAULT_MAX_PIN_ATTEMPTS = 5;

/** The LoginGuard the PKCS#11 adapter calls around each login. */
export function pinGuard(ctx: AppContext, maxAttempts: number): LoginGuard {
  return {
    beforeLogin(token) {
      const state = ctx.store.pinGuard(token);
      if (state.lockedAt) {
        throw new LinesignError(
          "HSM_PIN_LOCKED",
          `The station stopped using the PIN of token "${token}" after ${state.failures} wrong attempts (at ${state.lockedAt}). ` +
            `A security officer must run "linesign token unlock --token ${token}" with the SO PIN in LINESIGN_SO_PIN.`,
          { details: { token, failures: state.failures } },
        );
      }
    },
    loginFailed(token) {
      const state = ctx.store.pinGuard(token);
      const failures = state.failures + 1;
      const lock = failures >= maxAttempts;
      ctx.store.transaction(() => {
        ctx.store.setPinGuard(token, {
          failures,
          lockedAt: lock ? ctx.clock.now().toISOString() : null,
        });
        if (lock) {
          ctx.store.appendEvent({
            actor: ctx.actor,
            action: "token.pin-locked",
            subject: token,
            outcome: "refused",
            code: "HSM_PIN_LOCKED",
            message: `${failures} consecutive wrong PINs: the station will not present a PIN to this token until an officer unlocks it.`,
            details: { failures, maxAttempts },
          });
        }
      });
    },
    loginSucceeded(token) {
      if (ctx.store.pinGuard(token).failures > 0)
        ctx.store.setPinGuard(token, { failures: 0, lockedAt: null });
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
   * @throws LinesignError HSM_PIN_INCORRECT (wrong SO PIN), HSM_TOKEN_NOT_FOUND
   */
  async unlock(token: string, soPin: string, newUserPin?: string): Promise<void> {
    await act(this.ctx, "token.unlock", token, async () => {
      this.ctx.tokenAdmin().officerReset(token, soPin, newUserPin);
      this.ctx.store.transaction(() => {
        this.ctx.store.setPinGuard(token, { failures: 0, lockedAt: null });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "token.unlock",
          subject: token,
          outcome: "ok",
          details: { userPinChanged: newUserPin !== undefined },
        });
      });
    });
  }
}
