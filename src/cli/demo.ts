/**
 * The development main job's line: three simulated devices (EC P-256,
 * EC P-384, RSA-2048) on socat pty pairs, two devices each, provisioned by
 * the development station as a factory line would be.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Station } from "../compose.js";
import { LinesignError } from "../domain/errors.js";
import { DEV_OFFICER } from "../app/users.js";
import { childEnv, startService } from "./serve.js";
import { loadStation } from "./io.js";
import type { LineSummary } from "../app/line/line.js";
import type { LineEvent } from "../app/line/line-events.js";
import { ptyPair, socatAvailable, startSim, type PtyPair, type RigChild } from "./sim-rig.js";

const DEVICES: { key: string; name: string }[] = [
  { key: "ec-p256", name: "p256" },
  { key: "ec-p384", name: "p384" },
  { key: "rsa-2048", name: "rsa" },
];
const PER_PORT = 2;

export interface DemoLine {
  summary: LineSummary | null;
  /** Why the line did not run, when it did not. */
  skipped?: string;
}

export async function runDemoLine(s: Station, onEvent: (e: LineEvent) => void): Promise<DemoLine> {
  if (!socatAvailable())
    return { summary: null, skipped: "socat is not installed (bash .ci/setup installs it)" };
  const dir = mkdtempSync(join(tmpdir(), "linesign-demo-"));
  const pairs: PtyPair[] = [];
  const sims: RigChild[] = [];
  try {
    const root = join(dir, "chain.pem");
    writeFileSync(root, await s.ca.export("dev-ica", true));
    const run = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
    for (const d of DEVICES) pairs.push(await ptyPair(dir, d.name));
    for (const [i, d] of DEVICES.entries()) {
      sims.push(
        await startSim([
          "--port",
          pairs[i]!.device,
          "--device-id",
          `demo-${run}-${d.name}`,
          "--key",
          d.key,
          "--count",
          String(PER_PORT),
          "--root",
          root,
          "--store",
          join(dir, "devices"),
        ]),
      );
    }
    const line = s.line({ ports: pairs.map((p) => p.station), count: DEVICES.length * PER_PORT });
    line.onEvent(onEvent);
    await s.openToken();
    line.start();
    const summary = await line.finished();
    await Promise.all(sims.map((c) => c.exited));
    return { summary };
  } finally {
    for (const c of sims) c.proc.kill("SIGKILL");
    await Promise.all(pairs.map((p) => p.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The development kiosk's operator (README names it beside the development officer). */
export const DEMO_OPERATOR = {
  name: "demo-operator",
  passphrase: "linesign-demo-operator",
} as const;
const KIOSK_PORTS = 4;

/** Electron's binary when its runtime is installed (it cannot be downloaded on every machine). */
export function electronBinary(): string | null {
  try {
    const path = createRequire(import.meta.url)("electron") as unknown;
    return typeof path === "string" && existsSync(path) ? path : null;
  } catch {
    return null;
  }
}

export interface DemoKiosk {
  url: string;
  ports: string[];
  /** "electron" when its window was opened, else "browser" (open the URL). */
  shell: "electron" | "browser";
  /** Stops the service, the simulated devices and the ptys. */
  close(): Promise<void>;
}

/**
 * The kiosk on the development station: the station service with its page on
 * loopback, four pty ports each with a simulated device that presents a new
 * device every few seconds once the line runs, and Electron's window where
 * its runtime is installed.
 */
export async function openDemoKiosk(o: {
  home: string;
  env: NodeJS.ProcessEnv;
  openElectron: boolean;
}): Promise<DemoKiosk | { skipped: string }> {
  if (!socatAvailable()) return { skipped: "socat is not installed (bash .ci/setup installs it)" };
  const dir = mkdtempSync(join(tmpdir(), "linesign-kiosk-"));
  const pairs: PtyPair[] = [];
  const sims: RigChild[] = [];
  const cleanup = async () => {
    for (const c of sims) c.proc.kill("SIGKILL");
    await Promise.all(pairs.map((p) => p.close()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const run = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
    const chain = join(dir, "chain.pem");
    {
      const { openStation } = await loadStation();
      const s = openStation({ home: o.home, env: o.env, officer: DEV_OFFICER.name });
      try {
        writeFileSync(chain, await s.ca.export("dev-ica", true));
        if (!s.ctx.store.getUser(DEMO_OPERATOR.name))
          await s.users.add(DEMO_OPERATOR.name, "operator", DEMO_OPERATOR.passphrase);
      } finally {
        await s.close();
      }
    }
    for (let i = 1; i <= KIOSK_PORTS; i++) pairs.push(await ptyPair(dir, `kiosk${i}`));
    for (const [i, p] of pairs.entries())
      sims.push(
        await startSim([
          "--port",
          p.device,
          "--device-id",
          `kiosk-${run}-${i + 1}`,
          "--count",
          "500",
          "--gap-ms",
          "4000",
          "--answer-ms",
          String(24 * 3600_000),
          "--root",
          chain,
          "--store",
          join(dir, "devices"),
        ]),
      );
    const service = await startService({
      home: o.home,
      env: o.env,
      ports: pairs.map((p) => p.station),
      ui: true,
    });
    const bin = o.openElectron ? electronBinary() : null;
    let shell: ChildProcess | null = null;
    if (bin) {
      shell = spawn(bin, [fileURLToPath(new URL("../../electron/main.js", import.meta.url))], {
        stdio: "ignore",
        env: childEnv(o.env, { LINESIGN_SOCKET: service.socket, LINESIGN_HOME: o.home }),
      });
    }
    return {
      url: service.url!,
      ports: service.service.ports,
      shell: bin ? "electron" : "browser",
      close: async () => {
        shell?.kill("SIGTERM");
        await service.close();
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Proves the served kiosk answers: the page, and a call through the loopback API with its secret. */
export async function checkDemoKiosk(url: string): Promise<string> {
  const base = url.replace(/#.*/, "");
  const page = await fetch(base);
  if (!page.ok || !(await page.text()).includes("<title>Linesign</title>"))
    throw new LinesignError("INTERNAL", `The kiosk page at ${base} did not load.`);
  const key = url.slice(url.indexOf("#key=") + 5);
  const r = await fetch(`${base}api/call`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({
      channel: "auth.login",
      args: { name: DEMO_OPERATOR.name, passphrase: DEMO_OPERATOR.passphrase },
    }),
  });
  const reply = (await r.json()) as { ok: boolean; result?: { role: string } };
  if (!reply.ok || reply.result?.role !== "operator")
    throw new LinesignError("INTERNAL", "The kiosk's service did not sign the demo operator in.");
  return "page loaded; the demo operator signed in through the service";
}
