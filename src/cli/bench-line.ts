/**
 * The serial line's part of `linesign bench`: socat pty pairs, simulated
 * devices pacing their bytes at 115200 baud, and the line running in this
 * process. Reports the per-device cycle against the wire time of the bytes
 * exchanged, and 16 ports against 1. Figures only, never a pass/fail.
 */
import { randomBytes, scryptSync } from "node:crypto";
import { hashPassphrase, passphraseMatches } from "../app/users.js";
import type { Station } from "../compose.js";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { rssSampler } from "./bench-audit.js";
import { cpuMsOf, machineCpuMs } from "./proc-stat.js";
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
   * What bounds ports16To1: the 1-port and 16-port runs' accounts, and for the 16-port run
   * the shares of the machine's CPU taken by the station, the rig (simulators and socat) and
   * everything else, and the station's event-loop utilization.
   */
  gang: {
    one: GangRun;
    /** 16 ports, their devices simulated by one process (the rig's cheaper form). */
    sixteen: GangRun;
    /** 16 ports again with one simulator process per port (the rig as it was), and its ratio to 1 port. */
    sixteenSimPerPort: GangRun;
    ports16To1SimPerPort: number;
    stationCpuShare: number | null;
    rigCpuShare: number | null;
    otherCpuShare: number | null;
    idleCpuShare: number | null;
    eventLoopUtilization: number;
    /** One 4 KB append and fdatasync on the station's disk, median ms (see fsyncProbeMs). */
    fsyncMs: number;
  };
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
  stationMs?: number;
  turnaroundsMs?: number[];
  wireMs: number;
  txBytes: number;
  rxBytes: number;
}

/** One line run's account of where its time and the machine's CPU went. */
export interface GangRun {
  ports: number;
  devices: number;
  /** From the line's start to the last device confirmed, ms. */
  spanMs: number;
  devicesPerMinute: number;
  /** Simulator processes driving the ports. */
  simProcesses: number;
  /** The 1-minute load average at the start and at the end of the run. */
  loadAverage: { start: number; end: number };
  /**
   * CPU time per device confirmed, ms, by process: the station (all its threads), of which
   * its main thread (the event loop); the simulated devices; socat; and everything else
   * the machine ran meanwhile (other programs); null where /proc does not answer.
   */
  cpuMsPerDevice: {
    station: number;
    stationMain: number | null;
    sims: number;
    socat: number | null;
    other: number | null;
  };
  /**
   * Shares of the machine's CPU capacity over the run (cores x span): the station, the test
   * rig (simulators and socat), everything else, and idle. Near 0 idle: the machine was full.
   */
  cpuShare: { station: number; rig: number; other: number; idle: number } | null;
  /** The station's event loop: its utilization (0 to 1), and how late a 10 ms timer ran, ms. */
  eventLoop: { utilization: number; delayMsP50: number; delayMsP99: number; delayMsMax: number };
  /**
   * Durable writes per device, each one fsync: group commits (each device's issuance, its
   * delivery, its confirmation and its line.session record, shared with the other ports'),
   * the records in each, and the ms each spent moving the token's log head after it.
   */
  durable: {
    commitsPerDevice: number;
    itemsPerCommit: number;
    headMsPerCommit: number;
  };
  /**
   * One device's cycle as the device sees it, ms: in all, from the first byte of the greeting
   * it answered to the last of DONE; bytes on the wire at the baud rate; the station's
   * turnarounds (last byte of the device's frame out to the first of the answer in); and the
   * rest (the device's own work and its pacing running late). `turnarounds`: the station's
   * three one by one (answering IDENTIFY, CSR and STORED), over the devices that had exactly
   * those three.
   */
  cycleMs: {
    total: number;
    wire: number;
    station: number;
    device: number;
    turnarounds: { identify: number; csr: number; stored: number };
  };
}

/**
 * What one durable write costs on the disk the station's database is on: a 4 KB append and
 * its fdatasync (what a WAL commit with synchronous=FULL does), the median of 30, ms.
 */
