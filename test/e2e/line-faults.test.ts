/**
 * Faults of the station itself under one running `line run`, injected through
 * real files and the real token while simulated devices keep coming: another
 * process holds the database's lock, the home's disk fills up, the token's
 * storage goes away. Each time the ports stop greeting devices and say why
 * (`port.paused` with the fault's code), nothing fails as INTERNAL, the
 * process stays up, and the line resumes by itself when the fault goes, with
 * no restart. Deleting the database under the line stops it at once, with a
 * summary that names the fault.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";
import {
  exportChain,
  ptyPair,
  setLineConfig,
  startLine,
  startSim,
  type Proc,
  type PtyPair,
} from "../helpers/serial.js";

const require = createRequire(import.meta.url);
const PORTS = 2;
const mounts: string[] = [];
const pairs: PtyPair[] = [];
const sims: Proc[] = [];
const holders: ReturnType<typeof spawn>[] = [];

afterAll(async () => {
  for (const h of holders) h.kill("SIGKILL");
  for (const s of sims) s.proc.kill("SIGKILL");
  await Promise.all(pairs.map((p) => p.kill()));
  for (const m of mounts.reverse()) spawnSync("umount", ["-l", m]);
});

/** The free bytes of the file system at `dir`. */
function free(dir: string): number {
  const s = spawnSync("df", ["-B1", "--output=avail", dir], { encoding: "utf8" });
  return Number(s.stdout.trim().split("\n").at(-1));
}

/** Fills the file system at `dir` to the last byte; the filler files are in `dir/fill`. */
function fillUp(dir: string): void {
  const at = mkdtempSync(join(dir, "fill-"));
  for (let i = 0; free(dir) > 0; i++) {
    try {
      writeFileSync(join(at, `f${i}`), Buffer.alloc(Math.max(512, Math.min(free(dir), 1 << 20))));
    } catch {
      break;
    }
  }
}

