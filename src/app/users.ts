/**
 * People and roles. Passphrases are kept only as scrypt hashes. A failed
 * sign-in waits longer each time (250 ms doubling, at most 4 s) and the
 * fifth in a row locks the account until an officer resets it. Every
 * sign-in, failure, lock and change is in the event log.
 */
import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto";
import { LinesignError } from "../domain/errors.js";
import type { UserRecord } from "../domain/ports.js";
import { isAllowed, ROLES, type Role, type Rule } from "../domain/roles.js";
import { act, recordChange, type AppContext } from "./context.js";

/** The development station's officer, named in README; used when no user is named there. */
export const DEV_OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" } as const;
export const MAX_FAILURES = 5;
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const SCRYPT = { N: 16384, r: 8, p: 1 };

export function hashPassphrase(passphrase: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(passphrase, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

export function passphraseMatches(passphrase: string, stored: string): boolean {
  const [kind, n, r, p, salt, hash] = stored.split("$");
  if (kind !== "scrypt" || !salt || !hash) return false;
  const want = Buffer.from(hash, "base64");
  const got = scryptSync(passphrase, Buffer.from(salt, "base64"), want.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return timingSafeEqual(got, want);
}

export interface UserView {
  name: string;
  role: Role;
  disabled: boolean;
  locked: boolean;
  createdBy: string;
  createdAt: string;
}

const view = (u: UserRecord): UserView => ({
  name: u.name,
  role: u.role,
  disabled: u.disabled,
  locked: u.lockedAt !== null,
  createdBy: u.createdBy,
  createdAt: u.createdAt,
});

function checkPassphrase(p: string): void {
  if (p.length < 8)
    throw new LinesignError("PASSPHRASE_WEAK", "A passphrase needs at least 8 characters.");
}

export class UserService {
  constructor(
    private readonly ctx: AppContext,
    private readonly sleep: (ms: number) => Promise<void> = (ms) =>
      new Promise((r) => setTimeout(r, ms)),
  ) {}

  hasUsers(): boolean {
    return this.ctx.store.listUsers().length > 0;
  }

  list(): UserView[] {
    return this.ctx.store.listUsers().map(view);
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
        hash: hashPassphrase(passphrase),
        failures: 0,
        lockedAt: null,
        disabled: false,
        createdBy: this.ctx.actor,
        createdAt: this.ctx.clock.now().toISOString(),
      };
      recordChange(this.ctx, { action: "user.add", subject: name, details: { role } }, () =>
        this.ctx.store.insertUser(u),
      );
      return view(u);
    });
  }

  disable(name: string): Promise<UserView> {
    return this.change(name, "user.disable", { disabled: true });
  }

  /** A new passphrase; lifts a lock and clears the failures. */
  reset(name: string, passphrase: string): Promise<UserView> {
    checkPassphrase(passphrase);
    return this.change(name, "user.reset", {
      hash: hashPassphrase(passphrase),
      failures: 0,
      lockedAt: null,
      disabled: false,
    });
  }

  private change(name: string, action: string, patch: Partial<UserRecord>): Promise<UserView> {
    return act(this.ctx, action, name, async () => {
      this.must(name);
      recordChange(this.ctx, { action, subject: name, details: {} }, () =>
        this.ctx.store.updateUser(name, patch),
      );
      return view(this.must(name));
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

  private async login(name: string, passphrase: string): Promise<UserRecord> {
    const refuse = (code: "AUTH_FAILED" | "AUTH_LOCKED" | "AUTH_DISABLED", message: string) => {
      this.ctx.store.appendEvent({
        actor: name,
        action: "user.login",
        subject: name,
        outcome: "refused",
        code,
        message,
        details: {},
      });
      return new LinesignError(code, message);
    };
    const u = this.ctx.store.getUser(name);
    if (u?.disabled) throw refuse("AUTH_DISABLED", `User ${name} is disabled: ask an officer.`);
    if (u?.lockedAt)
      throw refuse(
        "AUTH_LOCKED",
        `User ${name} is locked after ${MAX_FAILURES} wrong passphrases: an officer must reset it ("linesign user reset --name ${name}").`,
      );
    if (!u || !passphraseMatches(passphrase, u.hash)) {
      const failures = (u?.failures ?? 0) + 1;
      // Each failure in a row waits longer before it is answered.
      await this.sleep(Math.min(4000, 250 * 2 ** (failures - 1)));
      if (u) {
        const locked = failures >= MAX_FAILURES;
        this.ctx.store.updateUser(name, {
          failures,
          lockedAt: locked ? this.ctx.clock.now().toISOString() : null,
        });
        if (locked) {
          this.ctx.store.appendEvent({
            actor: name,
            action: "user.lock",
            subject: name,
            outcome: "refused",
            code: "AUTH_LOCKED",
            message: `locked after ${failures} wrong passphrases`,
            details: { failures },
          });
        }
      }
      throw refuse("AUTH_FAILED", "The user name or passphrase is wrong.");
    }
    if (u.failures > 0) this.ctx.store.updateUser(name, { failures: 0 });
    this.ctx.store.appendEvent({
      actor: name,
      action: "user.login",
      subject: name,
      outcome: "ok",
      details: { role: u.role },
    });
    return u;
  }
}
