/**
 * `linesign serve`: the station service for the kiosk. It holds the token,
 * the ports and the database; Electron's main process reaches it over a Unix
 * socket in the station home, and with --ui a browser reaches the kiosk page
 * on loopback (the address printed carries the per-start secret).
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import type { Station } from "../compose.js";
import type { StationService } from "../service/station-service.js";
import { KioskTickets, listenLoopback, listenUnix, type Listening } from "../service/http.js";
import { loadStation, withDrivers, type CliIo } from "./io.js";

/** The built kiosk page (vite build of electron/renderer). */
export const UI_DIR = fileURLToPath(new URL("../../renderer", import.meta.url));

export interface ServiceOptions {
  home?: string;
  env: NodeJS.ProcessEnv;
  ports: string[];
  ui: boolean;
  httpPort?: number;
  socket?: string;
  /** Told when a browser has exchanged a one-time kiosk ticket. */
  onKioskOpened?: () => void;
}

export interface RunningService {
  station: Station;
  service: StationService;
  socket: string;
  /** The kiosk page's address (with --ui). */
  url: string | null;
  close(): Promise<void>;
}

/**
 * Opens the station in service mode and listens.
 * @throws LinesignError USAGE (no ports, a service already running, no built page for --ui)
 */
/** Secrets a service must not keep in its environment (readable in /proc/PID/environ, inherited by children). */
export const SECRET_VARIABLES = [
  "LINESIGN_USER_PIN",
  "LINESIGN_SO_PIN",
  "LINESIGN_ROOT_PIN",
  "LINESIGN_NEW_USER_PIN",
  "LINESIGN_PASSPHRASE",
  "LINESIGN_NEW_PASSPHRASE",
] as const;

/** Removes the secrets from `env` and from this process's own environment. */
export function dropSecrets(env: NodeJS.ProcessEnv): void {
  for (const k of SECRET_VARIABLES) {
    delete env[k];
    delete process.env[k];
  }
}

/**
 * The environment a child of the station starts with: only what it needs
 * (where programs and the home are, the token configuration, the display),
 * never a secret.
 */
export function childEnv(
  env: NodeJS.ProcessEnv,
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const keep = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "LINESIGN_HOME",
    "SOFTHSM2_CONF",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XAUTHORITY",
  ];
  const out: NodeJS.ProcessEnv = {};
  for (const k of keep) if (env[k] !== undefined) out[k] = env[k];
  return { ...out, ...extra };
}

export async function startService(o: ServiceOptions): Promise<RunningService> {
  // The service presents the token's PIN only from an officer's signing session, never from its environment.
  dropSecrets(o.env);
  if (o.ui && !existsSync(join(UI_DIR, "index.html")))
    throw new LinesignError(
      "USAGE",
      `The kiosk page is not built (${UI_DIR}): run "npm run build" first.`,
    );
  const [{ kioskKey, openStation }, { StationService }] = await Promise.all([
    loadStation(),
    withDrivers(() => import("../service/station-service.js")),
  ]);
  const station = openStation({ home: o.home, env: o.env, mode: "service" });
  const listeners: Listening[] = [];
  let unlock: (() => void) | null = null;
  try {
    unlock = lockHome(station.home.dir);
    const service = new StationService(station, { ports: o.ports });
    if (service.ports.length === 0)
      throw new LinesignError(
        "USAGE",
        'Name the line\'s serial ports: --port PATH (repeatable), or "line.ports" in station.json.',
      );
    const socket = o.socket ?? join(station.home.dir, "run", "station.sock");
    // One-time tickets for a Chromium kiosk ("linesign kiosk"): the secret is never written anywhere.
    const tickets = o.ui ? new KioskTickets() : undefined;
    listeners.push(await listenUnix(service, socket, tickets ? { tickets } : {}));
    let url: string | null = null;
    if (o.ui) {
      // Kept in the home, so a kiosk page that holds it in memory reconnects by itself after a restart.
      const key = kioskKey(station);
      const lb = await listenLoopback(service, {
        port: o.httpPort ?? 0,
        uiDir: UI_DIR,
        kioskKey: key,
        ...(tickets ? { tickets } : {}),
        onRedeemed: () => {
          station.ctx.store.appendEvent({
            actor: station.ctx.actor,
            action: "kiosk.open",
            subject: station.config.station.id,
            outcome: "ok",
            details: { transport: "loopback", by: "one-time ticket" },
          });
          o.onKioskOpened?.();
        },
      });
      listeners.push(lb);
      url = lb.url;
    }
    station.ctx.store.appendEvent({
      actor: station.ctx.actor,
      action: "service.start",
      subject: station.config.station.id,
      outcome: "ok",
      details: { ports: service.ports, ui: o.ui, socket },
    });
    let closed = false;
    return {
      station,
      service,
      socket,
      url,
      close: async () => {
        if (closed) return;
        closed = true;
        await service.close();
        for (const l of listeners) await l.close();
        station.ctx.store.appendEvent({
          actor: station.ctx.actor,
          action: "service.stop",
          subject: station.config.station.id,
          outcome: "ok",
          details: {},
        });
        await station.close();
        unlock?.();
      },
    };
  } catch (e) {
    for (const l of listeners) await l.close();
    await station.close();
    unlock?.();
    throw e;
  }
}

