/**
 * `linesign bench`: figures measured in one run on one throwaway token, so
 * ratios mean something on a shared, noisy machine. Never asserts on time.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initStation, openStation, DEV_PROFILE } from "../compose.js";
import { DEV_OFFICER } from "../app/users.js";
import { newStageTimings, type StageTimings } from "../app/issuance.js";
import type { CliIo } from "./io.js";
import {
  benchLine,
  benchLineMemory,
  type LineBenchResult,
  type LineMemoryResult,
} from "./bench-line.js";
import { benchSync, type SyncBenchResult } from "./bench-sync.js";
import { benchKiosk, type KioskBenchResult } from "./bench-kiosk.js";
import { benchSignIn, type SignInBenchResult } from "./bench-signin.js";
import { benchAudit, type AuditBenchResult } from "./bench-audit.js";
import { benchHead, type HeadBenchResult } from "./bench-head.js";
import { cores, cpuMsOf, machineCpuMs } from "./proc-stat.js";

type CaKey = "ec-p256" | "rsa-2048";

export interface BenchResult {
  count: number;
  /** Raw HSM signatures per second, one at a time (each awaited before the next). */
  hsmSignPerSec: Record<CaKey, number>;
  /** The same with 16 callers at once, on the key store's signing sessions. */
  hsmSignPerSecConcurrent: Record<CaKey, number>;
  /** hsmSignPerSecConcurrent / hsmSignPerSec. */
  hsmSignConcurrency: Record<CaKey, number>;
  /** Issuances per second with 16 callers at once (as 16 ports provisioning), durable records. */
  issuePerSec: Record<CaKey, number>;
  /** The same, one issuance at a time. */
  issuePerSecOneAtATime: Record<CaKey, number>;
  /** Mean issuances per durable commit in the concurrent run (group commit). */
  commitBatchSize: Record<CaKey, number>;
  /** Worker threads building certificates. */
  workers: number;
  /** issuePerSec / hsmSignPerSec, per CA key type. */
  issueToSignRatio: Record<CaKey, number>;
  /**
   * CPU per issuance in the 16-port run (from /proc; null elsewhere): the main
   * thread's (verify, policy, sign, commit, head), the other threads' (the
   * certificate builders, GC, libuv), and the rate they allow on this
   * machine's cores when nothing else runs: the lower of 1000/main and
   * cores*1000/(main+other).
   */
  issueCpuMs: Record<CaKey, { main: number; otherThreads: number; boundPerSec: number } | null>;
  /**
   * The hypervisor's share of this machine's CPU time during the 16-port run
   * (steal, from /proc/stat; null elsewhere): on a shared host, time the
   * station's threads were ready and not run.
   */
  issueStealShare: Record<CaKey, number | null>;
  /** Mean milliseconds per issuance in each stage (one at a time). */
  stagesMs: Record<
    CaKey,
    Record<"parse" | "verify" | "policy" | "build" | "sign" | "commit" | "head", number>
  >;
  /** The seed articles' manual flow (genrsa, req, x509 -req), ms per device; null without openssl. */
  opensslManualMsPerDevice: number | null;
  /** Issuance rate against the manual openssl flow's rate. */
  speedupOverManualOpenssl: number | null;
  /** The serial line with simulated devices; null when skipped or socat is missing. */
  line: LineBenchResult | null;
  /** The station's memory over a long line run (--memory-devices; null when skipped). */
  lineMemory: LineMemoryResult | null;
  /** AWS IoT sync against the emulator; null when skipped. */
  sync: SyncBenchResult | null;
  /** The kiosk's station service: call rates and how soon a tile hears of a step. */
  kiosk: KioskBenchResult | null;
  /** A sign-in's check and the event loop while a user loops sign-ins, before and after N=2^17 off the loop. */
  signIn: SignInBenchResult | null;
  /** `audit verify` over a long log (--audit-events); null when skipped. */
  audit: AuditBenchResult | null;
  /** Head moves with and without the auditor's public copy (null when skipped). */
  head: HeadBenchResult | null;
}

