/**
 * A flooding device: on one port it sends valid IDENTIFY frames with a new
 * device id each time, as fast as the line takes them, and never answers
 * what the station sends (it drops it). What one port can cost is bounded:
 * its refusals reach the log as a few entries with their count (not one
 * fsynced entry each), the station's memory stays bounded, the port is shown
 * as misbehaving, and a good device on the next port keeps being provisioned.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { devStation } from "../helpers/station.js";
import {
  exportChain,
  ptyPair,
  startLine,
  startSim,
  type Proc,
  type PtyPair,
} from "../helpers/serial.js";

const DIST = fileURLToPath(new URL("../../dist/src/domain/serial/", import.meta.url));
const FLOOD_MS = 6000;
const pairs: PtyPair[] = [];
const sims: Proc[] = [];

afterAll(async () => {
  for (const s of sims) s.proc.kill("SIGKILL");
  await Promise.all(pairs.map((p) => p.kill()));
});

/**
 * A child that writes IDENTIFY frames with rotating ids to `path` for `ms`,
 * as fast as the port takes them, never waiting for an answer. What comes
 * back is drained unread by `cat`, a process of its own: serialport stops
 * reading a port while one of its writes waits for room (its poller watches
 * one event at a time), so a flooder reading in its own process stops reading
 * whenever the station is slow to take a frame, and the station, whose
 * answers then cannot go out, stops reading it in turn: both wait for ever,
 * which a UART (no flow control) never does. A device that reads everything
 * is the hardest case for the station: every frame it sends must be handled.
 */
function flood(path: string, ms: number): Promise<number> {
  const script = `
    import { spawn } from "node:child_process";
    import { SerialPort } from "serialport";
    import { encodeFrame } from ${JSON.stringify(join(DIST, "frame.js"))};
    import { encodeMessage } from ${JSON.stringify(join(DIST, "messages.js"))};
    const port = new SerialPort({ path: process.argv[1], baudRate: 921600 });
    port.on("error", (e) => process.stderr.write("flooder: " + e.message + "\\n"));
    await new Promise((r) => port.on("open", r));
    const drain = spawn("cat", [process.argv[1]], { stdio: ["ignore", "ignore", "inherit"] });
    const end = Date.now() + Number(process.argv[2]);
    let n = 0;
    while (Date.now() < end) {
      const { type, payload } = encodeMessage({
        type: "IDENTIFY", protocol: 1, deviceId: "flood-" + n, model: "F", firmware: "1", keyTypes: ["ec-p256"],
      });
      await new Promise((r) => port.write(Buffer.from(encodeFrame(type, n & 0xff, payload)), r));
      n++;
    }
    process.stdout.write(String(n));
    drain.kill("SIGKILL");
    port.close(() => process.exit(0));
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, path, String(ms)], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    // A flooder that cannot finish fails the test, with what it said, instead of hanging it.
    const stuck = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `the flooder did not finish within ${ms + 30_000} ms (sent: ${out || "nothing"})`,
        ),
      );
    }, ms + 30_000);
    child.on("exit", () => {
      clearTimeout(stuck);
      resolve(Number(out));
    });
  });
}

/** The resident memory of a process, in MB. */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

describe("a flooding device on one port", () => {
  it("costs the log a few entries, the station bounded memory, and the next port nothing", async () => {
    const st = devStation();
    const chain = exportChain(st);
    for (const name of ["flood", "good"]) pairs.push(await ptyPair(st.hsm.dir, name));
    const [bad, good] = pairs as [PtyPair, PtyPair];
    sims.push(
      startSim([
        "--port",
        good.device,
        "--device-id",
        "good",
        "--count",
        "100000",
        "--baud",
        "921600",
        "--root",
        chain.chain,
        "--answer-ms",
        "20000",
      ]),
    );
    const line = startLine(st, [bad.station, good.station]);
    const events = line.lines.all;
    const confirmedOnGood = () =>
      events.filter((e) => e.event === "device.confirmed" && e.port === good.station).length;
    await line.lines.waitFor(() => confirmedOnGood() >= 1, "the good port's first device", 60_000);

    const before = confirmedOnGood();
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(line.proc.pid!))), 200);
    const sent = await flood(bad.device, FLOOD_MS);
    clearInterval(sampler);
    const during = confirmedOnGood() - before;

    await line.lines.waitFor(
      (e) => e.event === "port.misbehaving" && e.port === bad.station,
      "the flooding port shown as misbehaving",
      30_000,
    );
    // The operator does what the tile says: the flooder is unplugged (its last exchange, a
    // request for a CSR that will never come, ends with it), and the line is stopped.
    await bad.kill();
    await line.lines.waitFor(
      (e) => e.event === "port.lost" && e.port === bad.station,
      "the flooding port unplugged",
    );
    line.proc.kill("SIGINT");
    await line.exited;

    expect(sent, "IDENTIFY frames the device sent").toBeGreaterThan(1000);
    // The good port went on while the other flooded.
    expect(during).toBeGreaterThanOrEqual(5);
    // Memory stays bounded while the station handles every frame the flooder sends.
    expect(peak).toBeLessThan(400);

    // The log holds a few entries for the flooding port, and they count what they stand for.
    const floods = st
      .events()
      .filter((e) => e.action === "line.session" && e.details.includes(bad.station));
    expect(floods.length).toBeGreaterThan(0);
    expect(floods.length).toBeLessThanOrEqual(10);
    const counted = floods.reduce(
      (n, e) => n + 1 + Number((JSON.parse(e.details) as { repeated?: number }).repeated ?? 0),
      0,
    );
    expect(counted).toBeGreaterThan(100);
  }, 180_000);
});
