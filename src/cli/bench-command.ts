/** `linesign bench`: the command; the bench itself (bench.ts) loads when it runs. */
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { withDrivers, type CommandDeps } from "./io.js";

/** `linesign bench`: the command around runBench. */
export function registerBenchCommand(program: Command, d: CommandDeps): void {
  const { io } = d;
  program
    .command("bench")
    .description(
      "measure HSM signing and end-to-end issuance on a throwaway token (figures only, never a pass/fail)",
    )
    .option(
      "--count <n>",
      "issuances per CA key type: half one at a time, half with 16 callers at once (a shorter run measures warm-up)",
      "4000",
    )
    .option(
      "--line-devices <n>",
      "simulated devices per port for the serial line figures (0 skips them)",
      "50",
    )
    .option(
      "--memory-devices <n>",
      "devices in a 16-port line run over which the station's memory is sampled (0 skips)",
      "10000",
    )
    .option(
      "--sync-certs <n>",
      "device certificates registered with the AWS IoT emulator at 200 requests/s (0 skips)",
      "10000",
    )
    .option(
      "--head-moves <n>",
      "log head moves through each head store, with and without the auditor's public copy (0 skips)",
      "400",
    )
    .option(
      "--audit-events <n>",
      "entries in the log that audit verify is timed over (about a year of a busy line; 0 skips)",
      "1000000",
    )
    .action(
      async (o: {
        count: string;
        lineDevices: string;
        memoryDevices: string;
        syncCerts: string;
        auditEvents: string;
        headMoves: string;
      }) => {
        const count = Number(o.count);
        if (!Number.isInteger(count) || count < 10 || count > 1_000_000)
          throw new LinesignError("USAGE", "--count must be a whole number from 10 to 1000000.");
        const lineDevices = Number(o.lineDevices);
        if (!Number.isInteger(lineDevices) || lineDevices < 0 || lineDevices > 10_000)
          throw new LinesignError(
            "USAGE",
            "--line-devices must be a whole number from 0 to 10000.",
          );
        const memoryDevices = Number(o.memoryDevices);
        if (!Number.isInteger(memoryDevices) || memoryDevices < 0 || memoryDevices > 100_000)
          throw new LinesignError(
            "USAGE",
            "--memory-devices must be a whole number from 0 to 100000.",
          );
        const syncCerts = Number(o.syncCerts);
        if (!Number.isInteger(syncCerts) || syncCerts < 0 || syncCerts > 1_000_000)
          throw new LinesignError(
            "USAGE",
            "--sync-certs must be a whole number from 0 to 1000000.",
          );
        const auditEvents = Number(o.auditEvents);
        if (!Number.isInteger(auditEvents) || auditEvents < 0 || auditEvents > 10_000_000)
          throw new LinesignError(
            "USAGE",
            "--audit-events must be a whole number from 0 to 10000000.",
          );
        const headMoves = Number(o.headMoves);
        if (!Number.isInteger(headMoves) || headMoves < 0 || headMoves > 100_000)
          throw new LinesignError("USAGE", "--head-moves must be a whole number from 0 to 100000.");
        // The bench (a throwaway station, the line, the sync, the kiosk service) loads when it runs.
        const { runBench } = await withDrivers(() => import("./bench.js"));
        await runBench(io, {
          json: d.json(),
          count,
          lineDevices,
          memoryDevices,
          syncCerts,
          auditEvents,
          headMoves,
        });
      },
    );
}
