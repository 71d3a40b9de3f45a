/**
 * What a short command loads. `linesign --help`, a command group's help and the online
 * machine's commands load the bundled command line (dist/cli) and none of the drivers: no
 * AWS SDK, no serial port, no SQLite, no PKCS#11. Those load when a command uses them, so a
 * static import of one (or a command line run from dist/src's few hundred modules again)
 * shows here. The last two cases prove the log sees a driver when one does load.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { cleanEnv, linesign, type CliResult } from "../helpers/cli.js";

const HOOK = fileURLToPath(new URL("../helpers/module-log.mjs", import.meta.url));
const DIST = fileURLToPath(new URL("../../dist/", import.meta.url));
const DRIVERS =
  /\/node_modules\/(@aws-sdk|@smithy|serialport|@serialport|better-sqlite3|pkcs11js|graphene-pk11|tar-stream)\/|\.node$/;

const dir = mkdtempSync(join(tmpdir(), "linesign-start-up-"));
let runs = 0;

/** Runs `linesign args` in an empty home; returns what it printed and every module it loaded. */
function loaded(args: string[]): { r: CliResult; files: string[] } {
  const log = join(dir, `modules-${++runs}.txt`);
  const env = cleanEnv({
    LINESIGN_HOME: mkdtempSync(join(dir, "home-")),
    LINESIGN_MODULE_LOG: log,
    NODE_OPTIONS: `--import=${HOOK}`,
  });
  const r = linesign(args, env);
  const files = [
    ...new Set(
      readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => (l.startsWith("file:") ? fileURLToPath(l) : l)),
    ),
  ];
  return { r, files };
}

const drivers = (files: string[]) => files.filter((f) => DRIVERS.test(f));
const ours = (files: string[]) =>
  files.filter((f) => f.startsWith(DIST)).map((f) => f.slice(DIST.length));

describe("start-up", () => {
  it("--help loads the bundled command line and no driver", () => {
    const { r, files } = loaded(["--help"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Usage: linesign");
    expect(drivers(files)).toEqual([]);
    expect(ours(files)).toContain("cli/main.js");
    expect(ours(files).filter((f) => !f.startsWith("cli/"))).toEqual([]);
  });

  it("a command group's help (ca, sync) loads no driver", () => {
    for (const group of ["ca", "sync"]) {
      const { r, files } = loaded([group, "--help"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Usage: linesign ${group}`);
      expect(drivers(files)).toEqual([]);
    }
  });

  it("the online machine's commands load neither the station's command line nor a driver", () => {
    for (const args of [
      ["upload", "--help"],
      ["uploader", "init", "--help"],
    ]) {
      const { r, files } = loaded(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Usage: linesign ${args.slice(0, -1).join(" ")}`);
      expect(drivers(files)).toEqual([]);
      expect(ours(files)).toContain("cli/online.js");
      expect(ours(files)).not.toContain("cli/main.js");
    }
  });

  it("a station command loads SQLite and PKCS#11 when it opens the station", () => {
    // An empty home: the command is refused, after the station's modules loaded.
    const { r, files } = loaded(["--json", "ca", "list"]);
    expect(r.json.ok, r.stdout + r.stderr).toBe(false);
    const found = drivers(files).join("\n");
    expect(found).toMatch(/\/node_modules\/better-sqlite3\//);
    expect(found).toMatch(/\/node_modules\/pkcs11js\//);
    expect(found).toMatch(/\.node$/m);
    expect(found).not.toMatch(/\/node_modules\/@aws-sdk\//);
  });

  it("a sync loads the AWS SDK", () => {
    const { r, files } = loaded(["--json", "sync"]);
    expect(r.json.ok, r.stdout + r.stderr).toBe(false);
    expect(drivers(files).join("\n")).toMatch(/\/node_modules\/@aws-sdk\/client-iot\//);
  });
});
