/**
 * The development main job's line: three simulated devices (EC P-256,
 * EC P-384, RSA-2048) on socat pty pairs, two devices each, provisioned by
 * the development station as a factory line would be.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Station } from "../compose.js";
import type { LineSummary } from "../app/line/line.js";
import type { LineEvent } from "../app/line/port-line.js";
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
