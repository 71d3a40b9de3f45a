/** `linesign work-order ...`: what the line may provision. */
import type { Command } from "commander";
import { isoTime } from "./output.js";
import { readInput, type CommandDeps } from "./io.js";
import { READ_LIMITS } from "../compose-files.js";

export function registerWorkOrderCommands(program: Command, d: CommandDeps): void {
  const { withStation, emit } = d;
  const wo = program
    .command("work-order")
    .description("what the line may provision: a profile, a quantity, device ids, a window");
  wo.command("create")
    .description("open a work order")
    .requiredOption("--profile <name>", "certificate profile")
    .requiredOption("--quantity <n>", "how many devices")
    .option("--id <id>", "its id (default wo-NNNN)")
    .option("--pattern <regex>", "device ids must match this in full")
    .option("--devices <file>", "only these device ids (one per line)")
    .option("--from <time>", "not before (ISO 8601)")
    .option("--until <time>", "not after (ISO 8601)")
    .action(
      async (o: {
        profile: string;
        quantity: string;
        id?: string;
        pattern?: string;
        devices?: string;
        from?: string;
        until?: string;
      }) => {
        const devices = o.devices
          ? Buffer.from(readInput(o.devices, "the device list", READ_LIMITS.deviceList))
              .toString("utf8")
              .split(/\r?\n/)
              .map((l) => l.trim())
              .filter(Boolean)
          : undefined;
        await withStation(async (s) => {
          const view = await s.workOrders.create({
            profile: o.profile,
            quantity: Number(o.quantity),
            ...(o.id ? { id: o.id } : {}),
            ...(o.pattern ? { pattern: o.pattern } : {}),
            ...(devices ? { devices } : {}),
            ...(o.from ? { notBefore: isoTime(o.from, "--from")! } : {}),
            ...(o.until ? { notAfter: isoTime(o.until, "--until")! } : {}),
          });
          emit(
            { ok: true, workOrder: view },
            `Work order ${view.id} is open: ${view.quantity} device(s) under profile "${view.profile}".`,
          );
        });
      },
    );
  wo.command("list")
    .description("work orders with their counts")
    .action(async () => {
      await withStation(async (s) => {
        const list = s.workOrders.list();
        emit(
          { ok: true, workOrders: list },
          list.length
            ? list
                .map(
                  (w) =>
                    `${w.id}  ${w.status}  profile ${w.profile}  ${w.issued}/${w.quantity} issued${w.pattern ? `  ids ${w.pattern}` : ""}${w.notAfter ? `  until ${w.notAfter}` : ""}`,
                )
                .join("\n")
            : "No work orders.",
        );
      });
    });
  wo.command("close")
    .description("close a work order (the line stops taking its devices)")
    .requiredOption("--id <id>", "the work order")
    .action(async (o: { id: string }) => {
      await withStation(async (s) => {
        const view = await s.workOrders.close(o.id);
        emit(
          { ok: true, workOrder: view },
          `Work order ${view.id} is closed (${view.issued} issued).`,
        );
      });
    });
}
