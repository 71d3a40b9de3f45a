/**
 * Serial test rig: socat pty pairs, the station's `line run` and the device
 * simulator as real processes. Every wait is on an output line or an exit,
 * with a deadline that fails the test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestStation } from "./station.js";
import { ptyPair as rigPtyPair } from "../../src/cli/sim-rig.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const SIM = fileURLToPath(new URL("../../dist/fixtures/device-sim.js", import.meta.url));

/** Collects a child's stdout lines (JSON where they parse) and lets a test wait for one. */
class Lines {
  readonly all: Record<string, unknown>[] = [];
  private waiters: {
    pred: (e: Record<string, unknown>) => boolean;
    resolve: (e: Record<string, unknown>) => void;
  }[] = [];
  text = "";

  constructor(proc: ChildProcess) {
    let buf = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.text += d;
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let e: Record<string, unknown>;
        try {
          e = JSON.parse(line) as Record<string, unknown>;
        } catch {
          e = { text: line };
        }
        this.all.push(e);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(e)) return true;
          w.resolve(e);
          return false;
        });
      }
    });
  }

  /** The first line (past or future) matching `pred`. */
  waitFor(
    pred: (e: Record<string, unknown>) => boolean,
    what: string,
    ms = 30_000,
  ): Promise<Record<string, unknown>> {
    const seen = this.all.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; got:\n${this.text.slice(-3000)}`)),
        ms,
      );
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
    });
  }
}

export interface Proc {
  proc: ChildProcess;
  lines: Lines;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A child process whose stdout lines a test can wait for. */
export function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const proc = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { proc, lines: new Lines(proc), stderr: () => err, exited };
}

/** A socat pseudo-terminal pair: the station opens one end, the simulated device the other. */
export interface PtyPair {
  station: string;
  device: string;
  /** Pulls the cable: both ends disappear. */
  kill(): Promise<void>;
}

export async function ptyPair(dir: string, name: string): Promise<PtyPair> {
  const p = await rigPtyPair(dir, name);
  return { station: p.station, device: p.device, kill: () => p.close() };
}

/** `linesign line run --json` on the given ports. */
export function startLine(st: TestStation, ports: string[], extra: string[] = []): Proc {
  return startProc(
    process.execPath,
    [BIN, "--json", "line", "run", ...ports.flatMap((p) => ["--port", p]), ...extra],
    st.env,
  );
}

/** The device simulator with --json. */
export function startSim(args: string[]): Proc {
  return startProc(process.execPath, [SIM, "--json", ...args], process.env);
}

export interface SimResult {
  deviceId: string;
  ok: boolean;
  code?: string;
  message?: string;
  serial?: string;
  cycleMs?: number;
  keygenMs: number;
  txBytes: number;
  rxBytes: number;
  wireMs: number;
  resentBytes: number;
  stored?: string;
}

/** Runs the simulator to its end; its per-device results and exit code. */
export async function runSim(
  args: string[],
): Promise<{ code: number | null; results: SimResult[]; stderr: string }> {
  const p = startSim(args);
  const { code } = await p.exited;
  return {
    code,
    results: p.lines.all.filter((e) => e.event === "device.done") as unknown as SimResult[],
    stderr: p.stderr(),
  };
}

/** Sets `line.timeouts` (and anything else under `line`) in the station's config. */
export function setLineConfig(st: TestStation, line: Record<string, unknown>): void {
  const path = join(st.home, "station.json");
  const config = JSON.parse(readFileSync(path, "utf8")) as Record<string, Record<string, unknown>>;
  config.line = { ...(config.line ?? {}), ...line };
  writeFileSync(path, JSON.stringify(config, null, 2));
}

/** dev-ica's chain as PEM files: the whole chain (for the simulator), the CA, and the root. */
export function exportChain(st: TestStation): { chain: string; ca: string; root: string } {
  const chain = join(st.hsm.dir, "chain.pem");
  const r = st.run(["ca", "export", "--label", "dev-ica", "--chain", "--out", chain]);
  if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  const pems = readFileSync(chain, "utf8").match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g,
  )!;
  const ca = join(st.hsm.dir, "ca.pem");
  const root = join(st.hsm.dir, "root.pem");
  writeFileSync(ca, pems[0]!);
  writeFileSync(root, pems.at(-1)!);
  return { chain, ca, root };
}

/** PEM of a DER certificate. */
export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
