/**
 * People and roles: every command has a role rule; each role against each
 * rule; the growing delay and the lock; the CLI refusing an operator, an
 * auditor and a disabled user with a message naming the role needed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { COMMAND_ROLES, isAllowed, ROLES, type Role } from "../../src/domain/roles.js";
import { isLinesignError } from "../../src/domain/errors.js";
import { LOCK_MINUTES, UserService, type UserView } from "../../src/app/users.js";
import Database from "better-sqlite3";
import { randomBytes, scryptSync } from "node:crypto";
import { engineStation, type EngineStation } from "../helpers/engine.js";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { linesign, linesignAsync } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";

const PASS: Record<Role, string> = {
  operator: "operator-passphrase",
  officer: "officer-passphrase",
  auditor: "auditor-passphrase",
  sync: "sync-service-passphrase",
};

// scrypt at N=2^17 costs a second or more per sign-in on a loaded machine.
describe("roles", { timeout: 240_000 }, () => {
  let st: TestStation;
  const as = (role: Role, args: string[]) =>
    st.run(["--json", ...args], { LINESIGN_USER: `${role}-1`, LINESIGN_PASSPHRASE: PASS[role] });

  // The in-process tests share one engine station: each adds users of its own and reads only
  // the events it caused (made once, it saves a station's init and CA ceremony per test).
  let engine: Promise<EngineStation> | null = null;
  const engineOnce = () => (engine ??= engineStation());
  const eventsSince = (s: ReturnType<EngineStation["open"]>, from: number) =>
    [...s.ctx.store.events()].slice(from);

  beforeAll(() => {
    st = devStation();
    for (const role of ROLES) {
      const r = st.run(["user", "add", "--name", `${role}-1`, "--role", role, "--json"], {
        LINESIGN_NEW_PASSPHRASE: PASS[role],
      });
      expect(r.code, r.stdout).toBe(0);
    }
  });

  it("has a rule for every command, and only officers change the station (the line and sync aside)", () => {
    const paths = JSON.parse(linesign(["--list-commands"], st.env).stdout) as string[];
    expect(paths.length).toBeGreaterThan(35);
    for (const p of paths) expect(COMMAND_ROLES[p], `no role rule for "${p}"`).toBeDefined();
    for (const [p, rule] of Object.entries(COMMAND_ROLES)) {
      // "token probe --record": a command whose option makes it change the station.
      expect(paths, `rule for a command that does not exist: ${p}`).toContain(p.split(" --")[0]);
      if (rule === "any" || rule === "none") continue;
      expect(rule.length, p).toBeGreaterThan(0);
      // An auditor changes nothing: every rule that lets one in is a read.
      if (rule.includes("auditor"))
        expect([
          "audit log",
          "audit verify",
          "audit report",
          "audit export",
          "user list",
          "reissue list",
          // Read-only for an auditor: the recorded certificate (making one is "station-cert --root" or an officer's).
          "station-cert",
        ]).toContain(p);
      if (rule.includes("operator")) expect(p).toBe("line run");
    }
  });

  it("each role against each rule, through the real sign-in", async () => {
    const es = await engineOnce();
    const s = es.open();
    try {
      const users = new UserService(s.ctx, async () => undefined);
      // The roles are independent of each other: their hashes and sign-ins run side by side
      // (scrypt runs in libuv's thread pool), each role's own two in turn.
      await Promise.all(ROLES.map((role) => users.add(`t-${role}`, role, PASS[role])));
      const rules = [...new Set(Object.values(COMMAND_ROLES).map((r) => JSON.stringify(r)))].map(
        (r) => JSON.parse(r) as (typeof COMMAND_ROLES)[string],
      );
      // Each sign-in costs a full scrypt: per role, one rule that lets it in and one that does not.
      let forbidden = 0;
      await Promise.all(
        ROLES.map(async (role) => {
          const pick = [
            rules.find((r) => isAllowed(r, role)),
            rules.find((r) => !isAllowed(r, role)),
          ];
          for (const rule of pick) {
            if (rule === undefined) continue;
            const attempt = users.signIn({ name: `t-${role}`, passphrase: PASS[role] }, rule, "x");
            if (isAllowed(rule, role)) await expect(attempt).resolves.toBeDefined();
            else {
              forbidden++;
              await expect(attempt).rejects.toMatchObject({ code: "ROLE_FORBIDDEN" });
            }
          }
        }),
      );
      expect(forbidden).toBe(ROLES.length - 1);
    } finally {
      await s.close();
    }
  });

  it("waits longer after each wrong passphrase and locks after five, for a time; a reset lifts it", async () => {
    const es = await engineOnce();
    const s = es.open();
    const from = [...s.ctx.store.events()].length;
    try {
      const waits: number[] = [];
      const users = new UserService(s.ctx, async (ms) => void waits.push(ms));
      await users.add("mallory", "operator", "the-right-one");
      for (let i = 0; i < 5; i++) {
        const e = await users
          .signIn({ name: "mallory", passphrase: "guess" }, "any", "x")
          .catch((x: unknown) => x);
        expect(isLinesignError(e) && e.code).toBe("AUTH_FAILED");
      }
      expect(waits).toEqual([250, 500, 1000, 2000, 4000]);
      const locked = await users
        .signIn({ name: "mallory", passphrase: "the-right-one" }, "any", "x")
        .catch((x: unknown) => x);
      // Locked, but the reply is the same as for any failure.
      expect(isLinesignError(locked) && locked.code).toBe("AUTH_FAILED");
      await users.reset("mallory", "a-new-passphrase");
      await expect(
        users.signIn({ name: "mallory", passphrase: "a-new-passphrase" }, "any", "x"),
      ).resolves.toMatchObject({ name: "mallory" });
      const actions = eventsSince(s, from).map((e) => `${e.action}:${e.outcome}`);
      expect(actions.filter((a) => a === "user.login:refused")).toHaveLength(6);
      expect(actions).toContain("user.lock:refused");
      expect(actions).toContain("user.reset:ok");
      expect(actions.at(-1)).toBe("user.login:ok");
      // Passphrases are stored only as scrypt hashes.
      const row = s.ctx.store.getUser("mallory")!;
      expect(row.hash).toMatch(/^scrypt\$131072\$8\$1\$/);
      expect(row.hash).not.toContain("a-new-passphrase");
    } finally {
      await s.close();
    }
  });

  it("a lock lifts by itself after its time; parallel guesses share no count", async () => {
    const es = await engineOnce();
    const s = es.open();
    const from = [...s.ctx.store.events()].length;
    try {
      const users = new UserService(s.ctx, async () => undefined);
      await users.add("eve", "officer", "eve-right-one");
      // Eight guesses at once: each is counted before it is checked, so the right one among them fails too.
      const guesses = Array.from({ length: 8 }, (_, i) =>
        users
          .signIn({ name: "eve", passphrase: i === 6 ? "eve-right-one" : `guess-${i}` }, "any", "x")
          .then(
            () => "ok",
            (e: unknown) => (isLinesignError(e) ? e.code : "other"),
          ),
      );
      expect(new Set(await Promise.all(guesses))).toEqual(new Set(["AUTH_FAILED"]));
      const row = s.ctx.store.getUser("eve")!;
      expect(row.failures).toBe(8);
      expect(row.lockedAt).not.toBeNull();
      const refused = eventsSince(s, from).filter(
        (e) => e.action === "user.login" && e.outcome === "refused",
      );
      expect(
        refused.filter((e) => e.details.reason === "wrong-passphrase").length,
      ).toBeLessThanOrEqual(5);
      // Fifteen minutes later the lock lifts by itself, and the right passphrase signs in.
      const real = s.ctx.clock.now;
      s.ctx.clock.now = () => new Date(real().getTime() + (LOCK_MINUTES * 60 + 1) * 1000);
      await expect(
        users.signIn({ name: "eve", passphrase: "eve-right-one" }, "any", "x"),
      ).resolves.toMatchObject({ name: "eve" });
      s.ctx.clock.now = real;
      expect(
        eventsSince(s, from).some((e) => e.action === "user.unlock" && e.actor === "station"),
      ).toBe(true);
    } finally {
      await s.close();
    }
  });

  it("answers every failed sign-in alike and never logs an unrecognised name", async () => {
    const es = await engineOnce();
    const s = es.open();
    try {
      const waits: number[] = [];
      const users = new UserService(s.ctx, async (ms) => void waits.push(ms));
      await users.add("gone", "operator", "gone-passphrase");
      await users.add("held", "operator", "held-passphrase");
      await users.disable("gone");
      for (let i = 0; i < 5; i++)
        await users.signIn({ name: "held", passphrase: "no" }, "any", "x").catch(() => undefined);
      const attempt = (name: string, passphrase: string) =>
        users.signIn({ name, passphrase }, "any", "x").then(
          () => null,
          (e: unknown) => (isLinesignError(e) ? { code: e.code, message: e.message } : null),
        );
      waits.length = 0;
      const replies = [
        await attempt("gone", "gone-passphrase"),
        await attempt("held", "held-passphrase"),
        await attempt("nobody", "x"),
        await attempt("my-secret-passphrase-typed-here", "x"),
      ];
      for (const r of replies) expect(r).toEqual(replies[0]);
      expect(replies[0]!.code).toBe("AUTH_FAILED");
      expect(replies[0]!.message).not.toMatch(/gone|held|disabled|locked/i);
      // Unknown names wait as a known one does.
      expect(waits[2]).toBe(250);
      const log = JSON.stringify([...s.ctx.store.events()]);
      expect(log).not.toContain("my-secret-passphrase-typed-here");
      expect(log).not.toContain("nobody");
    } finally {
      await s.close();
    }
  });

  it("hashes off the event loop at N=2^17 and upgrades a weaker hash at the next sign-in", async () => {
    const es = await engineOnce();
    const s = es.open();
    try {
      const users = new UserService(s.ctx, async () => undefined);
      await users.add("old", "operator", "old-passphrase");
      const salt = randomBytes(16);
      const weak = `scrypt$16384$8$1$${salt.toString("base64")}$${scryptSync("old-passphrase", salt, 32, { N: 16384 }).toString("base64")}`;
      s.ctx.store.updateUser("old", { hash: weak });
      // The event loop turns while the hash is computed.
      let turns = 0;
      let spinning = true;
      const spin = () => {
        turns++;
        if (spinning) setImmediate(spin);
      };
      setImmediate(spin);
      await users.signIn({ name: "old", passphrase: "old-passphrase" }, "any", "x");
      spinning = false;
      expect(turns).toBeGreaterThan(5);
      expect(s.ctx.store.getUser("old")!.hash).toMatch(/^scrypt\$131072\$8\$1\$/);
      await expect(
        users.signIn({ name: "old", passphrase: "old-passphrase" }, "any", "x"),
      ).resolves.toMatchObject({ name: "old" });
    } finally {
      await s.close();
    }
  });

  it("the last officer is locked for a time like anyone, never for good; the SO PIN lifts a lock at once", async () => {
    // With the development officer disabled, officer-1 is the last officer who can sign in.
    expect(as("officer", ["user", "disable", "--name", "dev-officer"]).code).toBe(0);
    // Five wrong guesses at once (each is counted before it is checked): the fifth locks.
    const lockOut = async () => {
      const guesses = await Promise.all(
        Array.from({ length: 5 }, () =>
          linesignAsync(["--json", "status"], {
            ...st.env,
            LINESIGN_USER: "officer-1",
            LINESIGN_PASSPHRASE: "wrong-one",
          }),
        ),
      );
      for (const g of guesses) expect(g.json.error).toMatchObject({ code: "AUTH_FAILED" });
    };
    await lockOut();
    const users = as("auditor", ["user", "list"]).json.users as UserView[];
    const shown = users.find((u) => u.name === "officer-1")!;
    expect(shown.locked).toBe(true);
    const until = Date.parse(shown.lockedUntil!) - Date.now();
    expect(until).toBeGreaterThan((LOCK_MINUTES - 2) * 60_000);
    expect(until).toBeLessThanOrEqual(LOCK_MINUTES * 60_000);
    const db = new Database(join(st.home, "station.db"));
    const row = () =>
      db.prepare("SELECT failures, locked_at FROM users WHERE name = 'officer-1'").get() as {
        failures: number;
        locked_at: string | null;
      };
    try {
      // Once the lock's time has passed (moved back in the database), the right passphrase signs in.
      const past = new Date(Date.now() - (LOCK_MINUTES * 60 + 1) * 1000).toISOString();
      const moved = db
        .prepare(
          "UPDATE users SET locked_at = ? WHERE name = 'officer-1' AND locked_at IS NOT NULL",
        )
        .run(past);
      expect(moved.changes).toBe(1);
      expect(as("officer", ["status"]).code).toBe(0);
      expect(row()).toEqual({ failures: 0, locked_at: null });
      // Break-glass, on a lock as the station keeps it: a wrong SO PIN lifts nothing, the right one
      // lifts it at once.
      const now = new Date().toISOString();
      db.prepare("UPDATE users SET failures = 5, locked_at = ? WHERE name = 'officer-1'").run(now);
      const bad = st.run(["--json", "user", "unlock", "--name", "officer-1"], {
        LINESIGN_SO_PIN: "00000000",
      });
      expect(bad.json.error).toMatchObject({ code: "HSM_PIN_INCORRECT" });
      expect(row()).toEqual({ failures: 5, locked_at: now });
      const ok = st.run(["--json", "user", "unlock", "--name", "officer-1"], {
        LINESIGN_SO_PIN: "13572468",
      });
      expect(ok.code, ok.stdout).toBe(0);
      expect(row()).toEqual({ failures: 0, locked_at: null });
    } finally {
      db.close();
    }
    expect(as("officer", ["status"]).code).toBe(0);
    const events = st.events();
    expect(
      events.filter((e) => e.action === "user.lock" && e.subject === "officer-1"),
    ).toHaveLength(1);
    const unlocks = events.filter((e) => e.action === "user.unlock");
    expect(unlocks.map((e) => [e.actor === "station", e.outcome])).toEqual([
      [true, "ok"],
      [false, "refused"],
      [false, "ok"],
    ]);
  });

  it("an officer's command is its own signing session; an operator's line never presents the PIN", () => {
    const before = st.events().length;
    const csr = st.file(
      "session-1.csr",
      csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "session-1"]] })),
    );
    const issued = as("officer", ["issue", "--csr", csr, "--out", join(st.home, "session-1.pem")]);
    expect(issued.code, issued.stdout + issued.stderr).toBe(0);
    const session = st
      .events()
      .slice(before)
      .filter((e) => e.action.startsWith("signing.") || e.action === "issuance.issue");
    expect(
      session.map((e) => [e.action, e.actor, (JSON.parse(e.details) as { kind?: string }).kind]),
    ).toEqual([
      ["signing.open", "officer-1", "process"],
      ["issuance.issue", "officer-1", undefined],
      ["signing.close", "officer-1", "process"],
    ]);
    // A command that needs no token opens no session.
    const quiet = st.events().length;
    expect(as("officer", ["ca", "list"]).code).toBe(0);
    expect(
      st
        .events()
        .slice(quiet)
        .some((e) => e.action.startsWith("signing.")),
    ).toBe(false);
    // The operator's role may run the line, but only where an officer opened a session (the kiosk).
    const op = as("operator", ["line", "run", "--port", "/dev/null"]);
    expect(op.code).toBe(1);
    expect(op.json.error).toMatchObject({ code: "SIGNING_SESSION_REQUIRED" });
    expect(op.json.error!.message).toContain("kiosk");
    expect(st.events().at(-2)).toMatchObject({
      action: "line run",
      actor: "operator-1",
      outcome: "refused",
      code: "SIGNING_SESSION_REQUIRED",
    });
  });

  it("the CLI refuses the wrong role with the role needed, and records it", () => {
    const op = as("operator", ["ca", "deactivate", "--label", "dev-ica"]);
    expect(op.code).toBe(1);
    expect(op.json.error).toMatchObject({ code: "ROLE_FORBIDDEN" });
    expect(op.json.error!.message).toContain("needs the officer role");
    const aud = as("auditor", ["revoke", "--serial", "00", "--reason", "keyCompromise"]);
    expect(aud.json.error).toMatchObject({ code: "ROLE_FORBIDDEN" });
    expect(as("auditor", ["audit", "verify"]).json.ok).toBe(true);
    expect(as("sync", ["ca", "list"]).code).toBe(0);
    const wrong = st.run(["--json", "status"], {
      LINESIGN_USER: "officer-1",
      LINESIGN_PASSPHRASE: "nope-nope",
    });
    expect(wrong.json.error).toMatchObject({ code: "AUTH_FAILED" });
    expect(as("officer", ["user", "disable", "--name", "operator-1"]).code).toBe(0);
    expect(as("operator", ["status"]).json.error).toMatchObject({ code: "AUTH_FAILED" });
    const refused = st.events().filter((e) => e.code === "ROLE_FORBIDDEN");
    expect(refused.map((e) => e.action)).toEqual(["ca deactivate", "revoke"]);
    // No passphrase in the database or the logs.
    const db = readFileSync(join(st.home, "station.db"));
    const logs = readdirSync(join(st.home, "logs"))
      .map((f) => readFileSync(join(st.home, "logs", f), "utf8"))
      .join("");
    for (const p of Object.values(PASS)) {
      expect(db.includes(Buffer.from(p))).toBe(false);
      expect(logs).not.toContain(p);
    }
  });
});
