import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { openDatabase, SCHEMA_VERSION } from "../../../src/adapters/db/database.js";
import { MIGRATIONS } from "../../../src/adapters/db/migrations/index.js";
import { SqliteStationStore } from "../../../src/adapters/db/station-store.js";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { verifyChain } from "../../../src/domain/event-log.js";

const tmp = () => mkdtempSync(join(tmpdir(), "linesign-db-"));

describe("station database", () => {
  it("is a WAL file with synchronous=FULL and foreign keys on", () => {
    const path = join(tmp(), "s.db");
    const db = openDatabase(path, { create: true });
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    expect(db.pragma("foreign_keys", { simple: true })).toBe(1);
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
  });

  it("numbers migrations 1..n with no gaps", () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
  });

  it("applies each migration in a transaction: a failing one leaves no trace", () => {
    const path = join(tmp(), "s.db");
    openDatabase(path, { create: true, migrations: MIGRATIONS.slice(0, 1) }).close();
    const broken = [
      ...MIGRATIONS.slice(0, 1),
      { version: 2, name: "broken", sql: "CREATE TABLE half (x); SELECT * FROM no_such_table;" },
    ];
    expect(() => openDatabase(path, { create: false, migrations: broken })).toThrow(LinesignError);
    const db = new Database(path);
    expect(db.pragma("user_version", { simple: true })).toBe(1);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined();
    db.close();
  });

  it("refuses a database from a newer version and leaves it byte for byte unchanged", () => {
    const path = join(tmp(), "s.db");
    const store = SqliteStationStore.open(path, { create: true, hash: nodeChainHash });
    store.appendEvent({ actor: "t", action: "x", outcome: "ok" });
    store.close();
    const raw = new Database(path);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 7}`);
    raw.pragma("wal_checkpoint(TRUNCATE)");
    raw.close();
    const before = readFileSync(path);
    let err: unknown;
    try {
      openDatabase(path, { create: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LinesignError);
    expect((err as LinesignError).code).toBe("DB_NEWER_VERSION");
    expect((err as LinesignError).message).toContain(`schema ${SCHEMA_VERSION + 7}`);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("says the home is not initialised when the file is missing", () => {
    expect(() => openDatabase(join(tmp(), "absent.db"), { create: false })).toThrowError(
      expect.objectContaining({ code: "HOME_NOT_INITIALISED" }),
    );
  });

  it("keeps the event log append-only at the SQL level", () => {
    const store = SqliteStationStore.open(join(tmp(), "s.db"), {
      create: true,
      hash: nodeChainHash,
    });
    store.appendEvent({ actor: "t", action: "x", outcome: "ok" });
    expect(() => store.db.prepare("UPDATE events SET actor = 'forged'").run()).toThrow(
      /append-only/,
    );
    expect(() => store.db.prepare("DELETE FROM events").run()).toThrow(/append-only/);
    store.close();
  });

  it("keeps every entry it reported committed when the writer is killed with SIGKILL", async () => {
    const path = join(tmp(), "s.db");
    const child = spawn(
      process.execPath,
      [new URL("../../helpers/append-events-child.mjs", import.meta.url).pathname, path],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let reported = 0;
    let buffered = "";
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        for (const l of lines) reported = Math.max(reported, Number(l));
        if (reported >= 300 && child.exitCode === null && !child.killed) child.kill("SIGKILL");
      });
      child.on("exit", () => resolve());
    });
    expect(reported).toBeGreaterThanOrEqual(300);
    const store = SqliteStationStore.open(path, { create: false, hash: nodeChainHash });
    const verdict = verifyChain(store.events(), nodeChainHash);
    expect(verdict.ok).toBe(true);
    expect(verdict.count).toBeGreaterThanOrEqual(reported);
    store.close();
  });
});
