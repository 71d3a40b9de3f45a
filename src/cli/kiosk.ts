/**
 * `linesign kiosk`: starts Chromium's own kiosk mode on the running station
 * service (`linesign serve --ui`) without the service's secret on any command
 * line or in any browser profile. Any local user can read every process's
 * /proc/PID/cmdline, and Chromium keeps the addresses it visits in its
 * profile, so:
 * - the launcher asks the service, over its Unix socket (0600: the station's
 *   account only), for a one-time ticket, spent by its first use or after a
 *   minute;
 * - it writes a start page holding that ticket into a new private profile
 *   folder (0700, the file 0600) and starts Chromium on the page's file path:
 *   the command line names only a path another user cannot open;
 * - the page exchanges the ticket once on loopback for the station's stable
 *   kiosk key and keeps it in its memory only (never a cookie or the
 *   browser's storage; Chromium runs --incognito as well), so it reaches the
 *   service again after a restart on the same --http-port, with no reload;
 *   whoever reads the ticket later holds a spent one;
 * - when Chromium ends, the profile folder is removed.
 */
import { spawn } from "node:child_process";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { privateHome } from "../compose-files.js";
import { childEnv } from "./serve.js";
import { unsafeSocketFolder } from "../service/http.js";
import type { CliIo } from "./io.js";

/** Chromium's flags for the kiosk: its own profile, nothing kept, nothing fetched in the background. */
export function chromiumArgs(profile: string, startPage: string, extra: string[] = []): string[] {
  return [
    "--kiosk",
    "--incognito",
    `--user-data-dir=${profile}`,
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-features=Translate,MediaRouter",
    "--password-store=basic",
    ...extra,
    pathToFileURL(startPage).href,
  ];
}

/** Asks the service, over its socket, for a one-time kiosk address. */
export function requestTicket(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const unreachable = (why: string) =>
      reject(
        new LinesignError(
          "USAGE",
          `The station service does not answer on ${socketPath} (${why}): start it with "linesign serve --ui" first.`,
        ),
      );
    const req = request(
      { socketPath, path: "/api/kiosk-ticket", method: "POST", headers: { "content-length": 0 } },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > 4096) req.destroy();
          else chunks.push(c);
        });
        res.on("end", () => {
          try {
            const reply = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
              ok?: boolean;
              result?: { url?: unknown };
            };
            const url = reply.result?.url;
            if (
              res.statusCode === 200 &&
              reply.ok &&
              typeof url === "string" &&
              /^http:\/\/127\.0\.0\.1:\d{1,5}\/#ticket=[A-Za-z0-9_-]{43}$/.test(url)
            )
              return resolve(url);
            reject(
              new LinesignError(
                "USAGE",
                `The station service on ${socketPath} serves no kiosk page: start it with "linesign serve --ui".`,
              ),
            );
          } catch {
            unreachable("its answer is not JSON");
          }
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("no answer in 10 s")));
    req.on("error", (e) => unreachable((e as NodeJS.ErrnoException).code ?? e.message));
    req.end();
  });
}

