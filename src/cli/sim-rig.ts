/**
 * Simulated devices on socat pty pairs, for the development main job
 * (`linesign demo`) and the bench. Not used on a production line, where the
 * ports are real. The simulator is fixtures/device-sim (built into dist/).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SIM = fileURLToPath(new URL("../../fixtures/device-sim.js", import.meta.url));

export const socatAvailable = (): boolean => spawnSync("socat", ["-V"]).status === 0;

export interface RigChild {
  proc: ChildProcess;
  /** JSON lines printed so far. */
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
  /** Resolves once a line matching `pred` has been printed. */
  waitFor(pred: (l: Record<string, unknown>) => boolean): Promise<void>;
}

function child(cmd: string, args: string[]): RigChild {
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
  const lines: Record<string, unknown>[] = [];
  const listeners: (() => void)[] = [];
  let buf = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      try {
        lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        // not JSON
      }
      buf = buf.slice(nl + 1);
      for (const l of listeners) l();
    }
  });
  const exited = new Promise<number | null>((r) => proc.on("exit", r));
  return {
    proc,
    lines,
    exited,
    waitFor: (pred) =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (lines.some(pred)) resolve();
        };
        listeners.push(check);
        check();
        void exited.then(() => resolve());
      }),
  };
}

export interface PtyPair {
  station: string;
  device: string;
  /** The socat process relaying between the two ptys. */
  pid: number;
  /** Ends the pair (both links disappear, as when a cable is pulled). */
  close(): Promise<void>;
}

/** A socat pty pair whose two ends are links in `dir`. */
export async function ptyPair(dir: string, name: string): Promise<PtyPair> {
  const station = join(dir, `${name}-station`);
  const device = join(dir, `${name}-device`);
  const proc = spawn(
    "socat",
    ["-d", "-d", `pty,raw,echo=0,link=${station}`, `pty,raw,echo=0,link=${device}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    let err = "";
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      if (err.includes("starting data transfer loop")) resolve();
    });
    proc.on("exit", () => reject(new Error(`socat: ${err}`)));
  });
  const exited = new Promise<void>((r) => proc.on("exit", () => r()));
  return {
    station,
    device,
    pid: proc.pid!,
    close: () => {
      proc.kill("SIGTERM");
      return exited;
    },
  };
}

/** Starts the device simulator (JSON output) and waits until its port is open. */
export async function startSim(args: string[]): Promise<RigChild> {
  const c = child(process.execPath, [SIM, "--json", ...args]);
  await c.waitFor((l) => l.event === "ready");
  return c;
}
