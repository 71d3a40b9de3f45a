/**
 * The serial line's part of `linesign bench`: socat pty pairs, simulated
 * devices pacing their bytes at 115200 baud, and the line running in this
 * process. Reports the per-device cycle against the wire time of the bytes
 * exchanged, and 16 ports against 1. Figures only, never a pass/fail.
 */
import { randomBytes, scryptSync } from "node:crypto";
import { hashPassphrase, passphraseMatches } from "../app/users.js";
import type { Station } from "../compose.js";
import { rssSampler } from "./bench-audit.js";
import { ptyPair, socatAvailable, startSim } from "./sim-rig.js";

export interface LineBenchResult {
  baud: number;
  devicesPerPort: number;
  /**
   * Mean bytes on the wire per device, both directions, as the device counts them: every byte
   * from the first of the HELLO it answered to the last of DONE, delimiters, repeats and
   * damaged frames included (the same bytes as `wireBytes` in the station's line.session;
   * docs/serial-protocol.md, "What the station records").
   */
  wireBytesPerDevice: number;
  /** Mean pure wire time of those bytes at the baud rate (8N1: 10 bits a byte), ms. */
  wireMsPerDevice: number;
  /** Mean cycle per device seen by the device, from the greeting it answered to DONE (key generation excluded), ms. */
  cycleMsPerDevice: number;
  /** cycle / wire time (target at most 1.10). */
  cycleToWire: number;
  /** Aggregate devices per minute, one port. */
  devicesPerMinute1: number;
  /** Aggregate devices per minute, 16 ports at once. */
  devicesPerMinute16: number;
  /** devicesPerMinute16 / devicesPerMinute1 (target at least 14). */
  ports16To1: number;
  /**
   * One port's cycle per device while a user loops sign-ins in the same service: with no
   * sign-ins, with the check as it was (scryptSync N=2^14 on the event loop the line shares)
   * and as it is (scrypt N=2^17 in libuv's thread pool), ms; and each against no sign-ins.
   */
  underSignIns: {
    cycleMs: { none: number; before: number; after: number };
    toNone: { before: number; after: number };
  };
}

interface SimDone {
  ok: boolean;
  cycleMs?: number;
  wireMs: number;
  txBytes: number;
  rxBytes: number;
}

/** Runs `ports` simulated devices lines of `perPort` devices each; returns their results and the line's span. */
async function runLine(
  s: Station,
  dir: string,
  ports: number,
  perPort: number,
  baud: number,
  /** Runs beside the line, as another request would, until the line ends. */
  beside?: () => Promise<unknown>,
): Promise<{ done: SimDone[]; spanMs: number; confirmed: number }> {
  const pairs = await Promise.all(
    Array.from({ length: ports }, (_, i) => ptyPair(dir, `b${ports}-${i}`)),
  );
  try {
    // Every device is plugged in and waiting before the station starts greeting.
    const sims = await Promise.all(
      pairs.map((p, i) =>
        startSim([
          "--port",
          p.device,
          "--device-id",
          `bench-${ports}-${i}`,
          "--count",
          String(perPort),
          "--baud",
          String(baud),
        ]),
      ),
    );
    const line = s.line({
      ports: pairs.map((p) => p.station),
      count: ports * perPort,
      baudRate: baud,
    });
    await s.openToken();
    const t0 = performance.now();
    let last = t0;
    line.onEvent((e) => {
      if (e.event === "device.confirmed") last = performance.now();
    });
    line.start();
    let running = true;
    const besideLoop = (async () => {
      while (running && beside) {
        await beside();
        // The next one arrives as a new request would: in a later turn of the loop.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const summary = await line.finished();
    running = false;
    await besideLoop;
    await Promise.all(sims.map((c) => c.exited));
    const done = sims.flatMap((c) =>
      c.lines.filter((l) => l.event === "device.done"),
    ) as unknown as SimDone[];
    return { done, spanMs: last - t0, confirmed: summary.confirmed };
  } finally {
    await Promise.all(pairs.map((p) => p.close()));
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Null when socat is not installed (the figures need pty pairs). */
export async function benchLine(
  s: Station,
  dir: string,
  perPort: number,
  log: (t: string) => void,
): Promise<LineBenchResult | null> {
  if (!socatAvailable()) return null;
  const baud = 115200;
  log(`bench: serial line, 1 port, ${perPort} simulated devices at ${baud} baud`);
  const one = await runLine(s, dir, 1, perPort, baud);
  log(`bench: serial line, 16 ports, ${perPort} simulated devices each`);
  const sixteen = await runLine(s, dir, 16, perPort, baud);
  const pass = "a-user-looping-sign-ins";
  const salt = randomBytes(16);
  const stored = await hashPassphrase(pass);
  log(`bench: serial line, 1 port, ${perPort} devices, while a user loops sign-ins (before)`);
  const before = await runLine(s, dir, 1, perPort, baud, async () => {
    scryptSync(pass, salt, 32, { N: 2 ** 14, r: 8, p: 1 });
  });
  log(`bench: serial line, 1 port, ${perPort} devices, while a user loops sign-ins (after)`);
  const after = await runLine(s, dir, 1, perPort, baud, () => passphraseMatches(pass, stored));
  const cycles = (r: { done: SimDone[] }) =>
    mean(r.done.filter((d) => d.ok && d.cycleMs !== undefined).map((d) => d.cycleMs!));
  const ok = one.done.filter((d) => d.ok && d.cycleMs !== undefined);
  const wireBytes = mean(ok.map((d) => d.txBytes + d.rxBytes));
  const wireMs = mean(ok.map((d) => d.wireMs));
  const cycleMs = mean(ok.map((d) => d.cycleMs!));
  const r1 = (x: number) => Number(x.toFixed(1));
  const rate1 = (one.confirmed / one.spanMs) * 60_000;
  const rate16 = (sixteen.confirmed / sixteen.spanMs) * 60_000;
  return {
    baud,
    devicesPerPort: perPort,
    wireBytesPerDevice: Math.round(wireBytes),
    wireMsPerDevice: Number(wireMs.toFixed(1)),
    cycleMsPerDevice: Number(cycleMs.toFixed(1)),
    cycleToWire: Number((cycleMs / wireMs).toFixed(3)),
    devicesPerMinute1: Math.round(rate1),
    devicesPerMinute16: Math.round(rate16),
    ports16To1: Number((rate16 / rate1).toFixed(2)),
    underSignIns: {
      cycleMs: { none: r1(cycleMs), before: r1(cycles(before)), after: r1(cycles(after)) },
      toNone: {
        before: Number((cycles(before) / cycleMs).toFixed(2)),
        after: Number((cycles(after) / cycleMs).toFixed(2)),
      },
    },
  };
}

export interface LineMemoryResult {
  /** Devices confirmed in the run (16 ports). */
  devices: number;
  /** The station process's resident memory during the run, MB. */
  rssMb: { start: number; peak: number; end: number };
  /** end / start. */
  endToStart: number;
}

/** A long line run on 16 ports with the station's memory sampled; null without socat. */
export async function benchLineMemory(
  s: Station,
  dir: string,
  devices: number,
  log: (t: string) => void,
): Promise<LineMemoryResult | null> {
  if (!socatAvailable()) return null;
  const perPort = Math.ceil(devices / 16);
  log(`bench: memory over a line run of ${perPort * 16} devices on 16 ports`);
  const rss = rssSampler();
  const run = await runLine(s, dir, 16, perPort, 115200);
  const rssMb = rss.stop();
  return {
    devices: run.confirmed,
    rssMb,
    endToStart: Number((rssMb.end / rssMb.start).toFixed(2)),
  };
}
