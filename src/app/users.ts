/**
 * People and roles. Passphrases are kept only as scrypt hashes (N = 2^17,
 * r 8, p 1: OWASP's current guidance), computed off the event loop; a hash
 * made with weaker parameters is replaced at its next successful sign-in.
 *
 * A failed sign-in waits longer each time (250 ms doubling, at most 4 s); the
 * fifth failure in a row locks the account for `LOCK_MINUTES`, after which
 * the lock lifts by itself. The last officer who can sign in is locked like
 * anyone (never for good, which would let anyone at the login screen stop
 * the station). An officer's `user reset`, or anyone proving the
 * token's SO PIN (`user unlock`, break-glass when every officer is locked),
 * lifts it at once. Each attempt is counted before the passphrase is checked,
 * in one transaction, so parallel guesses cannot share one count.
 *
 * Every failed sign-in is answered alike, in the same time: an unknown name
 * is checked against a dummy hash, and the reply never says whether the name
 * exists, is locked or is disabled. The log records the reason for auditors,
 * and never an unrecognised name verbatim (it is often a passphrase typed in
 * the wrong field). Every sign-in, failure, lock, unlock and change is logged.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { LinesignError } from "../domain/errors.js";
import type { UserRecord } from "../domain/ports.js";
import { isAllowed, ROLES, type Role, type Rule } from "../domain/roles.js";
import { act, recordChange, type AppContext } from "./context.js";

/** The development station's officer, named in README; used when no user is named there. */
export const DEV_OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" } as const;
export const MAX_FAILURES = 5;
/** How long a lock lasts before it lifts by itself. */
export const LOCK_MINUTES = 15;
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const SCRYPT = { N: 2 ** 17, r: 8, p: 1 };
/** scrypt needs 128 * N * r bytes; node's default cap (32 MiB) is below that. */
const MAXMEM = 256 * 1024 * 1024;
/** Every failed sign-in gets this reply. */
export const SIGN_IN_FAILED =
  "Sign-in failed: the name or passphrase is wrong, or this account cannot sign in now. Try again, or ask an officer.";