interface CsrFactory {
  deviceKey(t: string): unknown;
  makeCsr(o: { key: unknown; subject: [string, string][] }): Uint8Array;
}

async function loadFactory(): Promise<CsrFactory> {
  // The device side of the bench comes from fixtures (built beside src in dist/).
  return (await import(
    new URL("../../fixtures/csr-factory.js", import.meta.url).href
  )) as CsrFactory;
}

/** Concurrent callers in the gang measurement. */
const PORTS = 16;

const perSec = (n: number, ms: number): number => Math.round((n / ms) * 1000);

function opensslManualFlow(dir: string, runs: number): number | null {
  if (spawnSync("openssl", ["version"]).status !== 0) return null;
  const o = (args: string[]) => spawnSync("openssl", args, { cwd: dir, stdio: "ignore" });
  o(["genrsa", "-out", "ca.key", "2048"]);
  o([
    "req",
    "-x509",
    "-new",
    "-nodes",
    "-key",
    "ca.key",
    "-sha256",
    "-days",
    "365",
    "-subj",
    "/CN=bench-ca",
    "-out",
    "ca.pem",
  ]);
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    o(["genrsa", "-out", "d.key", "2048"]);
    o(["req", "-new", "-key", "d.key", "-subj", `/CN=device-${i}`, "-out", "d.csr"]);
    o([
      "x509",
      "-req",
      "-in",
      "d.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "365",
      "-sha256",
      "-out",
      "d.crt",
    ]);
  }
  return (performance.now() - t0) / runs;
}

/** What bounded 16 ports against 1, in words with its figures. */
function gangLine(line: LineBenchResult): string {
  const g = line.gang.sixteen;
  const pct = (x: number | null | undefined): string =>
    x === null || x === undefined ? "?" : `${Math.round(x * 100)}%`;
  const c = g.cpuMsPerDevice;
  return (
    `           16 ports (load ${g.loadAverage.start}): the machine's CPU went ${pct(g.cpuShare?.station)} to the station, ${pct(g.cpuShare?.rig)} to the simulated devices and socat, ` +
    `${pct(g.cpuShare?.other)} to other programs, ${pct(g.cpuShare?.idle)} idle; the station's event loop was busy ${pct(g.eventLoop.utilization)} (a 10 ms timer p99 ${g.eventLoop.delayMsP99} ms late)\n` +
    `           CPU ms per device: station ${c.station} (event loop ${c.stationMain ?? "?"}), simulators ${c.sims}, socat ${c.socat ?? "?"}; ` +
    `cycle ${g.cycleMs.total} ms = wire ${g.cycleMs.wire} + station ${g.cycleMs.station} + device ${g.cycleMs.device}; ` +
    `${g.durable.commitsPerDevice} durable commits per device (${g.durable.itemsPerCommit} records each; fsync ${line.gang.fsyncMs} ms)\n`
  );
}

