/**
 * The kiosk's main process: connects to the station service (starting it
 * when it is not running), opens one full-screen kiosk window and relays the
 * renderer's calls after checking them (electron/shell.ts). The token, the
 * serial ports and the database stay in the service: no native module is
 * loaded here.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { app, BrowserWindow, ipcMain, Menu, protocol } from "electron";
import { CHANNEL_NAMES } from "../src/domain/kiosk-api.js";
import {
  APP_ORIGIN,
  APP_SCHEME,
  ELECTRON_CSP,
  exportDir,
  guardEveryContents,
  kioskWindowOptions,
  makeContentsGuard,
  makeRelay,
  resolveAppFile,
  serviceAnswers,
  serviceLaunch,
  serviceSocket,
  socketForward,
} from "./shell.js";

const here = dirname(fileURLToPath(import.meta.url));
const rendererDir = join(here, "..", "renderer");
const preload = join(here, "preload.cjs");
const devTools = !app.isPackaged && process.env.LINESIGN_KIOSK_DEVTOOLS === "1";

const warn = (entry: Record<string, unknown>) =>
  console.error(JSON.stringify({ level: "warn", msg: "kiosk refused", ...entry }));

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  // Every web contents, not only the kiosk window's, gets the rules the moment it is created.
  guardEveryContents(
    app,
    makeContentsGuard({ exportDir: () => exportDir(process.env), log: warn }),
  );
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: false } },
  ]);
  void app.whenReady().then(start);
}

/** Starts `linesign serve` with an absolute Node (never Electron's) when no service answers. */
async function ensureService(socket: string): Promise<void> {
  if (await serviceAnswers(socket)) return;
  const launch = serviceLaunch({
    packaged: app.isPackaged,
    resourcesPath: process.resourcesPath,
    mainDir: here,
    env: process.env,
  });
  if ("refused" in launch) {
    warn({ refused: "SERVICE_START", why: launch.refused });
    return;
  }
  const child = spawn(launch.command, launch.args, {
    stdio: "ignore",
    detached: true,
    env: launch.env,
  });
  child.on("error", (e) => warn({ refused: "SERVICE_START", why: e.message }));
  child.unref();
  for (let i = 0; i < 100 && !(await serviceAnswers(socket)); i++)
    await new Promise((r) => setTimeout(r, 100));
}

async function start(): Promise<void> {
  Menu.setApplicationMenu(null);
  const socket = serviceSocket(process.env);
  await ensureService(socket);
  protocol.handle(APP_SCHEME, (request) => {
    const file = resolveAppFile(rendererDir, request.url);
    if (!file || !existsSync(file.path)) return new Response("Not found", { status: 404 });
    return new Response(readFileSync(file.path), {
      headers: {
        "content-type": file.type,
        "content-security-policy": ELECTRON_CSP,
        "x-content-type-options": "nosniff",
      },
    });
  });

  const win = new BrowserWindow(kioskWindowOptions(preload, { devTools }));
  const wc = win.webContents;

  const relay = makeRelay({
    forward: socketForward(socket),
    kioskWebContentsId: () => (win.isDestroyed() ? null : wc.id),
    log: warn,
  });
  for (const channel of CHANNEL_NAMES)
    ipcMain.handle(channel, (event, args: unknown) =>
      relay(channel, args, {
        senderId: event.sender.id,
        frameUrl: event.senderFrame?.url ?? null,
        isMainFrame: event.senderFrame !== null && event.senderFrame === event.sender.mainFrame,
      }),
    );
  win.once("ready-to-show", () => win.show());
  await win.loadURL(`${APP_ORIGIN}/index.html`);
}

app.on("window-all-closed", () => app.quit());