function scryptAsync(
  passphrase: string,
  salt: Buffer,
  len: number,
  o: { N: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(passphrase, salt, len, { ...o, maxmem: MAXMEM }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** A new scrypt hash, computed in libuv's thread pool (not on the event loop). */
export async function hashPassphrase(passphrase: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(passphrase, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** Whether the passphrase matches the stored hash, and whether the hash is weaker than today's. */
export async function passphraseMatches(
  passphrase: string,
  stored: string,
): Promise<{ ok: boolean; weak: boolean }> {
  const [kind, n, r, p, salt, hash] = stored.split("$");
  const N = Number(n);
  if (kind !== "scrypt" || !salt || !hash || !Number.isInteger(N) || N < 2 || N > 2 ** 20)
    return { ok: false, weak: true };
  const want = Buffer.from(hash, "base64");
  try {
    const got = await scryptAsync(passphrase, Buffer.from(salt, "base64"), want.length, {
      N,
      r: Number(r),
      p: Number(p),
    });
    return {
      ok: timingSafeEqual(got, want),
      weak: N < SCRYPT.N || Number(r) < SCRYPT.r,
    };
  } catch {
    return { ok: false, weak: true };
  }
}

/** A hash no passphrase matches, made once: unknown names are checked against it, at the same cost. */
let dummyHash: Promise<string> | null = null;
const dummy = () => (dummyHash ??= hashPassphrase(randomBytes(16).toString("base64")));

export interface UserView {
  name: string;
  role: Role;
  disabled: boolean;
  /** Locked now: a lock whose time is over is shown as lifted (it is cleared at the next sign-in). */
  locked: boolean;
  /** When the lock lifts by itself, while it holds. */
  lockedUntil: string | null;
  createdBy: string;
  createdAt: string;
}

/** When a lock taken at `lockedAt` lifts by itself (ms since the epoch). */
const lockEnds = (lockedAt: string): number => new Date(lockedAt).getTime() + LOCK_MINUTES * 60_000;

/** Whether the user's lock holds at `now` (a lock lifts by itself after LOCK_MINUTES). */
const lockHolds = (u: UserRecord, now: Date): boolean =>
  u.lockedAt !== null && now.getTime() < lockEnds(u.lockedAt);

const view = (u: UserRecord, now: Date): UserView => {
  const locked = lockHolds(u, now);
  return {
    name: u.name,
    role: u.role,
    disabled: u.disabled,
    locked,
    lockedUntil: locked ? new Date(lockEnds(u.lockedAt!)).toISOString() : null,
    createdBy: u.createdBy,
    createdAt: u.createdAt,
  };
};

function checkPassphrase(p: string): void {
  if (p.length < 8)
    throw new LinesignError("PASSPHRASE_WEAK", "A passphrase needs at least 8 characters.");
}

export class UserService {
  /** Failures in a row per unrecognised name (kept in memory, bounded), so they wait as a real user would. */
  private readonly unknownFailures = new Map<string, number>();

  constructor(
    private readonly ctx: AppContext,
    private readonly sleep: (ms: number) => Promise<void> = (ms) =>
      new Promise((r) => setTimeout(r, ms)),
  ) {}

  hasUsers(): boolean {
    return this.ctx.store.listUsers().length > 0;
  }

  list(): UserView[] {
    return this.ctx.store.listUsers().map((u) => this.view(u));
  }

  add(name: string, role: string, passphrase: string): Promise<UserView> {
    return act(this.ctx, "user.add", name, async () => {
      if (!NAME.test(name))
        throw new LinesignError(
          "USAGE",
          `User name "${name}" may use letters, digits and . _ @ - (at most 64).`,
        );
      if (!(ROLES as readonly string[]).includes(role))
        throw new LinesignError("USAGE", `"${role}" is not a role. Roles: ${ROLES.join(", ")}.`);
      checkPassphrase(passphrase);
      const u: UserRecord = {
        name,
        role: role as Role,
        hash: await hashPassphrase(passphrase),
        failures: 0,
        lockedAt: null,
        disabled: false,
        createdBy: this.ctx.actor,
        createdAt: this.ctx.clock.now().toISOString(),
      };
      recordChange(this.ctx, { action: "user.add", subject: name, details: { role } }, () =>
        this.ctx.store.insertUser(u),
      );
      return this.view(u);
    });
  }

  /**
   * Stops a user from signing in; the station service ends their kiosk sign-ins at their next call.
   * @throws LinesignError USAGE (no such user), LAST_OFFICER (the last officer who can sign in)
   */
  disable(name: string): Promise<UserView> {
    return this.change(name, "user.disable", { disabled: true }, () => {
      if (this.lastOfficer(name))
        throw new LinesignError(
          "LAST_OFFICER",
          `${name} is the last officer who can sign in: disabling them would leave no one to manage the station. Add another officer first ("linesign user add --role officer").`,
        );
    });
  }

  /**
   * The signed-in user's own new passphrase (their sign-in proved the old one).
   * @throws LinesignError PASSPHRASE_WEAK, USAGE
   */
  async changePassphrase(name: string, passphrase: string): Promise<UserView> {
    checkPassphrase(passphrase);
    return this.change(name, "user.passphrase", { hash: await hashPassphrase(passphrase) });
  }

  private view(u: UserRecord): UserView {
    return view(u, this.ctx.clock.now());
  }

  /** Whether `name` is an officer and no other officer can sign in (now, or when their lock lifts). */
  private lastOfficer(name: string): boolean {
    const now = this.ctx.clock.now();
    const usable = (u: UserRecord) => u.role === "officer" && !u.disabled && !lockHolds(u, now);
    const me = this.ctx.store.getUser(name);
    if (!me || !usable(me)) return false;
    return !this.ctx.store.listUsers().some((u) => u.name !== name && usable(u));
  }

  /** A new passphrase; lifts a lock and clears the failures; the user's kiosk sign-ins end. */
  async reset(name: string, passphrase: string): Promise<UserView> {
    checkPassphrase(passphrase);
    return this.change(name, "user.reset", {
      hash: await hashPassphrase(passphrase),
      failures: 0,
      lockedAt: null,
      disabled: false,
    });
  }

  /**
   * Break-glass: lifts a user's lock for whoever proves the station token's SO
   * PIN (`prove` logs in as SO and throws HSM_PIN_INCORRECT otherwise), so a
   * station whose every officer is locked is not stopped until the lock lifts.
   * @throws LinesignError USAGE (no such user), HSM_PIN_INCORRECT
   */
  unlock(name: string, prove: () => void): Promise<UserView> {
    return act(this.ctx, "user.unlock", name, async () => {
      this.must(name);
      prove();
      recordChange(
        this.ctx,
        { action: "user.unlock", subject: name, details: { proof: "so-pin" } },
        () => this.ctx.store.updateUser(name, { failures: 0, lockedAt: null }),
      );
      return this.view(this.must(name));
    });
  }

  private change(
    name: string,
    action: string,
    patch: Partial<UserRecord>,
    check: () => void = () => {},
  ): Promise<UserView> {
    return act(this.ctx, action, name, async () => {
      this.must(name);
      check();
      recordChange(this.ctx, { action, subject: name, details: {} }, () =>
        this.ctx.store.updateUser(name, patch),
      );
      return this.view(this.must(name));
    });
  }

  private must(name: string): UserRecord {
    const u = this.ctx.store.getUser(name);
    if (!u) throw new LinesignError("USAGE", `No user is named "${name}".`);
    return u;
  }

  /**
   * Signs a person in for one command and checks the command's rule. On a
   * development station with no user named, the development officer acts.
   */
  async signIn(
    who: { name?: string; passphrase?: string },
    rule: Rule,
    command: string,
  ): Promise<UserRecord | null> {
    if (rule === "none") return null;
    if (!who.name) {
      const dev = this.ctx.development ? this.ctx.store.getUser(DEV_OFFICER.name) : null;
      if (dev) return this.allow(dev, rule, command);
      throw new LinesignError(
        "AUTH_REQUIRED",
        this.hasUsers()
          ? `"${command}" needs a signed-in user: set LINESIGN_USER and LINESIGN_PASSPHRASE, or run on a terminal to be asked.`
          : 'This station has no users yet: run "linesign init" with LINESIGN_USER and LINESIGN_PASSPHRASE to create the first officer.',
      );
    }
    const user = await this.login(who.name, who.passphrase ?? "");
    return this.allow(user, rule, command);
  }

  private allow(user: UserRecord, rule: Rule, command: string): UserRecord {
    if (isAllowed(rule, user.role)) return user;
    const need = rule === "any" || rule === "none" ? [] : rule;
    throw new LinesignError(
      "ROLE_FORBIDDEN",
      `"${command}" needs the ${need.join(" or ")} role; ${user.name} is ${user.role === "officer" || user.role === "operator" || user.role === "auditor" ? `an ${user.role}` : `the ${user.role} service`}.`,
      { details: { user: user.name, role: user.role, needed: need } },
    );
  }

  /** Locks the account for LOCK_MINUTES (once: parallel failures take one lock), and logs it. */
  private lockAfterFailures(name: string, now: Date): void {
    const store = this.ctx.store;
    store.transaction(() => {
      const u = store.getUser(name);
      if (!u || u.lockedAt !== null || u.failures < MAX_FAILURES) return;
      store.updateUser(name, { lockedAt: now.toISOString() });
      store.appendEvent({
        actor: name,
        action: "user.lock",
        subject: name,
        outcome: "refused",
        code: "AUTH_LOCKED",
        message: `locked for ${LOCK_MINUTES} minutes after ${u.failures} failed sign-ins`,
        details: {
          failures: u.failures,
          minutes: LOCK_MINUTES,
          until: new Date(now.getTime() + LOCK_MINUTES * 60_000).toISOString(),
        },
      });
    });
  }

  private async login(name: string, passphrase: string): Promise<UserRecord> {
    const store = this.ctx.store;
    const now = this.ctx.clock.now();
    const known = NAME.test(name) ? store.getUser(name) : null;
    // Count this attempt before the slow check, in one transaction: parallel guesses see each other.
    const counted = known
      ? store.transaction(() => {
          const u = store.getUser(name)!;
          if (u.lockedAt !== null && !lockHolds(u, now)) {
            // The lock lifts by itself after its time.
            store.updateUser(name, { failures: 0, lockedAt: null });
            store.appendEvent({
              actor: "station",
              action: "user.unlock",
              subject: name,
              outcome: "ok",
              details: { reason: "lock-expired", minutes: LOCK_MINUTES },
            });
            u.failures = 0;
            u.lockedAt = null;
          }
          const attempt = u.failures + 1;
          store.updateUser(name, { failures: attempt });
          return { user: u, attempt, locked: u.lockedAt !== null };
        })
      : null;
    const check = await passphraseMatches(passphrase, counted?.user.hash ?? (await dummy()));
    const u = counted?.user ?? null;
    const why = !u
      ? "unknown-name"
      : u.disabled
        ? "disabled"
        : counted!.locked
          ? "locked"
          : counted!.attempt > MAX_FAILURES
            ? "too-many-at-once"
            : !check.ok
              ? "wrong-passphrase"
              : null;
    if (why !== null || !u) {
      let attempt: number;
      if (u) attempt = counted!.attempt;
      else {
        attempt = (this.unknownFailures.get(name) ?? 0) + 1;
        if (this.unknownFailures.size >= 1000) this.unknownFailures.clear();
        this.unknownFailures.set(name, attempt);
      }
      // Every account is locked for a time, the last officer too: the lock lifts by itself, and
      // break-glass (the SO PIN) lifts it at once. A permanent refusal would let anyone at the
      // login screen stop the station.
      if (u && attempt >= MAX_FAILURES) this.lockAfterFailures(name, now);
      // Each failure in a row waits longer before it is answered.
      await this.sleep(Math.min(4000, 250 * 2 ** (Math.min(attempt, 5) - 1)));
      // An unrecognised name is not logged: it is often a passphrase typed into the name field.
      store.appendEvent({
        actor: u ? name : "(unrecognised name)",
        action: "user.login",
        subject: u ? name : null,
        outcome: "refused",
        code: "AUTH_FAILED",
        message: SIGN_IN_FAILED,
        details: { reason: why, ...(u ? {} : { nameLength: name.length }) },
      });
      throw new LinesignError("AUTH_FAILED", SIGN_IN_FAILED);
    }
    const upgraded = check.weak ? await hashPassphrase(passphrase) : null;
    store.updateUser(name, { failures: 0, ...(upgraded ? { hash: upgraded } : {}) });
    store.appendEvent({
      actor: name,
      action: "user.login",
      subject: name,
      outcome: "ok",
      details: { role: u.role, ...(upgraded ? { hashUpgraded: `scrypt N=${SCRYPT.N}` } : {}) },
    });
    return u;
  }
}