/** Runs the bench; prints figures (JSON with --json). */
export async function runBench(
  io: CliIo,
  opts: {
    json: boolean;
    count: number;
    lineDevices: number;
    memoryDevices: number;
    syncCerts: number;
    auditEvents: number;
    /** Log head moves per head store (0 skips). */
    headMoves?: number;
  },
): Promise<BenchResult> {
  const log = (t: string): void => {
    if (!opts.json) io.err(t + "\n");
  };
  const dir = mkdtempSync(join(tmpdir(), "linesign-bench-"));
  mkdirSync(join(dir, "tokens"));
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(
    conf,
    `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  // The bench's own token store: the station's real token is never touched.
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf, LINESIGN_USER_PIN: undefined };
  const home = join(dir, "home");
  try {
    log(`bench: setting up a throwaway station in ${dir}`);
    await initStation({ home, dev: true, env });
    {
      const s = openStation({ home, env, officer: DEV_OFFICER.name });
      await s.ca.create({
        label: "bench-rsa",
        keyType: "rsa-2048",
        subject: "CN=Bench RSA CA",
        signing: { mode: "root", rootLabel: "dev-root" },
      });
      await s.close();
    }
    const cfgPath = join(home, "station.json");
    const { readFileSync } = await import("node:fs");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as {
      profiles: Record<string, unknown>;
      audit: { checkpointEvery: number };
    };
    cfg.profiles["bench-ec-p256"] = { ...DEV_PROFILE, ca: "dev-ica", allowReissue: false };
    cfg.profiles["bench-rsa-2048"] = { ...DEV_PROFILE, ca: "bench-rsa", allowReissue: false };
    writeFileSync(cfgPath, JSON.stringify(cfg));

    const factory = await loadFactory();
    const s = openStation({ home, env, officer: DEV_OFFICER.name });
    const result: BenchResult = {
      count: opts.count,
      hsmSignPerSec: { "ec-p256": 0, "rsa-2048": 0 },
      hsmSignPerSecConcurrent: { "ec-p256": 0, "rsa-2048": 0 },
      hsmSignConcurrency: { "ec-p256": 0, "rsa-2048": 0 },
      issuePerSec: { "ec-p256": 0, "rsa-2048": 0 },
      issuePerSecOneAtATime: { "ec-p256": 0, "rsa-2048": 0 },
      commitBatchSize: { "ec-p256": 0, "rsa-2048": 0 },
      workers: s.workers,
      issueToSignRatio: { "ec-p256": 0, "rsa-2048": 0 },
      issueCpuMs: { "ec-p256": null, "rsa-2048": null },
      issueStealShare: { "ec-p256": null, "rsa-2048": null },
      stagesMs: {} as BenchResult["stagesMs"],
      opensslManualMsPerDevice: null,
      speedupOverManualOpenssl: null,
      line: null,
      lineMemory: null,
      sync: null,
      kiosk: null,
      signIn: null,
      audit: null,
      head: null,
    };
    for (const [caKey, label] of [
      ["ec-p256", "dev-ica"],
      ["rsa-2048", "bench-rsa"],
    ] as const) {
      const signer = await s.ca.signerFor(s.ca.get(label));
      const msg = new Uint8Array(200);
      for (let i = 0; i < 200; i++) await signer.sign(msg); // warm-up
      const signs = caKey === "ec-p256" ? 20_000 : 3_000;
      let t0 = performance.now();
      for (let i = 0; i < signs; i++) await signer.sign(msg);
      result.hsmSignPerSec[caKey] = perSec(signs, performance.now() - t0);
      let left = signs;
      t0 = performance.now();
      await Promise.all(
        Array.from({ length: PORTS }, async () => {
          while (left > 0) {
            left--;
            await signer.sign(msg);
          }
        }),
      );
      result.hsmSignPerSecConcurrent[caKey] = perSec(signs, performance.now() - t0);
      result.hsmSignConcurrency[caKey] = Number(
        (result.hsmSignPerSecConcurrent[caKey] / result.hsmSignPerSec[caKey]).toFixed(3),
      );
      log(
        `bench: ${caKey} raw HSM signing: ${result.hsmSignPerSec[caKey]}/s one at a time, ` +
          `${result.hsmSignPerSecConcurrent[caKey]}/s with ${PORTS} callers at once`,
      );

      log(`bench: making ${opts.count} device requests (EC P-256 keys) for the ${caKey} CA`);
      const csrs = Array.from({ length: opts.count }, (_, i) =>
        factory.makeCsr({
          key: factory.deviceKey("ec-p256"),
          subject: [["CN", `bench-${caKey}-${i}`]],
        }),
      );
      // One at a time (stage times mean something here), then 16 callers at once, as 16 ports would.
      const half = Math.floor(csrs.length / 2);
      const t: StageTimings = newStageTimings();
      const head0 = s.issuance.committer.stats.headMs;
      t0 = performance.now();
      for (let i = 0; i < half; i++) {
        await s.issuance.issue({ csr: csrs[i]!, profile: `bench-${caKey}`, origin: "bench" }, t);
        if (!opts.json && io.interactive && i % 100 === 0)
          io.err(`\rbench: ${caKey} issuance ${i}/${csrs.length}`);
      }
      result.issuePerSecOneAtATime[caKey] = perSec(half, performance.now() - t0);
      const headMs = s.issuance.committer.stats.headMs - head0;
      const stats0 = { ...s.issuance.committer.stats };
      let next = half;
      const cpu0 = { all: cpuMsOf(process.pid), main: cpuMsOf(process.pid, process.pid) };
      const machine0 = machineCpuMs();
      t0 = performance.now();
      await Promise.all(
        Array.from({ length: PORTS }, async () => {
          while (next < csrs.length) {
            const i = next++;
            await s.issuance.issue({
              csr: csrs[i]!,
              profile: `bench-${caKey}`,
              origin: `bench:port${i % PORTS}`,
            });
          }
        }),
      );
      const ms = performance.now() - t0;
      const cpu1 = { all: cpuMsOf(process.pid), main: cpuMsOf(process.pid, process.pid) };
      const machine1 = machineCpuMs();
      if (machine0 && machine1 && machine1.total > machine0.total)
        result.issueStealShare[caKey] = Number(
          ((machine1.steal - machine0.steal) / (machine1.total - machine0.total)).toFixed(3),
        );
      if (cpu0.all !== null && cpu0.main !== null && cpu1.all !== null && cpu1.main !== null) {
        const n = csrs.length - half;
        const main = (cpu1.main - cpu0.main) / n;
        const other = (cpu1.all - cpu1.main - (cpu0.all - cpu0.main)) / n;
        result.issueCpuMs[caKey] = {
          main: Number(main.toFixed(3)),
          otherThreads: Number(other.toFixed(3)),
          boundPerSec: Math.round(
            Math.min(1000 / Math.max(main, 1e-3), (cores() * 1000) / Math.max(main + other, 1e-3)),
          ),
        };
      }
      if (!opts.json && io.interactive) io.err("\n");
      const stats = s.issuance.committer.stats;
      result.commitBatchSize[caKey] = Number(
        ((stats.items - stats0.items) / Math.max(1, stats.batches - stats0.batches)).toFixed(1),
      );
      result.issuePerSec[caKey] = perSec(csrs.length - half, ms);
      result.issueToSignRatio[caKey] = Number(
        (result.issuePerSec[caKey] / result.hsmSignPerSec[caKey]).toFixed(4),
      );
      const each = (v: bigint): number =>
        Number((Number(v) / 1e6 / Math.max(1, t.count)).toFixed(3));
      result.stagesMs[caKey] = {
        parse: each(t.parse),
        verify: each(t.verify),
        policy: each(t.policy),
        build: each(t.build),
        sign: each(t.sign),
        commit: each(t.commit),
        // Part of commit: moving the token's log head after the commit, before hand-over.
        head: Number((headMs / Math.max(1, t.count)).toFixed(3)),
      };
      log(
        `bench: ${caKey} end-to-end issuance with durable records: ${result.issuePerSec[caKey]}/s`,
      );
    }
    if (opts.lineDevices > 0) result.line = await benchLine(s, dir, opts.lineDevices, log);
    if (opts.memoryDevices > 0)
      result.lineMemory = await benchLineMemory(s, dir, opts.memoryDevices, log);
    if (opts.syncCerts > 0) result.sync = await benchSync(s, opts.syncCerts, log);
    // Against one device's wire time on the line (measured above, or 2,169 bytes at 115200 8N1).
    result.kiosk = await benchKiosk(s, 1000, result.line?.wireMsPerDevice ?? 188.3, log);
    result.signIn = await benchSignIn(log);
    // Last: the other figures are measured on the log they always were.
    if (opts.auditEvents > 0) result.audit = await benchAudit(s, opts.auditEvents, log);
    // After everything else: it moves this throwaway station's head far past its log.
    if ((opts.headMoves ?? 0) > 0) result.head = await benchHead(s, opts.headMoves!, log);
    await s.close();
    log("bench: timing the seed articles' manual openssl flow");
    const manualDir = join(dir, "manual");
    mkdirSync(manualDir);
    result.opensslManualMsPerDevice = opensslManualFlow(manualDir, 5);
    if (result.opensslManualMsPerDevice) {
      result.opensslManualMsPerDevice = Number(result.opensslManualMsPerDevice.toFixed(1));
      result.speedupOverManualOpenssl = Number(
        ((result.issuePerSec["ec-p256"] * result.opensslManualMsPerDevice) / 1000).toFixed(1),
      );
    }
    if (opts.json) {
      io.out(JSON.stringify(result) + "\n");
    } else {
      const lines = [
        `Linesign bench (${opts.count} issuances per CA key type, one run, one token, ${result.workers} worker thread(s))`,
        ...(["ec-p256", "rsa-2048"] as const).map(
          (k) =>
            `  ${k.padEnd(8)} HSM sign ${result.hsmSignPerSec[k]}/s one at a time, ${result.hsmSignPerSecConcurrent[k]}/s with ${PORTS} callers at once; issue ${result.issuePerSec[k]}/s with ${PORTS} ports at once ` +
            `(${result.commitBatchSize[k]} per commit), ${result.issuePerSecOneAtATime[k]}/s one at a time; ` +
            `issue/sign ${result.issueToSignRatio[k]}` +
            (result.issueCpuMs[k]
              ? `\n           CPU ms per issuance with ${PORTS} ports: main thread ${result.issueCpuMs[k].main}, other threads ${result.issueCpuMs[k].otherThreads}; that CPU allows ${result.issueCpuMs[k].boundPerSec}/s on ${cores()} cores` +
                (result.issueStealShare[k] !== null
                  ? ` (the host took ${Math.round(result.issueStealShare[k] * 1000) / 10}% of the machine's CPU time meanwhile)`
                  : "")
              : "") +
            `\n           stages ms (one at a time): ${Object.entries(result.stagesMs[k])
              .map(([n, v]) => `${n} ${v}`)
              .join(", ")}`,
        ),
        result.opensslManualMsPerDevice === null
          ? "  manual openssl flow: openssl not installed"
          : `  manual openssl flow: ${result.opensslManualMsPerDevice} ms/device; the station issues ${result.speedupOverManualOpenssl}x faster (EC P-256 CA)`,
        result.line === null
          ? "  serial line: not measured (--line-devices 0, or socat missing)"
          : `  serial line at ${result.line.baud} baud: ${result.line.wireBytesPerDevice} bytes/device on the wire (every byte from the answered HELLO to DONE, both directions) = ${result.line.wireMsPerDevice} ms; cycle ${result.line.cycleMsPerDevice} ms = ${result.line.cycleToWire}x wire time\n` +
            `           1 port ${result.line.devicesPerMinute1} devices/min; 16 ports ${result.line.devicesPerMinute16} devices/min = ${result.line.ports16To1}x\n` +
            gangLine(result.line) +
            `           while a user loops sign-ins, 1 port's cycle ${result.line.underSignIns.cycleMs.before} ms before (scryptSync N=2^14 on the loop) = ${result.line.underSignIns.toNone.before}x, ${result.line.underSignIns.cycleMs.after} ms after (N=2^17 off it) = ${result.line.underSignIns.toNone.after}x of ${result.line.underSignIns.cycleMs.none} ms with none`,
        result.lineMemory === null
          ? "  line memory: not measured (--memory-devices 0, or socat missing)"
          : `  line memory over ${result.lineMemory.devices} devices on 16 ports: RSS ${result.lineMemory.rssMb.start} MB at the start, ${result.lineMemory.rssMb.peak} MB at the peak, ${result.lineMemory.rssMb.end} MB at the end (end/start ${result.lineMemory.endToStart}x); second half ${result.lineMemory.steady.rssMbLow}-${result.lineMemory.steady.rssMbHigh} MB (${result.lineMemory.steady.highToLow}x); by devices (RSS/heap): ${result.lineMemory.rssMbByDevices.map((p) => `${p.devices} ${p.rssMb}/${p.heapMb} MB`).join(", ")}`,
        result.sync === null
          ? "  AWS IoT sync: not measured (--sync-certs 0)"
          : `  AWS IoT sync of ${result.sync.certificates} certificates to the emulator at --max-rps ${result.sync.maxRps}: ${result.sync.achievedRps}/s = ${result.sync.ofCeiling} of the ceiling; busiest second ${result.sync.busiestSecond} requests`,
        result.kiosk === null
          ? "  kiosk: not measured"
          : `  kiosk service: ${result.kiosk.socketCallsPerSec} calls/s over the socket, ${result.kiosk.loopbackCallsPerSec}/s over loopback; ` +
            `a step reaches a watching tile in ${result.kiosk.watchLagMsMedian} ms (p99 ${result.kiosk.watchLagMsP99}) = ${result.kiosk.lagOfWireTime}x one device's wire time`,
        result.signIn === null
          ? "  sign-in: not measured"
          : `  sign-in check: ${result.signIn.msPerSignIn.before} ms before (scryptSync N=2^14 on the event loop), ${result.signIn.msPerSignIn.after} ms after (scrypt N=2^17 off it) = ${result.signIn.afterToBefore}x; ` +
            `while a user loops sign-ins the event loop turns ${result.signIn.ofIdle.before}x of idle before, ${result.signIn.ofIdle.after}x after (1 ms timer p99 late ${result.signIn.loopLagMsP99.before} ms before, ${result.signIn.loopLagMsP99.after} ms after, ${result.signIn.loopLagMsP99.idle} ms idle)`,
        result.audit === null
          ? "  audit verify: not measured (--audit-events 0)"
          : `  audit verify of ${result.audit.events} entries (${result.audit.checkpoints} checkpoints) on ${result.audit.threads} thread(s): ${result.audit.verifyMs} ms = ${result.audit.auditVerifyPerSec}/s; ` +
            `in one thread ${result.audit.sequential.verifyMs} ms = ${result.audit.sequential.auditVerifyPerSec}/s (threads ${result.audit.ofSequential}x of that, RSS ${result.audit.sequential.rssMb.start}/${result.audit.sequential.rssMb.peak}/${result.audit.sequential.rssMb.end} MB); ` +
            `reading them alone ${result.audit.readPerSec}/s (verify ${result.audit.ofRead}x of that); ` +
            `RSS ${result.audit.rssMb.start} MB before, ${result.audit.rssMb.peak} MB peak, ${result.audit.rssMb.end} MB after; appended at ${result.audit.appendPerSec}/s`,
        result.head === null
          ? "  log head moves: not measured (--head-moves 0)"
          : `  log head moves (${result.head.moves} each): private head only ${result.head.movesPerSec.privateOnly}/s; with the auditor's public copy on every move ${result.head.movesPerSec.publicEveryMove}/s = ${result.head.everyMoveToPrivate}x; ` +
            `at most every ${result.head.throttleMs} ms (as the station keeps it) ${result.head.movesPerSec.publicThrottled}/s = ${result.head.throttledToPrivate}x`,
      ];
      io.out(lines.join("\n") + "\n");
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
