/**
 * The station's files stay with their owner, through the CLI and a real
 * `linesign serve`: a home an administrator made beforehand with mode 0755 is
 * refused naming the fix; once private, the database, its -wal and -shm and
 * the log are 0600 while a certificate export keeps 0644; a socket in an
 * existing folder leaves that folder's mode alone; a second service on the
 * same home is refused; the service's children get no secret.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { childEnv, dropSecrets } from "../../src/cli/serve.js";
import { cleanEnv, linesign } from "../helpers/cli.js";
import { startProc, type Proc } from "../helpers/serial.js";
import { tempSoftHsm } from "../helpers/softhsm.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8);

describe("files and the home", () => {
  const hsm = tempSoftHsm();
  // An administrator's folder: made beforehand, readable by everyone.
  const home = join(mkdtempSync(join(tmpdir(), "linesign-admin-")), "station");
  mkdirSync(home, { mode: 0o755 });
  chmodSync(home, 0o755);
  const env = cleanEnv({ SOFTHSM2_CONF: hsm.conf, LINESIGN_HOME: home });
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGINT");
    await Promise.all(procs.map((p) => p.exited));
  });

  it("refuses a home others can read, naming chmod 700; once private every file is 0600 and an export 0644", () => {
    const refused = linesign(["--json", "init", "--dev"], env);
    expect(refused.code).not.toBe(0);
    expect(refused.json.error?.code).toBe("HOME_UNSAFE");
    expect(refused.json.error?.message).toContain(`chmod 700 ${home}`);
    expect(readdirSync(home)).toEqual([]);
    chmodSync(home, 0o700);
    const init = linesign(["--json", "init", "--dev"], env);
    expect(init.code, init.stdout + init.stderr).toBe(0);
    const csr = join(hsm.dir, "d.csr");
    writeFileSync(csr, csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "d"]] })));
    const out = join(hsm.dir, "d.pem");
    const issued = linesign(["--json", "issue", "--csr", csr, "--out", out], env);
    expect(issued.code, issued.stdout + issued.stderr).toBe(0);
    // The test runs under umask 022: only the station makes these private.
    for (const f of ["station.db", "station.json"]) expect(mode(join(home, f)), f).toBe("600");
    for (const f of readdirSync(home).filter((x) => /-(wal|shm)$/.test(x)))
      expect(mode(join(home, f)), f).toBe("600");
    expect(mode(out)).toBe("644");
    // Opened up again later, the home is refused by every command.
    chmodSync(home, 0o750);
    const status = linesign(["--json", "status"], env);
    expect(status.json.error?.code).toBe("HOME_UNSAFE");
    expect(status.json.error?.message).toContain("mode 750");
    chmodSync(home, 0o700);
  });

  it("leaves an existing socket folder's mode alone, and runs one service per home", async () => {
    const shared = mkdtempSync(join(tmpdir(), "linesign-shared-"));
    chmodSync(shared, 0o755);
    const withPins = { ...env, LINESIGN_USER_PIN: "246810", LINESIGN_SO_PIN: "13572468" };
    const first = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--port", "/dev/null", "--socket", join(shared, "a.sock")],
      withPins,
    );
    procs.push(first);
    await first.lines.waitFor((e) => e.event === "listening", "the first service");
    expect(mode(shared)).toBe("755");
    expect(mode(join(shared, "a.sock"))).toBe("600");
    const second = linesign(
      ["--json", "serve", "--port", "/dev/null", "--socket", join(shared, "b.sock")],
      env,
    );
    expect(second.code).not.toBe(0);
    expect(second.json.error?.message).toContain(`process ${first.proc.pid}`);
    expect(second.json.error?.message).toContain("one service per station");
    first.proc.kill("SIGINT");
    expect((await first.exited).code).toBe(0);
    expect(readdirSync(join(home, "run"))).not.toContain("service.lock");
    // Every file the station made in its home is its owner's alone.
    const files = readdirSync(home, { recursive: true, encoding: "utf8" }).filter((f) =>
      statSync(join(home, f)).isFile(),
    );
    for (const f of files) expect(mode(join(home, f)), f).toBe("600");
  });

  it("refuses a socket in a folder other accounts may write, for the service and the kiosk", async () => {
    const open = mkdtempSync(join(tmpdir(), "linesign-open-"));
    chmodSync(open, 0o1777); // /tmp's mode: anyone may put a socket there first
    const serve = linesign(
      ["--json", "serve", "--port", "/dev/null", "--socket", join(open, "s.sock")],
      env,
    );
    expect(serve.code).not.toBe(0);
    expect(serve.json.error?.message).toContain(
      `The socket's folder ${open} may be written by other accounts (mode 1777`,
    );
    // Another account's socket there, answering the launcher with an address of its choosing.
    const fake = createServer((_req, res) =>
      res.end('{"ok":true,"result":{"url":"http://127.0.0.1:1/#ticket=x"}}'),
    );
    await new Promise<void>((r) => fake.listen(join(open, "k.sock"), () => r()));
    try {
      const kiosk = linesign(
        ["--json", "kiosk", "--socket", join(open, "k.sock"), "--browser", "/bin/false"],
        env,
      );
      expect(kiosk.code).not.toBe(0);
      expect(kiosk.json.error?.message).toContain("may be written by other accounts");
    } finally {
      fake.close();
    }
    expect(mode(open)).toBe("1777");
  });

  it("drops secrets from its environment and starts children with only what they need", () => {
    const e: NodeJS.ProcessEnv = {
      PATH: "/usr/bin",
      LINESIGN_HOME: home,
      LINESIGN_USER_PIN: "246810",
      LINESIGN_SO_PIN: "13572468",
      LINESIGN_PASSPHRASE: "p",
      AWS_SECRET_ACCESS_KEY: "k",
      NODE_OPTIONS: "--require /tmp/x.js",
    };
    process.env.LINESIGN_SO_PIN = "13572468";
    dropSecrets(e);
    expect(Object.keys(e).sort()).toEqual(
      ["AWS_SECRET_ACCESS_KEY", "LINESIGN_HOME", "NODE_OPTIONS", "PATH"].sort(),
    );
    expect(process.env.LINESIGN_SO_PIN).toBeUndefined();
    expect(childEnv(e, { LINESIGN_SOCKET: "/s" })).toEqual({
      PATH: "/usr/bin",
      LINESIGN_HOME: home,
      LINESIGN_SOCKET: "/s",
    });
  });
});
