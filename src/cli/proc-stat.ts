/**
 * CPU time from Linux's /proc, for the bench's account of where a run's CPU
 * went (the station, the simulated devices, socat, everything else on the
 * machine). Figures only; null where /proc does not answer (not Linux, or
 * the process is gone).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

let tick: number | null = null;
/** Milliseconds per clock tick (/proc counts CPU time in ticks of 1/CLK_TCK s). */
function tickMs(): number {
  if (tick === null) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const hz = Number(r.stdout?.trim());
    tick = Number.isInteger(hz) && hz > 0 ? 1000 / hz : 10;
  }
  return tick;
}

/** User plus system CPU time of a process (or one of its threads: /proc/PID/task/TID), ms. */
export function cpuMsOf(pid: number, tid?: number): number | null {
  try {
    const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
    const stat = readFileSync(path, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks * tickMs() : null;
  } catch {
    return null;
  }
}

/**
 * The whole machine's CPU time, busy and in all (idle and iowait included), ms
 * summed over cores; `steal` is the part of busy the hypervisor gave to
 * other guests (on a shared host a run's figures move with it).
 */
export function machineCpuMs(): { busy: number; total: number; steal: number } | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const n = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is inside user and nice).
    const [user, nice, system, idle, iowait, irq, softirq, steal] = n;
    const busy = user! + nice! + system! + irq! + softirq! + (steal ?? 0);
    const total = busy + idle! + (iowait ?? 0);
    return { busy: busy * tickMs(), total: total * tickMs(), steal: (steal ?? 0) * tickMs() };
  } catch {
    return null;
  }
}

/** Cores the machine has. */
export const cores = (): number => Math.max(1, cpus().length);