/** A child that holds the database's write lock until it is told to let go. */
async function holdLock(db: string): Promise<() => Promise<void>> {
  const holder = spawn(
    process.execPath,
    [
      "-e",
      `const D = require(${JSON.stringify(require.resolve("better-sqlite3"))});
       const db = new D(process.argv[1]); db.exec("BEGIN EXCLUSIVE");
       process.stdout.write("locked\\n");
       process.stdin.once("data", () => { db.exec("ROLLBACK"); db.close(); process.exit(0); });`,
      db,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  holders.push(holder);
  await new Promise<void>((resolve) =>
    holder.stdout!.on("data", (d: Buffer) => d.toString().includes("locked") && resolve()),
  );
  return async () => {
    const gone = new Promise((resolve) => holder.on("exit", resolve));
    holder.stdin!.write("go\n");
    await gone;
  };
}

describe("a running line and the faults of its own station", () => {
  it("pauses for a lock, a full disk and an absent token, resumes by itself each time, and stops when its database is deleted", async () => {
    const base = devStation();
    const chain = exportChain(base);
    // The home on a small file system of its own, so that it can be filled.
    const disk = mkdtempSync(join(tmpdir(), "linesign-disk-"));
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", disk], {
      encoding: "utf8",
    });
    expect(mounted.status, `mounting a tmpfs needs root: ${mounted.stderr}`).toBe(0);
    mounts.push(disk);
    const home = join(disk, "home");
    cpSync(base.home, home, { recursive: true });
    const st: TestStation = { ...base, home, env: { ...base.env, LINESIGN_HOME: home } };
    setLineConfig(st, {
      timeouts: { retryMs: 300, retries: 3, helloMs: 250, csrMs: 10000, storedMs: 10000 },
    });
    const dir = mkdtempSync(join(tmpdir(), "linesign-line-faults-"));
    for (let i = 0; i < PORTS; i++) pairs.push(await ptyPair(dir, `f${i}`));
    const stores = pairs.map((_, i) => join(dir, `store-${i}`));
    for (const [i, p] of pairs.entries())
      sims.push(
        startSim([
          "--port",
          p.device,
          "--device-id",
          `fault-p${i}`,
          "--count",
          "100000",
          "--baud",
          "921600",
          "--retry-ms",
          "300",
          // Devices wait out a paused station rather than give up.
          "--answer-ms",
          "120000",
          "--root",
          chain.chain,
          "--store",
          stores[i]!,
        ]),
      );

    const line = startLine(
      st,
      pairs.map((p) => p.station),
    );
    const events = line.lines.all;
    const confirmed = () => events.filter((e) => e.event === "device.confirmed").length;
    /** Waits for an event after the `mark`-th. */
    const after = (mark: number, pred: (e: Record<string, unknown>) => boolean, what: string) =>
      line.lines.waitFor(() => events.slice(mark).some(pred), what, 90_000);
    /** The fault goes: every port that paused since `since` resumes, and two more devices confirm. */
    const resumes = async (since: number, what: string) => {
      const paused = new Set(
        events.slice(since).flatMap((e) => (e.event === "port.paused" ? [String(e.port)] : [])),
      );
      expect(paused.size).toBeGreaterThan(0);
      for (const port of paused)
        await line.lines.waitFor(
          () =>
            events.findLastIndex((e) => e.event === "port.resumed" && e.port === port) >
            events.findLastIndex((e) => e.event === "port.paused" && e.port === port),
          `${port} resumed after ${what}`,
          90_000,
        );
      const c = confirmed();
      await line.lines.waitFor(() => confirmed() >= c + 2, `two devices after ${what}`, 90_000);
    };
    await line.lines.waitFor(() => confirmed() >= 2, "the first devices", 90_000);

    // Another process holds the database's lock: the ports wait and say so.
    let mark = events.length;
    const release = await holdLock(join(home, "station.db"));
    const locked = await after(
      mark,
      (e) => e.event === "port.paused" && e.code === "DB_LOCKED",
      "a port paused for the lock",
    );
    expect(locked).toBeDefined();
    const pausedFor = events
      .slice(mark)
      .find((e) => e.event === "port.paused" && e.code === "DB_LOCKED")!;
    expect(String(pausedFor.message)).toContain("another process holds a lock");
    await release();
    await resumes(mark, "the lock");

    // The disk fills up: the station keeps what it has recorded, stops taking devices, says why.
    mark = events.length;
    fillUp(disk);
    await after(
      mark,
      (e) => e.event === "port.paused" && e.code === "DB_FULL",
      "a port paused for the full disk",
    );
    const full = events.slice(mark).find((e) => e.event === "port.paused" && e.code === "DB_FULL")!;
    expect(String(full.message)).toContain(join(home, "station.db"));
    for (const f of readdirSync(disk).filter((n) => n.startsWith("fill-")))
      rmSync(join(disk, f), { recursive: true });
    await resumes(mark, "the full disk");

    // The token's storage goes away: the line waits for it and resumes when it is back.
    mark = events.length;
    const tokens = join(base.hsm.dir, "tokens");
    const away = join(base.hsm.dir, "tokens-away");
    renameSync(tokens, away);
    await after(
      mark,
      (e) => e.event === "port.paused" && e.code === "HSM_TOKEN_NOT_FOUND",
      "a port paused for the absent token",
    );
    renameSync(away, tokens);
    await resumes(mark, "the token's return");

    // Nothing was refused as INTERNAL, and everything a device stored is recorded.
    expect(JSON.stringify(events)).not.toContain('"INTERNAL"');
    {
      const db = new Database(join(home, "station.db"), { readonly: true });
      const fingerprints = new Set(
        (db.prepare("SELECT fingerprint FROM issuances").all() as { fingerprint: string }[]).map(
          (r) => r.fingerprint,
        ),
      );
      db.close();
      let stored = 0;
      for (const store of stores.filter((s) => existsSync(s)))
        for (const f of readdirSync(store).filter((n) => n.endsWith(".der"))) {
          const der = readFileSync(join(store, f));
          expect(fingerprints.has(createHash("sha256").update(der).digest("hex")), f).toBe(true);
          stored++;
        }
      expect(stored).toBeGreaterThanOrEqual(8);
    }

    // The database deleted under the line: it stops at once and says why.
    unlinkSync(join(home, "station.db"));
    const end = await line.exited;
    expect(end.code).not.toBe(0);
    const summary = events.find((e) => e.event === "summary") as
      { fault?: { code: string; message: string } } | undefined;
    expect(summary?.fault?.code).toBe("DB_REPLACED");
    expect(summary?.fault?.message).toContain(join(home, "station.db"));
  }, 600_000);
});
