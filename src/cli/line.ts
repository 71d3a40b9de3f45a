/**
 * `linesign line run` and `linesign line ports`: the headless line. With
 * --json, stdout carries one JSON object per event and a last one with the
 * summary; on a terminal each port has a status line redrawn in place.
 */
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { operatorText } from "../domain/operator-text.js";
import type { Station } from "../compose.js";
import type { LineSummary } from "../app/line/line.js";
import type { LineEvent } from "../app/line/line-events.js";
import type { CliIo } from "./io.js";

export interface LineCliDeps {
  io: CliIo;
  json: () => boolean;
  withStation: <T>(fn: (s: Station) => Promise<T>) => Promise<T>;
  emit: (value: Record<string, unknown>, text: string) => void;
  setExitCode: (code: number) => void;
  /** Whether stdout is a terminal that can redraw lines. */
  liveTerminal: boolean;
}

/** Plain words for what a port is doing. */
export function describeLineEvent(e: LineEvent): string {
  switch (e.event) {
    case "port.open":
      return "waiting for a device";
    case "port.waiting":
      return `not available: ${e.message} [${e.code}]`;
    case "port.lost":
      return "port lost: waiting for it to come back";
    case "port.paused":
      return `PAUSED, devices wait: ${e.message} [${e.code}]`;
    case "port.resumed":
      return "resumed: waiting for a device";
    case "port.misbehaving":
      return `MISBEHAVING: ${e.message}`;
    case "port.stopped":
      return "stopped";
    case "device.identified":
      return `${e.deviceId}: identified (${e.model || "model ?"}, firmware ${e.firmware || "?"})`;
    case "device.csr-requested":
      return `${e.deviceId}: asked for a request with a new ${e.keyType} key`;
    case "device.signing":
      return `${e.deviceId}: request received (${e.csrBytes} bytes), signing`;
    case "device.injecting":
      return `${e.deviceId}: sending certificate ${e.serial}${e.redelivery ? " (again)" : ""}`;
    case "device.confirmed":
      return `${e.deviceId}: CONFIRMED serial ${e.serial} in ${(e.ms / 1000).toFixed(2)} s`;
    case "device.failed": {
      // The same words and next step as the kiosk's tile (operator-text.ts).
      const t = operatorText(e.code);
      return `${e.deviceId ?? "device"}: FAILED: ${t.title}: ${e.message} [${e.code}] Next: ${t.action}`;
    }
    default: {
      const never: never = e;
      return String(never);
    }
  }
}

function summaryText(s: LineSummary): string {
  const codes = Object.entries(s.byCode)
    .map(([c, n]) => `${c} x${n}`)
    .join(", ");
  return [
    ...(s.fault ? [`THE LINE WAS STOPPED: ${s.fault.message} [${s.fault.code}]`] : []),
    `Line stopped after ${(s.durationMs / 1000).toFixed(1)} s: ${s.devices} device(s), ${s.confirmed} confirmed, ${s.failed} failed${codes ? ` (${codes})` : ""}.`,
    ...Object.entries(s.perPort).map(
      ([p, c]) => `  ${p}: ${c.confirmed} confirmed, ${c.failed} failed`,
    ),
  ].join("\n");
}

export function registerLineCommands(program: Command, d: LineCliDeps): void {
  const line = program.command("line").description("the serial line: provision devices on ports");

  line
    .command("run")
    .description(
      "provision devices as they come on the named ports; Ctrl-C stops taking new ones and finishes those in flight",
    )
    .option(
      "--port <path>",
      "serial port (repeat for gang provisioning; default: line.ports in station.json)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--work-order <id>", "the open work order to provision (default: the only open one)")
    .option("--profile <name>", "must be the work order's profile when given")
    .option("--count <n>", "stop after this many devices (any outcome)")
    .option("--baud <rate>", "baud rate (default: line.baudRate in station.json, 115200)")
    .action(
      async (o: {
        port?: string[];
        workOrder?: string;
        profile?: string;
        count?: string;
        baud?: string;
      }) => {
        const count = o.count === undefined ? undefined : Number(o.count);
        if (count !== undefined && (!Number.isInteger(count) || count < 1))
          throw new LinesignError("USAGE", "--count must be a whole number of at least 1.");
        const baud = o.baud === undefined ? undefined : Number(o.baud);
        if (baud !== undefined && (!Number.isInteger(baud) || baud < 300))
          throw new LinesignError("USAGE", "--baud must be a whole number of at least 300.");
        await d.withStation(async (s) => {
          const run = s.line({
            ports: o.port ?? [],
            ...(o.workOrder ? { workOrder: o.workOrder } : {}),
            ...(o.profile ? { profile: o.profile } : {}),
            ...(count ? { count } : {}),
            ...(baud ? { baudRate: baud } : {}),
          });
          const json = d.json();
          const status = new Map<string, string>();
          let drawn = 0;
          const redraw = (): void => {
            const lines = [...status].map(([p, t]) => `${p.padEnd(20)} ${t}`);
            d.io.out(
              `${drawn ? `\x1b[${drawn}A` : ""}${lines.map((l) => `\x1b[2K${l}\n`).join("")}`,
            );
            drawn = lines.length;
          };
          run.onEvent((e) => {
            if (json) {
              d.io.out(JSON.stringify({ at: new Date().toISOString(), ...e }) + "\n");
              return;
            }
            const text = describeLineEvent(e);
            if (d.liveTerminal) {
              status.set(e.port, text);
              redraw();
            } else {
              d.io.out(`${e.port}  ${text}\n`);
            }
          });
          let interrupts = 0;
          const onSigint = (): void => {
            interrupts++;
            if (interrupts === 1) {
              if (!json)
                d.io.err(
                  "Stopping: no new devices; finishing the ones in flight (Ctrl-C again to abandon them).\n",
                );
              void run.stop();
            } else {
              // Abandoned exchanges are safe: every certificate was recorded before it left.
              process.exit(130);
            }
          };
          process.on("SIGINT", onSigint);
          process.on("SIGTERM", onSigint);
          try {
            await s.openToken();
            run.start();
            const summary = await run.finished();
            if (json)
              d.io.out(
                JSON.stringify({ event: "summary", ok: summary.fault === null, ...summary }) + "\n",
              );
            else d.io.out(summaryText(summary) + "\n");
            if (summary.failed > 0 || summary.fault) d.setExitCode(1);
          } finally {
            process.off("SIGINT", onSigint);
            process.off("SIGTERM", onSigint);
          }
        });
      },
    );

  line
    .command("ports")
    .description("list the serial ports the system can see (where discovery works)")
    .action(async () => {
      await d.withStation(async (s) => {
        const ports = await s.serialPorts.list();
        d.emit(
          { ok: true, ports },
          ports.length === 0
            ? "No serial ports were found."
            : ports
                .map((p) => `${p.path}${p.manufacturer ? `  (${p.manufacturer})` : ""}`)
                .join("\n"),
        );
      });
    });
}
