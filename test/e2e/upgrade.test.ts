/**
 * Upgrading a station made by the previous release: its code is checked out
 * from git at that release's commit and built, a development station is made
 * and certificates are issued with it (left unconfirmed: devices in flight),
 * then this release opens the same home and token. The database migrates,
 * status names both versions, the log still verifies, the in-flight
 * certificates are reported, issuance goes on, and the previous release
 * refuses the migrated database without changing it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import type { CliResult } from "../helpers/cli.js";
import { emptyStation, type TestStation } from "../helpers/station.js";
import { MIGRATIONS } from "../../src/adapters/db/migrations/index.js";

/** The release before profiles, rotation and the recorded configuration (schema 8). */
const PREVIOUS_RELEASE = "2a8464dd4722d1de1a8fa6ae92f39814f85e71c8";

vi.setConfig({ testTimeout: 600_000, hookTimeout: 900_000 });

let oldBin: string;
let st: TestStation;

function runWith(bin: string, args: string[]): CliResult {
  const r = spawnSync(process.execPath, [bin, ...args], {
    env: st.env,
    encoding: "utf8",
    timeout: 120_000,
  });
  let json: CliResult["json"] = {};
  try {
    json = JSON.parse(r.stdout) as CliResult["json"];
  } catch {
    // not JSON
  }
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

beforeAll(() => {
  const repo = resolve(".");
  const dir = mkdtempSync(join(tmpdir(), "linesign-previous-"));
  // The previous release's files exactly as committed, with this checkout's dependencies.
  const archive = execFileSync("git", ["-C", repo, "archive", PREVIOUS_RELEASE], {
    maxBuffer: 256 * 1024 * 1024,
  });
  execFileSync("tar", ["-x", "-C", dir], { input: archive });
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    cwd: dir,
    stdio: "inherit",
  });
  // A release whose command line is bundled (dist/cli) builds the bundle as well.
  if (existsSync(join(dir, "vite.cli.config.ts")))
    execFileSync(
      process.execPath,
      ["node_modules/vite/bin/vite.js", "build", "--config", "vite.cli.config.ts"],
      { cwd: dir, stdio: "inherit" },
    );
  oldBin = join(dir, "bin", "linesign.js");
  st = emptyStation();
});

describe("upgrading a station made by the previous release", () => {
  it("migrates, verifies, reports the devices in flight and goes on issuing", () => {
    // A station made by the previous release, with two certificates out and unconfirmed.
    expect(runWith(oldBin, ["init", "--dev", "--json"]).code).toBe(0);
    for (const id of ["inflight-1", "inflight-2"]) {
      const csr = st.file(
        `${id}.csr`,
        csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] })),
      );
      const r = runWith(oldBin, ["issue", "--csr", csr, "--out", join(st.hsm.dir, `${id}.pem`)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const before = runWith(oldBin, ["status", "--json"]);
    expect(before.json.versions).toBeUndefined(); // the previous release did not say
    const eventsBefore = st.events().length;

    // This release on the same home and token.
    const status = st.run(["status", "--json"]);
    expect(status.code, status.stdout).toBe(0);
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(status.json.versions).toEqual({
      software: pkg.version,
      schema: MIGRATIONS.length,
      schemaSupported: MIGRATIONS.length,
    });
    // The configuration as the previous release left it is recorded once, as the baseline.
    const added = st.events().slice(eventsBefore);
    expect(added.map((e) => e.action)).toEqual(["config.record"]);

    const verify = st.run(["audit", "verify", "--json"]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.json.ok).toBe(true);

    const report = st.run(["audit", "report", "--json"]);
    expect(
      (report.json.unconfirmed as { deviceId: string; state: string }[]).map((u) => [
        u.deviceId,
        u.state,
      ]),
    ).toEqual([
      ["inflight-1", "DELIVERED"],
      ["inflight-2", "DELIVERED"],
    ]);

    const csr = st.file(
      "after-1.csr",
      csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "after-1"]] })),
    );
    const issued = st.run(["issue", "--csr", csr, "--out", join(st.hsm.dir, "after-1.pem")]);
    expect(issued.code, issued.stderr).toBe(0);
    const last = st
      .events()
      .filter((e) => e.action === "issuance.issue")
      .at(-1)!;
    expect(JSON.parse(last.details)).toMatchObject({ profile: "default" });
    expect((JSON.parse(last.details) as { profileSha256: string }).profileSha256).toMatch(
      /^[0-9a-f]{64}$/,
    );

    // Going back is refused, and changes nothing.
    const count = st.events().length;
    const back = runWith(oldBin, ["status", "--json"]);
    expect(back.code).toBe(1);
    expect(back.json.error!.code).toBe("DB_NEWER_VERSION");
    expect(st.events().length).toBe(count);
  });
});
