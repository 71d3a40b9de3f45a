/**
 * Real PKCS#11 implementations for the token contract, each started and
 * stopped by the test that uses it: SoftHSM2 (a token folder per test),
 * opencryptoki's software token (the machine's one pkcsslotd, held under a
 * lock while a test uses it), and tpm2-pkcs11 on a software TPM (swtpm and
 * tpm2-abrmd on a private D-Bus, all in a temporary folder). Where one cannot
 * start, `start` throws with the reason: the test fails, it never skips.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SOFTHSM_MODULE, tempSoftHsm } from "./softhsm.js";

export type TokenImplName = "softhsm2" | "opencryptoki" | "tpm2-pkcs11";

export interface TokenImpl {
  name: TokenImplName;
  module: string;
  /** What a process (this one, or a CLI child) needs in its environment to reach the tokens. */
  env: Record<string, string>;
  /** The SO PIN C_InitToken must be given (opencryptoki keeps its factory SO PIN until changed). */
  soPin: string;
  userPin: string;
  /** Stops what `start` started (daemons by their process ids) and removes its folders. */
  stop(): Promise<void>;
}

export const OCK_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
export const TPM2_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";

class StartFailed extends Error {}

function need(path: string, pkg: string, impl: string): void {
  if (!existsSync(path))
    throw new StartFailed(
      `${impl} cannot start: ${path} is missing (Debian package ${pkg}; run .ci/setup).`,
    );
}

/**
 * Runs a command to its end. `detached`: it leaves a daemon behind, which must
 * not hold our pipes (writing to a closed one would kill it), so its output
 * goes nowhere.
 */
function run(cmd: string, args: string[], detached = false): string {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    timeout: 30_000,
    ...(detached ? { stdio: "ignore" as const } : {}),
  });
  if (r.error) throw new StartFailed(`${cmd} could not run: ${r.error.message}`);
  if (r.status !== 0)
    throw new StartFailed(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Resolves with the first line a child prints on stdout (its readiness), rejects if it exits first. */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.on("exit", (code) => reject(new StartFailed(`${what} exited ${code}: ${err}`)));
    child.on("error", (e) => reject(new StartFailed(`${what} could not start: ${e.message}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

function killPid(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/** SoftHSM2: a token folder of its own. */
export function startSoftHsm(): TokenImpl {
  const hsm = tempSoftHsm("linesign-contract-");
  return {
    name: "softhsm2",
    module: SOFTHSM_MODULE,
    env: { SOFTHSM2_CONF: hsm.conf },
    soPin: "13572468",
    userPin: "246810",
    stop: async () => rmSync(hsm.dir, { recursive: true, force: true }),
  };
}

const OCK_CONF = "/etc/opencryptoki/opencryptoki.conf";
const OCK_PID = "/var/run/pkcsslotd.pid";
const OCK_MARK = "# linesign token contract: software tokens only";
/** Software-token slots the contract gives opencryptoki: one per token a test initialises. */
const OCK_SLOTS = 4;

/**
 * opencryptoki's software token. pkcsslotd, its configuration and its token
 * folders are the machine's (fixed paths), so the machine lock is held from
 * start to stop and the token folders are emptied first: every start has
 * OCK_SLOTS fresh tokens with the factory SO PIN 87654321.
 */
export async function startOpencryptoki(): Promise<TokenImpl> {
  need(OCK_MODULE, "opencryptoki", "opencryptoki");
  need("/usr/sbin/pkcsslotd", "opencryptoki", "opencryptoki");
  if (process.getuid?.() !== 0)
    throw new StartFailed("opencryptoki cannot start: pkcsslotd and its folders need root.");
  // Held while this test uses the machine's opencryptoki; released by ending the holder's stdin.
  const lock = spawn(
    "flock",
    ["-x", "/run/lock/linesign-opencryptoki.lock", "-c", "echo locked; exec cat >/dev/null"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  await firstLine(lock, "flock");
  const release = (): void => {
    lock.stdin?.end();
  };
  try {
    const running = existsSync(OCK_PID) ? Number(readFileSync(OCK_PID, "utf8").trim()) : 0;
    if (running && existsSync(`/proc/${running}`)) {
      const ours = existsSync(OCK_CONF) && readFileSync(OCK_CONF, "utf8").startsWith(OCK_MARK);
      if (!ours)
        throw new StartFailed(
          `opencryptoki cannot start: the system's pkcsslotd (pid ${running}) is running with its own ${OCK_CONF}; ` +
            `the contract test needs the machine's opencryptoki to itself.`,
        );
      await stopSlotd(running);
    }
    let conf = `${OCK_MARK}\nversion opencryptoki-3.1\n`;
    for (let i = 0; i < OCK_SLOTS; i++) {
      const name = `linesign${i}`;
      rmSync(`/var/lib/opencryptoki/${name}`, { recursive: true, force: true });
      mkdirSync(`/var/lib/opencryptoki/${name}/TOK_OBJ`, { recursive: true, mode: 0o770 });
      mkdirSync(`/var/lock/opencryptoki/${name}`, { recursive: true, mode: 0o770 });
      conf += `\nslot ${i}\n{\nstdll = libpkcs11_sw.so\ntokname = ${name}\n}\n`;
    }
    mkdirSync("/var/log/opencryptoki", { recursive: true });
    writeFileSync(OCK_CONF, conf);
    run("/usr/sbin/pkcsslotd", [], true);
    const pid = Number(readFileSync(OCK_PID, "utf8").trim());
    return {
      name: "opencryptoki",
      module: OCK_MODULE,
      env: {},
      soPin: "87654321",
      userPin: "246810",
      stop: async () => {
        try {
          await stopSlotd(pid);
        } finally {
          release();
        }
      },
    };
  } catch (e) {
    release();
    throw e;
  }
}

