import { expect, it } from "vitest";
import { cleanEnv, linesignAsync } from "../helpers/cli.js";

// The bench is not a test of speed: this only checks that it runs and reports
// every figure it promises, with positive numbers. It never asserts on time.
// It runs without the synchronous helper's two-minute cap: on a busy machine the run takes longer.
it("npm run bench -- --json reports per-key-type figures", async () => {
  const r = await linesignAsync(
    [
      "bench",
      "--json",
      "--count",
      "20",
      "--line-devices",
      "2",
      "--memory-devices",
      "32",
      "--sync-certs",
      "30",
      "--audit-events",
      "3000",
    ],
    cleanEnv({}),
  );
  expect(r.code, r.stderr).toBe(0);
  const j = r.json as unknown as Record<string, Record<string, number>>;
  for (const key of [
    "hsmSignPerSec",
    "hsmSignPerSecConcurrent",
    "hsmSignConcurrency",
    "issuePerSec",
    "issueToSignRatio",
  ]) {
    expect(Object.keys(j[key]!).sort()).toEqual(["ec-p256", "rsa-2048"]);
    for (const v of Object.values(j[key]!)) expect(v).toBeGreaterThan(0);
  }
  // CPU per issuance by thread, and the rate it allows (from /proc: the machine is Linux).
  const cpu = j.issueCpuMs as unknown as Record<string, Record<string, number>>;
  for (const k of ["ec-p256", "rsa-2048"]) {
    expect(cpu[k]!.main, k).toBeGreaterThanOrEqual(0);
    expect(cpu[k]!.otherThreads, k).toBeGreaterThanOrEqual(0);
    expect(cpu[k]!.boundPerSec, k).toBeGreaterThan(0);
  }
  expect(Object.keys(j.stagesMs!["ec-p256"] as unknown as object)).toEqual([
    "parse",
    "verify",
    "policy",
    "build",
    "sign",
    "commit",
    "head",
  ]);
  const line = j.line as unknown as Record<string, number>;
  for (const key of [
    "wireBytesPerDevice",
    "wireMsPerDevice",
    "cycleMsPerDevice",
    "cycleToWire",
    "devicesPerMinute1",
    "devicesPerMinute16",
    "ports16To1",
  ])
    expect(line[key], key).toBeGreaterThan(0);
  // What bounds 16 ports against 1: CPU by process, the event loop, durable writes, the cycle's parts.
  type Run = Record<string, Record<string, number>> & { simProcesses: number };
  const gang = j.line!.gang as unknown as Record<string, number>;
  const runs = j.line!.gang as unknown as Record<"one" | "sixteen" | "sixteenSimPerPort", Run>;
  for (const key of [
    "stationCpuShare",
    "rigCpuShare",
    "eventLoopUtilization",
    "fsyncMs",
    "ports16To1SimPerPort",
  ])
    expect(gang[key], `gang.${key}`).toBeGreaterThan(0);
  expect(runs.sixteen.simProcesses).toBe(1);
  expect(runs.sixteenSimPerPort.simProcesses).toBe(16);
  for (const run of [runs.one, runs.sixteen, runs.sixteenSimPerPort]) {
    for (const key of ["station", "sims"])
      expect(run.cpuMsPerDevice![key], `cpuMsPerDevice.${key}`).toBeGreaterThan(0);
    for (const key of ["total", "wire", "station"])
      expect(run.cycleMs![key], `cycleMs.${key}`).toBeGreaterThan(0);
    expect(run.durable!.commitsPerDevice).toBeGreaterThan(0);
    expect(run.eventLoop!.utilization).toBeGreaterThan(0);
  }
  // One port's cycle while a user loops sign-ins, before and after, measured in this run.
  const under = j.line!.underSignIns as unknown as Record<string, Record<string, number>>;
  for (const when of ["none", "before", "after"])
    expect(under.cycleMs![when], `underSignIns.cycleMs.${when}`).toBeGreaterThan(0);
  for (const when of ["before", "after"])
    expect(under.toNone![when], `underSignIns.toNone.${when}`).toBeGreaterThan(0);
  const memory = j.lineMemory as unknown as {
    devices: number;
    rssMb: Record<string, number>;
    rssMbByDevices: { devices: number; rssMb: number; heapMb: number }[];
    steady: { rssMbLow: number; rssMbHigh: number; highToLow: number };
  };
  expect(memory.devices).toBe(32);
  // After each tenth of the devices (32 devices: every 3rd).
  expect(memory.rssMbByDevices.map((p) => p.devices)).toEqual([
    3, 6, 9, 12, 15, 18, 21, 24, 27, 30,
  ]);
  for (const p of memory.rssMbByDevices) {
    expect(p.rssMb).toBeGreaterThan(0);
    expect(p.heapMb).toBeGreaterThan(0);
    expect(p.heapMb).toBeLessThan(p.rssMb);
  }
  // The steady figures come from the series' second half.
  const late = memory.rssMbByDevices.slice(5).map((p) => p.rssMb);
  expect(memory.steady.rssMbLow).toBe(Math.min(...late));
  expect(memory.steady.rssMbHigh).toBe(Math.max(...late));
  for (const key of ["start", "peak", "end"])
    expect(memory.rssMb[key], `lineMemory.rssMb.${key}`).toBeGreaterThan(0);
  const sync = j.sync as unknown as Record<string, number>;
  expect(sync.certificates).toBeGreaterThanOrEqual(30); // plus the line figures' devices
  for (const key of ["achievedRps", "ofCeiling", "busiestSecond"])
    expect(sync[key], key).toBeGreaterThan(0);
  const audit = j.audit as unknown as Record<string, number> & {
    rssMb: Record<string, number>;
  };
  expect(audit.events).toBeGreaterThanOrEqual(3000); // plus the station's own entries
  expect(audit.checkpoints).toBeGreaterThanOrEqual(3);
  for (const key of ["auditVerifyPerSec", "verifyMs", "readPerSec", "ofRead", "appendPerSec"])
    expect(audit[key], key).toBeGreaterThan(0);
  for (const key of ["start", "peak", "end"]) expect(audit.rssMb[key], key).toBeGreaterThan(0);
  // Sign-ins, before (N=2^14 on the event loop) and after (N=2^17 off it), measured in this run.
  const signIn = j.signIn as unknown as Record<string, Record<string, number>> & {
    afterToBefore: number;
  };
  for (const part of ["msPerSignIn", "loopTurnsPerSec", "ofIdle"] as const)
    for (const when of ["before", "after"])
      expect(signIn[part]![when], `${part}.${when}`).toBeGreaterThan(0);
  expect(signIn.afterToBefore).toBeGreaterThan(0);
  expect(r.stdout.trim().split("\n")).toHaveLength(1);
}, 600_000);