/**
 * One service per station: `<home>/run/service.lock` holds the running
 * service's process id. A lock left by a service that died is taken over.
 * @throws LinesignError USAGE when a live service holds it
 */
export function lockHome(home: string): () => void {
  const dir = join(home, "run");
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, "service.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(readFileSync(path, "utf8").slice(0, 20).trim());
      let alive = false;
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (k) {
          alive = (k as NodeJS.ErrnoException).code === "EPERM";
        }
      }
      if (alive)
        throw new LinesignError(
          "USAGE",
          `A station service (process ${pid}) is already running for ${home}: stop it first (one service per station).`,
        );
      unlinkSync(path);
    }
  }
  throw new LinesignError("USAGE", `Cannot take the station's service lock ${path}.`);
}

/** Runs until SIGINT or SIGTERM, then stops the line (devices in flight finish) and closes. */
export async function serveUntilStopped(running: RunningService): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await running.close();
}

export function registerServeCommand(
  program: Command,
  d: { io: CliIo; json: () => boolean; home: () => string | undefined },
): void {
  program
    .command("serve")
    .description(
      "run the station service for the kiosk (Unix socket in the station home; --ui also serves the kiosk page on loopback)",
    )
    .option(
      "--port <path>",
      "a serial port of the line (repeatable; default line.ports)",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option("--ui", "also serve the kiosk page to a browser on 127.0.0.1 and print its address")
    .option("--http-port <n>", "loopback port for --ui (default: any free port)")
    .option("--socket <path>", "Unix socket (default <home>/run/station.sock)")
    .action(async (o: { port: string[]; ui?: boolean; httpPort?: string; socket?: string }) => {
      const httpPort = o.httpPort === undefined ? undefined : Number(o.httpPort);
      if (
        httpPort !== undefined &&
        (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535)
      )
        throw new LinesignError("USAGE", "--http-port must be a port number (0 to 65535).");
      const running = await startService({
        home: d.home(),
        env: d.io.env,
        ports: o.port,
        ui: Boolean(o.ui),
        onKioskOpened: () => {
          if (d.json()) d.io.out(JSON.stringify({ event: "kiosk.opened" }) + "\n");
        },
        ...(httpPort !== undefined ? { httpPort } : {}),
        ...(o.socket ? { socket: o.socket } : {}),
      });
      if (d.json())
        d.io.out(
          JSON.stringify({
            event: "listening",
            socket: running.socket,
            url: running.url,
            ports: running.service.ports,
          }) + "\n",
        );
      else
        d.io.out(
          [
            `Station service for ${running.station.config.station.id}: ports ${running.service.ports.join(", ")}`,
            `  socket: ${running.socket}`,
            ...(running.url ? [`  kiosk:  ${running.url}`] : []),
            "Ctrl-C stops it (devices in flight finish first).",
          ].join("\n") + "\n",
        );
      await serveUntilStopped(running);
      if (d.json()) d.io.out(JSON.stringify({ event: "stopped" }) + "\n");
    });
}