async function stopSlotd(pid: number): Promise<void> {
  killPid(pid);
  // pkcsslotd is not our child: tail --pid returns when it has ended.
  spawnSync("tail", [`--pid=${pid}`, "-f", "/dev/null"], { timeout: 30_000 });
  await Promise.resolve();
}

/**
 * tpm2-pkcs11 on a software TPM: swtpm (TCP), a private D-Bus session bus,
 * tpm2-abrmd on it, and the tpm2-pkcs11 store, all in a temporary folder.
 */
export async function startTpm2(): Promise<TokenImpl> {
  need(TPM2_MODULE, "libtpm2-pkcs11-1", "tpm2-pkcs11");
  need("/usr/bin/swtpm", "swtpm", "tpm2-pkcs11");
  need("/usr/sbin/tpm2-abrmd", "tpm2-abrmd", "tpm2-pkcs11");
  need("/usr/bin/dbus-daemon", "dbus", "tpm2-pkcs11");
  need("/usr/bin/gdbus", "libglib2.0-bin", "tpm2-pkcs11");
  const dir = mkdtempSync(join(tmpdir(), "linesign-tpm2-"));
  mkdirSync(join(dir, "state"));
  mkdirSync(join(dir, "store"));
  const children: ChildProcess[] = [];
  const pids: number[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) c.kill("SIGTERM");
    for (const p of pids) killPid(p);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The swtpm TCTI finds the control channel at the server's port + 1.
    const port = await freePort();
    const ctrl = port + 1;
    run(
      "swtpm",
      [
        "socket",
        "--tpm2",
        "--tpmstate",
        `dir=${join(dir, "state")}`,
        "--server",
        `type=tcp,port=${port},bindaddr=127.0.0.1`,
        "--ctrl",
        `type=tcp,port=${ctrl},bindaddr=127.0.0.1`,
        "--flags",
        "not-need-init,startup-clear",
        "--pid",
        `file=${join(dir, "swtpm.pid")}`,
        "--log",
        `file=${join(dir, "swtpm.log")}`,
        "--daemon",
      ],
      true,
    );
    pids.push(Number(readFileSync(join(dir, "swtpm.pid"), "utf8").trim()));
    const busConf = join(dir, "bus.conf");
    writeFileSync(
      busConf,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=${join(dir, "bus.sock")}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>\n`,
    );
    const bus = spawn("dbus-daemon", ["--config-file", busConf, "--nofork", "--print-address=1"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(bus);
    const address = await firstLine(bus, "dbus-daemon");
    const busName = `com.linesign.Tabrmd.p${process.pid}`;
    const busEnv = { ...process.env, DBUS_SESSION_BUS_ADDRESS: address };
    // By its path: /usr/sbin is not on every PATH (a clean CI environment).
    const abrmd = spawn(
      "/usr/sbin/tpm2-abrmd",
      [
        "--session",
        `--dbus-name=${busName}`,
        `--tcti=swtpm:host=127.0.0.1,port=${port}`,
        "--allow-root",
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: busEnv },
    );
    children.push(abrmd);
    let abrmdErr = "";
    abrmd.stderr?.setEncoding("utf8").on("data", (d: string) => (abrmdErr += d));
    abrmd.on("exit", (code, signal) => (abrmdErr += ` (tpm2-abrmd exited: ${code ?? signal})`));
    // gdbus returns when the broker owns its name on the bus (asynchronously: the daemons' pipes keep draining).
    const waiter = spawn("gdbus", ["wait", "--session", "--timeout", "90", busName], {
      env: busEnv,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let waitErr = "";
    waiter.stderr?.setEncoding("utf8").on("data", (d: string) => (waitErr += d));
    const status = await new Promise<number | null>((resolve) => waiter.on("exit", resolve));
    if (status !== 0)
      throw new StartFailed(
        `tpm2-abrmd did not come up on the private bus: ${abrmdErr || waitErr || `gdbus wait exited ${status}`}`,
      );
    return {
      name: "tpm2-pkcs11",
      module: TPM2_MODULE,
      env: {
        DBUS_SESSION_BUS_ADDRESS: address,
        TPM2_PKCS11_TCTI: `tabrmd:bus_name=${busName},bus_type=session`,
        TPM2_PKCS11_STORE: join(dir, "store"),
        TPM2_PKCS11_LOG_LEVEL: "0",
      },
      soPin: "13572468",
      userPin: "246810",
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Starts an implementation by name. */
export function startImpl(name: TokenImplName): Promise<TokenImpl> {
  switch (name) {
    case "softhsm2":
      return Promise.resolve(startSoftHsm());
    case "opencryptoki":
      return startOpencryptoki();
    case "tpm2-pkcs11":
      return startTpm2();
    default: {
      const never: never = name;
      throw new Error(`unknown implementation ${String(never)}`);
    }
  }
}