export function fsyncProbeMs(dir: string): number {
  const path = join(dir, "fsync-probe");
  const fd = openSync(path, "a");
  const block = Buffer.alloc(4096, 0x5a);
  const ms: number[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      ms.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  ms.sort((x, y) => x - y);
  return ms[Math.floor(ms.length / 2)]!;
}

const r1 = (x: number): number => Number(x.toFixed(1));
const r3 = (x: number): number => Number(x.toFixed(3));

/** Runs `ports` simulated devices lines of `perPort` devices each; returns their results and the line's span. */
export async function runLine(
  s: Station,
  dir: string,
  ports: number,
  perPort: number,
  baud: number,
  /** Runs beside the line, as another request would, until the line ends. */
  beside?: () => Promise<unknown>,
  /** One simulator process for every port (the default), or one per port. */
  simProcesses: "one" | "per-port" = "one",
  /** Told the count each time a device is confirmed. */
  onConfirmed?: (confirmed: number) => void,
): Promise<{ done: SimDone[]; spanMs: number; confirmed: number; gang: GangRun }> {
  const pairs = await Promise.all(
    Array.from({ length: ports }, (_, i) => ptyPair(dir, `b${ports}-${i}`)),
  );
  try {
    // Every device is plugged in and waiting before the station starts greeting.
    const common = ["--count", String(perPort), "--baud", String(baud)];
    const sims =
      simProcesses === "one"
        ? [
            await startSim([
              ...pairs.flatMap((p) => ["--port", p.device]),
              "--device-id",
              ports === 1 ? `bench-1-0` : `bench-${ports}`,
              ...common,
            ]),
          ]
        : await Promise.all(
            pairs.map((p, i) =>
              startSim(["--port", p.device, "--device-id", `bench-${ports}-${i}`, ...common]),
            ),
          );
    const line = s.line({
      ports: pairs.map((p) => p.station),
      count: ports * perPort,
      baudRate: baud,
    });
    await s.openToken();
    const socatCpu = (): number | null =>
      pairs.reduce<number | null>((sum, p) => {
        const ms = cpuMsOf(p.pid);
        return sum === null || ms === null ? null : sum + ms;
      }, 0);
    const stats0 = { ...s.issuance.committer.stats };
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const load0 = loadavg()[0]!;
    const machine0 = machineCpuMs();
    const socat0 = socatCpu();
    const main0 = cpuMsOf(process.pid, process.pid);
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    let last = t0;
    let confirmed = 0;
    line.onEvent((e) => {
      if (e.event !== "device.confirmed") return;
      last = performance.now();
      onConfirmed?.(++confirmed);
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
    // The window ends as the line does: the sims' exits and socat's close are not in it.
    const cpu1 = process.cpuUsage();
    const elu1 = performance.eventLoopUtilization();
    const main1 = cpuMsOf(process.pid, process.pid);
    const socat1 = socatCpu();
    const m1 = machineCpuMs();
    const load1 = loadavg()[0]!;
    delay.disable();
    running = false;
    await besideLoop;
    await Promise.all(sims.map((c) => c.exited));
    const done = sims.flatMap((c) =>
      c.lines.filter((l) => l.event === "device.done"),
    ) as unknown as SimDone[];
    const spanMs = last - t0;
    const n = Math.max(1, summary.confirmed);
    const simCpu = sims.reduce((sum, c) => {
      const ready = c.lines.find((l) => l.event === "ready")?.cpuMs;
      const end = c.lines.find((l) => l.event === "summary")?.cpuMs;
      return sum + (typeof ready === "number" && typeof end === "number" ? end - ready : 0);
    }, 0);
    const stationCpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / 1000;
    const stationMain = main0 !== null && main1 !== null ? main1 - main0 : null;
    const socat = socat0 !== null && socat1 !== null ? socat1 - socat0 : null;
    const machine =
      machine0 && m1 ? { busy: m1.busy - machine0.busy, total: m1.total - machine0.total } : null;
    const rig = simCpu + (socat ?? 0);
    const other = machine ? Math.max(0, machine.busy - stationCpu - rig) : null;
    const share = (x: number): number => (machine && machine.total > 0 ? r3(x / machine.total) : 0);
    const elu = performance.eventLoopUtilization(elu1, elu0);
    const stats = s.issuance.committer.stats;
    const batches = stats.batches - stats0.batches;
    const ok = done.filter((d) => d.ok && d.cycleMs !== undefined);
    const total = mean(ok.map((d) => d.cycleMs!));
    const wire = mean(ok.map((d) => d.wireMs));
    const station = mean(ok.map((d) => d.stationMs ?? 0));
    const three = ok.filter((d) => d.turnaroundsMs?.length === 3).map((d) => d.turnaroundsMs!);
    const turn = (i: number): number => r1(mean(three.map((t) => t[i]!)));
    const gang: GangRun = {
      ports,
      simProcesses: sims.length,
      devices: summary.confirmed,
      spanMs: Math.round(spanMs),
      devicesPerMinute: Math.round((summary.confirmed / spanMs) * 60_000),
      loadAverage: { start: r1(load0), end: r1(load1) },
      cpuMsPerDevice: {
        station: r1(stationCpu / n),
        stationMain: stationMain === null ? null : r1(stationMain / n),
        sims: r1(simCpu / n),
        socat: socat === null ? null : r1(socat / n),
        other: other === null ? null : r1(other / n),
      },
      cpuShare: machine
        ? {
            station: share(stationCpu),
            rig: share(rig),
            other: share(other ?? 0),
            idle: share(machine.total - machine.busy),
          }
        : null,
      eventLoop: {
        utilization: r3(elu.utilization),
        delayMsP50: r1(delay.percentile(50) / 1e6),
        delayMsP99: r1(delay.percentile(99) / 1e6),
        delayMsMax: r1(delay.max / 1e6),
      },
      durable: {
        commitsPerDevice: r3(batches / n),
        itemsPerCommit: r3((stats.items - stats0.items) / Math.max(1, batches)),
        headMsPerCommit: r3((stats.headMs - stats0.headMs) / Math.max(1, batches)),
      },
      cycleMs: {
        total: r1(total),
        wire: r1(wire),
        station: r1(station),
        device: r1(total - wire - station),
        turnarounds: { identify: turn(0), csr: turn(1), stored: turn(2) },
      },
    };
    return { done, spanMs, confirmed: summary.confirmed, gang };
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
  const fsyncMs = fsyncProbeMs(dir);
  const one = await runLine(s, dir, 1, perPort, baud);
  log(`bench: serial line, 16 ports, ${perPort} simulated devices each`);
  const sixteen = await runLine(s, dir, 16, perPort, baud);
  log(`bench: serial line, 16 ports, ${perPort} devices each, one simulator process per port`);
  const perProcess = await runLine(s, dir, 16, perPort, baud, undefined, "per-port");
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
    gang: {
      one: one.gang,
      sixteen: sixteen.gang,
      sixteenSimPerPort: perProcess.gang,
      ports16To1SimPerPort: Number(
        (((perProcess.confirmed / perProcess.spanMs) * 60_000) / rate1).toFixed(2),
      ),
      stationCpuShare: sixteen.gang.cpuShare?.station ?? null,
      rigCpuShare: sixteen.gang.cpuShare?.rig ?? null,
      otherCpuShare: sixteen.gang.cpuShare?.other ?? null,
      idleCpuShare: sixteen.gang.cpuShare?.idle ?? null,
      eventLoopUtilization: sixteen.gang.eventLoop.utilization,
      fsyncMs: r3(fsyncMs),
    },
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
  /**
   * RSS and the JavaScript heap in use after each tenth of the devices, MB: growth to a
   * steady state levels off, a leak keeps rising (the heap falls back at each full
   * collection; what survives them is what is kept).
   */
  rssMbByDevices: { devices: number; rssMb: number; heapMb: number }[];
  /** The series' second half: lowest and highest RSS, MB, and highest over lowest. */
  steady: { rssMbLow: number; rssMbHigh: number; highToLow: number };
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
  const every = Math.max(1, Math.floor((perPort * 16) / 10));
  const series: LineMemoryResult["rssMbByDevices"] = [];
  const mbOf = (bytes: number): number => Math.round(bytes / 1e5) / 10;
  const run = await runLine(s, dir, 16, perPort, 115200, undefined, "one", (n) => {
    if (n % every === 0)
      series.push({
        devices: n,
        rssMb: mbOf(process.memoryUsage.rss()),
        heapMb: mbOf(process.memoryUsage().heapUsed),
      });
  });
  const rssMb = rss.stop();
  const late = series.slice(Math.floor(series.length / 2)).map((p) => p.rssMb);
  const low = late.length > 0 ? Math.min(...late) : rssMb.end;
  const high = late.length > 0 ? Math.max(...late) : rssMb.end;
  return {
    devices: run.confirmed,
    rssMb,
    endToStart: Number((rssMb.end / rssMb.start).toFixed(2)),
    rssMbByDevices: series,
    steady: { rssMbLow: low, rssMbHigh: high, highToLow: Number((high / low).toFixed(3)) },
  };
}
