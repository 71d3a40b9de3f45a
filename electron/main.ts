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
import { app, BrowserWindow, ipcMain, Menu, protocol, session } from "electron";
import { CHANNEL_NAMES } from "../src/domain/kiosk-api.js";
import {
  allowNavigation,
  APP_ORIGIN,
  APP_SCHEME,
  denyPermission,
  ELECTRON_CSP,
  kioskWindowOptions,
  makeRelay,
  resolveAppFile,
  serviceSocket,
  socketForward,
} from "./shell.js";

const here = dirname(fileURLToPath(import.meta.url));
const rendererDir = join(here, "..", "renderer");
const preload = join(here, "preload.cjs");
const devTools = !app.isPackaged && process.env.LINESIGN_KIOSK_DEVTOOLS === "1";

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: false } },
  ]);
  void app.whenReady().then(start);
}

/** Starts `linesign serve` with the system's Node (never Electron's) when no service answers. */
async function ensureService(socket: string): Promise<void> {
  if (existsSync(socket)) return;
  const entry = join(here, "..", "..", "bin", "linesign.js");
  // An absolute Node (never one found on PATH) and only what the service needs: no secret, no Electron variable.
  const env: NodeJS.ProcessEnv = {};
  for (const k of [
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "LINESIGN_HOME",
    "LINESIGN_SOCKET",
    "SOFTHSM2_CONF",
  ])
    if (process.env[k] !== undefined) env[k] = process.env[k];
  const child = spawn(process.env.LINESIGN_NODE ?? "/usr/bin/node", [entry, "serve"], {
    stdio: "ignore",
    detached: true,
    env,
  });
  child.unref();
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
}

async function start(): Promise<void> {
  Menu.setApplicationMenu(null);
  const socket = serviceSocket(process.env);
  await ensureService(socket);
  const ses = session.defaultSession;
  ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(denyPermission()));
  ses.setPermissionCheckHandler(() => denyPermission());
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
  wc.on("will-navigate", (e, url) => {
    if (!allowNavigation(url)) e.preventDefault();
  });
  wc.on("will-redirect", (e, url) => {
    if (!allowNavigation(url)) e.preventDefault();
  });
  wc.on("will-attach-webview", (e) => e.preventDefault());
  wc.setWindowOpenHandler(() => ({ action: "deny" }));

  const relay = makeRelay({
    forward: socketForward(socket),
    kioskWebContentsId: () => (win.isDestroyed() ? null : wc.id),
    log: (entry) =>
      console.error(JSON.stringify({ level: "warn", msg: "kiosk call refused", ...entry })),
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
