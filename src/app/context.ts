/**
 * What every use case is given: ports, who is acting, and the station's
 * identity. Built by src/compose.ts; nothing here picks an adapter.
 */
import { outcomeOf, toLinesignError } from "../domain/errors.js";
import type { ChainHash } from "../domain/event-log.js";
import type { Logger } from "../domain/logger.js";
import type {
  Clock,
  KeyStore,
  SoftwareKeyStore,
  StationStore,
  TokenDataStore,
  TokenRegisterStore,
  TokenOfficer,
  TokenProvisioner,
} from "../domain/ports.js";
import type { StationHealth } from "./health.js";

export interface AppContext {
  store: StationStore;
  /** The event log's hash step (node's SHA-256, passed in by src/compose.ts). */
  chainHash: ChainHash;
  /** Opened on first use, so commands that need no HSM never ask for a PIN. */
  keys: () => KeyStore;
  /** Token administration (same module session as `keys`). */
  tokenAdmin: () => TokenProvisioner & TokenOfficer;
  /** Data objects in the token (the checkpointed log head). */
  tokenData: () => TokenDataStore & TokenRegisterStore;
  softKeys: SoftwareKeyStore;
  logger: Logger;
  clock: Clock;
  /** Who is acting, as recorded in the log. */
  actor: string;
  stationId: string;
  /** The token that holds the station's CA keys. */
  tokenLabel: string;
  development: boolean;
  /** The open signing session; issuance calls `use()` before it signs (refused outside one). */
  signing: { use(): void };
  /** Faults of the station itself (storage, log head, token) that stop signing until they go. */
  health: StationHealth;
}

/**
 * Runs a use case; if it throws, records the refusal or failure in the event
 * log (code, operator-safe message) and the cause in the structured log, then
 * rethrows it as a LinesignError. Success is recorded by the use case itself,
 * in the same transaction as its state change.
 */
export async function act<T>(
  ctx: AppContext,
  action: string,
  subject: string | null,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (e) {
    const err = toLinesignError(e);
    ctx.logger.error({ action, subject, code: err.code, err: e }, err.message);
    try {
      ctx.store.appendEvent({
        actor: ctx.actor,
        action,
        subject,
        outcome: outcomeOf(err.code),
        code: err.code,
        message: err.message,
        details: err.details,
      });
    } catch (logErr) {
      ctx.logger.error({ action, err: logErr }, "could not record the refusal in the event log");
    }
    throw err;
  }
}

/**
 * Makes a state change and records it as `action` in the event log, in one
 * transaction: both are there, or neither.
 */
export function recordChange(
  ctx: AppContext,
  entry: { action: string; subject: string | null; details: Record<string, unknown> },
  change: () => void,
): void {
  ctx.store.transaction(() => {
    change();
    ctx.store.appendEvent({ actor: ctx.actor, outcome: "ok", ...entry });
  });
}