/** The start page: sends the browser on to the one-time address (the ticket is in its fragment). */
export function startPage(url: string): string {
  const safe = url.replace(/[^A-Za-z0-9:/._#=?-]/g, "");
  return [
    "<!doctype html>",
    '<meta charset="utf-8">',
    '<meta name="referrer" content="no-referrer">',
    `<meta http-equiv="refresh" content="0;url=${safe}">`,
    "<title>Linesign</title>",
    "",
  ].join("\n");
}

export interface KioskLaunch {
  /** Chromium's process id. */
  pid: number;
  profile: string;
  /** Resolves with Chromium's exit code once it has ended and its profile is removed. */
  exited: Promise<number>;
  stop(): void;
}

/** Starts Chromium on a one-time address; no secret on its command line or in its profile. */
export async function launchKiosk(o: {
  /** The station home (already checked private). */
  home: string;
  env: NodeJS.ProcessEnv;
  socket?: string;
  browser: string;
  browserArgs: string[];
  /** Told when the profile folder could not be removed (the launcher then exits non-zero). */
  onCleanupFailed?: (profile: string, cause: string) => void;
}): Promise<KioskLaunch> {
  const socket = o.socket ?? join(o.home, "run", "station.sock");
  // Only a socket of this account, in a folder no other account may write, is the station's.
  const unsafe = unsafeSocketFolder(socket);
  if (unsafe) throw new LinesignError("USAGE", unsafe);
  const own = (() => {
    try {
      const st = lstatSync(socket);
      return st.isSocket() && st.uid === (process.getuid?.() ?? st.uid);
    } catch {
      return true; // absent: the request below names it
    }
  })();
  if (!own)
    throw new LinesignError(
      "USAGE",
      `${socket} is not a socket of this account: it is not the station service's. Start the kiosk on the service's own socket (the default <home>/run/station.sock).`,
    );
  const url = await requestTicket(socket);
  const profile = mkdtempSync(join(o.home, "run", "chromium-"));
  const page = join(profile, "start.html");
  writeFileSync(page, startPage(url), { mode: 0o600 });
  // Its own process group, so that stopping it stops its helpers too (the zygote, the
  // crash handler): they write into the profile and would outlive Chromium's main process.
  const child = spawn(o.browser, chromiumArgs(profile, page, o.browserArgs), {
    stdio: ["ignore", "inherit", "inherit"],
    env: childEnv(o.env),
    detached: true,
  });
  const exited = new Promise<number>((resolve) => {
    const done = async (code: number) => {
      if (child.pid !== undefined) await endGroup(child.pid);
      try {
        rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
      } catch (e) {
        o.onCleanupFailed?.(profile, (e as NodeJS.ErrnoException).code ?? String(e));
        return resolve(code);
      }
      resolve(code);
    };
    child.once("error", () => void done(127));
    child.once("exit", (code, signal) => void done(code ?? (signal ? 0 : 1)));
  });
  if (child.pid === undefined) {
    await exited;
    throw new LinesignError(
      "USAGE",
      `Cannot start the browser ${o.browser}: install Chromium or name it with --browser PATH.`,
    );
  }
  const pid = child.pid;
  return { pid, profile, exited, stop: () => signalGroup(pid, "SIGTERM") };
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group has already gone.
  }
}

/** The processes of a group still running (zombies write nothing), from /proc. */
function groupAlive(pgid: number): boolean {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((f) => /^\d+$/.test(f));
  } catch {
    return false;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") return true;
    } catch {
      // The process ended while we looked.
    }
  }
  return false;
}

/** Ends what is left of Chromium's group once its main process has gone, and waits (up to 5 s) until it has. */
async function endGroup(pgid: number): Promise<void> {
  signalGroup(pgid, "SIGKILL");
  const until = Date.now() + 5000;
  while (groupAlive(pgid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}

export function registerKioskCommand(
  program: Command,
  d: { io: CliIo; json: () => boolean; home: () => string | undefined },
): void {
  program
    .command("kiosk")
    .description(
      "start Chromium's kiosk mode on the running service (serve --ui) with a one-time address: no secret on any command line or in the browser's profile",
    )
    .option("--browser <path>", "the browser to start", "/usr/bin/chromium")
    .option(
      "--browser-arg <arg>",
      "one more argument for the browser (repeatable), e.g. --browser-arg=--ozone-platform=wayland",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option("--socket <path>", "the service's Unix socket (default <home>/run/station.sock)")
    .action(async (o: { browser: string; browserArg: string[]; socket?: string }) => {
      const k = await launchKiosk({
        home: privateHome(d.home(), d.io.env),
        env: d.io.env,
        browser: o.browser,
        browserArgs: o.browserArg,
        onCleanupFailed: (profile, cause) => {
          process.exitCode = 1;
          d.io.err(
            `The kiosk's browser profile ${profile} could not be removed (${cause}): remove it by hand (it holds only a spent ticket).\n`,
          );
        },
        ...(o.socket ? { socket: o.socket } : {}),
      });
      const stop = () => k.stop();
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      if (d.json()) d.io.out(JSON.stringify({ event: "kiosk", pid: k.pid }) + "\n");
      const code = await k.exited;
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      if (d.json()) d.io.out(JSON.stringify({ event: "stopped", code }) + "\n");
    });
}
