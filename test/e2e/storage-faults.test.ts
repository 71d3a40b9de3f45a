/**
 * Storage faults through the CLI, on real file systems: a tmpfs that is full
 * or nearly full, one mounted read-only, a zero-byte station.db, a changed
 * station id. Every refusal names the file, the cause and the fix, never
 * INTERNAL; nothing is half-written; read-only commands keep working.
 */
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { devStation, type TestStation } from "../helpers/station.js";
import { newTmpfs, unmount } from "../helpers/mounts.js";

let st: TestStation;
const mounts: string[] = [];

/** A tmpfs of `size` (e.g. "4m") mounted on a new folder. */
function tmpfs(size: string): string {
  const dir = newTmpfs(size);
  mounts.push(dir);
  return dir;
}

/** Fills the file system at `dir` until fewer than `leave` bytes are free. */
function fill(dir: string, leave: number): void {
  const free = (): number => {
    const s = spawnSync("df", ["-B1", "--output=avail", dir], { encoding: "utf8" });
    return Number(s.stdout.trim().split("\n").at(-1));
  };
  let i = 0;
  for (let left = free() - leave; left > 0; left = free() - leave) {
    try {
      writeFileSync(
        join(dir, `filler-${i++}`),
        Buffer.alloc(Math.max(512, Math.min(left, 1 << 20))),
      );
    } catch {
      break;
    }
  }
}

/** A copy of the station's home on `dir`, its environment pointing there. */
function homeOn(dir: string): { home: string; env: Record<string, string> } {
  const home = join(dir, "home");
  cpSync(st.home, home, { recursive: true });
  return { home, env: { LINESIGN_HOME: home } };
}

beforeAll(() => {
  st = devStation();
  const csr = join(st.hsm.dir, "first.csr");
  writeFileSync(csr, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "first"]] })));
  expect(st.run(["issue", "--csr", csr, "--out", join(st.hsm.dir, "first.pem")]).code).toBe(0);
});
afterAll(() => {
  for (const m of mounts.reverse()) unmount(m);
});

describe("storage faults through the CLI", () => {
  it("writes an export whole or not at all: a nearly full disk is refused with the path and ENOSPC", () => {
    const dir = tmpfs("2m");
    const out = join(dir, "export.json");
    fill(dir, 4096);
    const r = st.run(["audit", "export", "--out", out, "--json"]);
    expect(r.code).not.toBe(0);
    expect(r.json.error?.code).toBe("FILE_WRITE_FAILED");
    expect(r.json.error?.message).toContain(out);
    expect(r.json.error?.message).toContain("ENOSPC");
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes("export"))).toEqual([]);
  });

  it("refuses to write on a full home naming the database and the cause, and still verifies and lists the log", () => {
    const dir = tmpfs("16m");
    const { home, env } = homeOn(dir);
    fill(dir, 0);
    const csr = join(st.hsm.dir, "full.csr");
    writeFileSync(csr, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "full"]] })));
    const issue = st.run(["issue", "--csr", csr, "--json"], env);
    expect(issue.code).not.toBe(0);
    expect(issue.json.error?.code).not.toBe("INTERNAL");
    expect(issue.json.error?.message).toMatch(/ENOSPC|SQLITE_FULL/);
    expect(issue.stdout + issue.stderr).not.toContain("BEGIN CERTIFICATE");
    const log = st.run(["audit", "log", "--json"], env);
    expect(log.code, log.stdout + log.stderr).toBe(0);
    expect((log.json.rows as { deviceId: string }[]).map((x) => x.deviceId)).toContain("first");
    const verify = st.run(["audit", "verify", "--json"], env);
    expect(verify.json.error?.code, verify.stdout).toBeUndefined();
    expect(verify.json.ok, verify.stdout).toBe(true);
    expect(statSync(join(home, "station.db")).size).toBeGreaterThan(0);
  });

  it("lists and verifies the log on a read-only home, and refuses writes saying it is read-only", () => {
    const dir = tmpfs("16m");
    const { env } = homeOn(dir);
    expect(spawnSync("mount", ["-o", "remount,ro", dir]).status).toBe(0);
    const log = st.run(["audit", "log", "--json"], env);
    expect(log.code, log.stdout + log.stderr).toBe(0);
    const verify = st.run(["audit", "verify", "--json"], env);
    expect(verify.json.ok, verify.stdout + verify.stderr).toBe(true);
    const csr = join(st.hsm.dir, "ro.csr");
    writeFileSync(csr, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "ro"]] })));
    const issue = st.run(["issue", "--csr", csr, "--json"], env);
    expect(issue.code).not.toBe(0);
    expect(issue.json.error?.code).not.toBe("INTERNAL");
    expect(issue.json.error?.message).toMatch(/read-only|EROFS|SQLITE_READONLY/);
  });

  it("refuses a zero-byte station.db, changing nothing", () => {
    const home = mkdtempSync(join(tmpdir(), "linesign-empty-"));
    cpSync(st.home, home, { recursive: true });
    writeFileSync(join(home, "station.db"), "");
    const r = st.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(r.code).not.toBe(0);
    expect(r.json.error?.code).toBe("DB_NOT_A_STATION");
    expect(r.json.error?.message).toContain("0 bytes");
    expect(statSync(join(home, "station.db")).size).toBe(0);
  });

  it("refuses a changed station id, so restoring it leaves the log verifiable", () => {
    const home = mkdtempSync(join(tmpdir(), "linesign-renamed-"));
    cpSync(st.home, home, { recursive: true });
    const cfgPath = join(home, "station.json");
    const original = readFileSync(cfgPath, "utf8");
    const cfg = JSON.parse(original) as { station: { id: string } };
    const id = cfg.station.id;
    cfg.station.id = "another-name";
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const csr = join(st.hsm.dir, "renamed.csr");
    writeFileSync(csr, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "rn"]] })));
    const r = st.run(["issue", "--csr", csr, "--json"], { LINESIGN_HOME: home });
    expect(r.code).not.toBe(0);
    expect(r.json.error?.code).toBe("STATION_ID_CHANGED");
    expect(r.json.error?.message).toContain(id);
    writeFileSync(cfgPath, original);
    const v = st.run(["audit", "verify", "--json"], { LINESIGN_HOME: home });
    expect(v.json.ok, v.stdout).toBe(true);
  });

  it("names a missing SoftHSM configuration instead of an internal error", () => {
    const home = mkdtempSync(join(tmpdir(), "linesign-noconf-"));
    cpSync(st.home, home, { recursive: true });
    mkdirSync(join(home, "x"), { recursive: true });
    const r = st.run(["token", "list", "--json"], {
      LINESIGN_HOME: home,
      SOFTHSM2_CONF: join(home, "x", "missing-softhsm2.conf"),
    });
    expect(r.code).not.toBe(0);
    expect(r.json.error?.code).not.toBe("INTERNAL");
    expect(r.json.error?.message).toContain("missing-softhsm2.conf");
  });
});
