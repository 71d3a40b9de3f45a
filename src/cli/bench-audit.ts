/**
 * The audit part of `linesign bench`: a log of N entries (a year of a busy
 * line is about a million) appended through the station's own store, with a
 * signed checkpoint every `audit.checkpointEvery` entries as a station makes
 * them, then `audit verify` over all of it. Reports entries per second, the
 * same pages read without checking them (the floor, measured in the same run)
 * and the process's resident memory before, during and after the verify.
 * The verify runs three times as the station runs it (the chain walked in
 * ranges on two threads) and three times in one thread, interleaved, so the
 * two compare in the same run; the figures are each way's fastest run, and
 * every run is listed with the machine's load average as it began.
 */
import { loadavg } from "node:os";
import type { Station } from "../compose.js";

export interface AuditBenchResult {
  /** Entries in the log verified (the bench's and the station's own). */
  events: number;
  checkpoints: number;
  /** Entries per second appended through the store, in transactions of 1,000. */
  appendPerSec: number;
  /** Entries per second through `audit verify`: chain, checkpoint signatures and token head. */
  auditVerifyPerSec: number;
  verifyMs: number;
  /** Entries per second when the same pages are only read, not checked. */
  readPerSec: number;
  /** auditVerifyPerSec / readPerSec (1 would be verify at the cost of reading). */
  ofRead: number;
  /** Resident set size in MB: before the verify, its peak while verifying, after. */
  rssMb: { start: number; peak: number; end: number };
  /** Threads the station's verify walked the chain on. */
  threads: number;
  /** The same verify with the chain walked in one thread, in the same run. */
  sequential: {
    verifyMs: number;
    auditVerifyPerSec: number;
    rssMb: { start: number; peak: number; end: number };
  };
  /** auditVerifyPerSec / sequential.auditVerifyPerSec. */
  ofSequential: number;
  /**
   * Every run in the order they ran: the way, its time, the CPU time the
   * process spent in it (all threads), its RSS peak and the 1-minute load
   * average before it.
   */
  runs: {
    way: "threads" | "sequential";
    verifyMs: number;
    cpuMs: number;
    rssPeakMb: number;
    load1: number;
  }[];
}

const mb = (b: number): number => Math.round(b / 1e5) / 10;

/** Samples the resident set size every 20 ms (the walk yields between pages) until stopped. */
export function rssSampler(): { stop(): { start: number; peak: number; end: number } } {
  const start = process.memoryUsage.rss();
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  return {
    stop() {
      clearInterval(timer);
      const end = process.memoryUsage.rss();
      return { start: mb(start), peak: mb(Math.max(peak, end)), end: mb(end) };
    },
  };
}

export async function benchAudit(
  s: Station,
  events: number,
  log: (t: string) => void,
): Promise<AuditBenchResult> {
  log(`bench: appending ${events} entries to the log through the station's store`);
  const store = s.ctx.store;
  const batch = 1000;
  let t0 = performance.now();
  for (let b = 0; b < events; b += batch) {
    store.transaction(() => {
      for (let i = b; i < Math.min(events, b + batch); i++)
        store.appendEvent({
          actor: "bench-operator",
          action: "issuance.issue",
          subject: `bench-audit-${i}`,
          outcome: "ok",
          // What the line records for each certificate.
          details: {
            issuance: i,
            serial: (0x7a00000000000000n + BigInt(i)).toString(16),
            fingerprint: i.toString(16).padStart(64, "f"),
            spkiSha256: i.toString(16).padStart(64, "e"),
            keyType: "ec-p256",
            profile: "bench-ec-p256",
            ca: "dev-ica",
            origin: `serial:/dev/ttyUSB${i % 16}`,
            workOrder: "bench",
            notAfter: "2029-12-01T00:00:00.000Z",
            validityCut: false,
            supersedes: null,
          },
        });
    });
    await s.checkpointer.maybe();
  }
  const appendPerSec = Math.round((events / (performance.now() - t0)) * 1000);
  await s.checkpointer.checkpoint();

  // The floor: the same pages, read and dropped.
  t0 = performance.now();
  let read = 0;
  for (let after = 0; ;) {
    const page = store.storedEvents(after, 4096);
    read += page.length;
    if (page.length < 4096) break;
    after = page[page.length - 1]![11];
  }
  const readPerSec = Math.round((read / (performance.now() - t0)) * 1000);

  log(`bench: audit verify of ${read} entries, on threads and in one thread, interleaved`);
  const runs = { threads: [] as Run[], sequential: [] as Run[] };
  const order: AuditBenchResult["runs"] = [];
  for (let i = 0; i < 6; i++) {
    const way = i % 2 ? "threads" : "sequential";
    const load1 = Number(loadavg()[0]!.toFixed(2));
    const r = await timedVerify(s, way === "sequential" ? { parallelFrom: Infinity } : {});
    log(
      `bench: audit verify (${way}, ${r.threads} thread(s)) ${r.perSec}/s, ${r.ms} ms, load ${load1}`,
    );
    runs[way].push(r);
    order.push({ way, verifyMs: r.ms, cpuMs: r.cpuMs, rssPeakMb: r.rssMb.peak, load1 });
  }
  const best = (rs: Run[]) => rs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const par = best(runs.threads);
  const seq = best(runs.sequential);
  return {
    events: par.checked,
    checkpoints: par.checkpoints,
    appendPerSec,
    auditVerifyPerSec: par.perSec,
    verifyMs: par.ms,
    readPerSec,
    ofRead: Number((par.perSec / readPerSec).toFixed(3)),
    rssMb: par.rssMb,
    threads: par.threads,
    sequential: { verifyMs: seq.ms, auditVerifyPerSec: seq.perSec, rssMb: seq.rssMb },
    ofSequential: Number((par.perSec / seq.perSec).toFixed(3)),
    runs: order,
  };
}

interface Run {
  ms: number;
  cpuMs: number;
  perSec: number;
  checked: number;
  checkpoints: number;
  threads: number;
  rssMb: { start: number; peak: number; end: number };
}

async function timedVerify(s: Station, opts: { parallelFrom?: number }): Promise<Run> {
  const rss = rssSampler();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const v = await s.audit.verify(opts);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const rssMb = rss.stop();
  if (!v.ok) throw new Error(`the bench's own log did not verify: ${v.message}`);
  return {
    ms: Math.round(ms),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    perSec: Math.round((v.checked / ms) * 1000),
    checked: v.checked,
    checkpoints: v.checkpoints.verified,
    threads: v.threads,
    rssMb,
  };
}
