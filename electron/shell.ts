/**
 * The kiosk shell's decisions, kept free of Electron's runtime so they are
 * unit-tested: the window's options, which sender is trusted, how a call is
 * checked before it is relayed to the station service, and which file the
 * app:// protocol may serve. electron/main.ts only wires these to Electron.
 */
import { existsSync, mkdirSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { isChannel, parseArgs, type Reply } from "../src/domain/kiosk-api.js";
import { resolveStaticFile } from "../src/service/static-files.js";
import { cut, wellFormed } from "../src/domain/text.js";

/** Where the kiosk page is loaded from (a privileged custom scheme, not file://). */
export const APP_ORIGIN = "app://kiosk";
export const APP_SCHEME = "app";

/**
 * The page's policy inside Electron: its own scripts and styles only, and no
 * network at all (the renderer reaches the station only through the preload).
 */
export const ELECTRON_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
  "connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Whether a URL is ours. Compared by scheme and host: for a custom scheme,
 * Node's URL reports the origin as "null" (Chromium knows it as standard).
 */
function isOurs(u: URL): boolean {
  return u.protocol === `${APP_SCHEME}:` && u.host === "kiosk";
}

/** The login header the station service answers with and expects. */
export const LOGIN_HEADER = "x-linesign-login";

/** The one window: full screen, kiosk mode, no menu; every web preference locked down. */
export function kioskWindowOptions(preload: string, opts: { devTools?: boolean } = {}) {
  return {
    show: false,
    fullscreen: true,
    kiosk: true,
    autoHideMenuBar: true,
    backgroundColor: "#f4f5f7",
    title: "Linesign",
    webPreferences: {
      preload,
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webviewTag: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      navigateOnDragDrop: false,
      spellcheck: false,
      safeDialogs: true,
      // The kiosk build has no devtools; a development run may ask for them.
      devTools: opts.devTools === true,
    },
  } as const;
}

/** What main knows of a call's sender (Electron's IpcMainInvokeEvent, narrowed). */
export interface CallSender {
  senderId: number;
  /** The frame that sent the call: its URL, and whether it is the top frame. */
  frameUrl: string | null;
  isMainFrame: boolean;
}

/** Only the kiosk window's own top frame, showing our own page, may call. */
export function isTrustedSender(sender: CallSender, kioskWebContentsId: number | null): boolean {
  if (kioskWebContentsId === null || sender.senderId !== kioskWebContentsId) return false;
  if (!sender.isMainFrame || !sender.frameUrl) return false;
  try {
    return isOurs(new URL(sender.frameUrl));
  } catch {
    return false;
  }
}

/** Where main forwards a checked call: the station service (over its Unix socket in production). */
export type Forward = (
  channel: string,
  args: unknown,
  login: string | null,
) => Promise<{ reply: Reply<unknown>; login?: string | null }>;

/**
 * Main's side of every call: refuses unknown channels, foreign senders and
 * malformed arguments before anything leaves main, then relays to the
 * service with this window's login token, which the renderer never sees.
 */
export function makeRelay(deps: {
  forward: Forward;
  kioskWebContentsId: () => number | null;
  log: (entry: { refused: string; channel: string; why: string }) => void;
}) {
  let login: string | null = null;
  const refuse = (channel: string, why: string, code = "API_REQUEST_INVALID"): Reply<never> => {
    deps.log({ refused: code, channel: wellFormed(cut(channel, 64)), why });
    return { ok: false, error: { code, message: why } };
  };
  return async (channel: unknown, args: unknown, sender: CallSender): Promise<Reply<unknown>> => {
    // Never String() what the page sent: a deeply nested array overflows the stack.
    const name = typeof channel === "string" ? wellFormed(cut(channel, 64)) : `(${typeof channel})`;
    if (!isTrustedSender(sender, deps.kioskWebContentsId()))
      return refuse(name, "The call did not come from the kiosk window.", "ROLE_FORBIDDEN");
    if (!isChannel(channel)) return refuse(name, `There is no channel ${JSON.stringify(name)}.`);
    const parsed = parseArgs(channel, args);
    if (!parsed.ok) return refuse(name, parsed.message);
    const out = await deps.forward(channel, parsed.args, login);
    if (channel === "auth.login" && out.reply.ok && out.login) login = out.login;
    if (channel === "auth.logout" || channel === "auth.handover") login = null;
    if (!out.reply.ok && out.reply.error.code === "AUTH_REQUIRED") login = null;
    return out.reply;
  };
}

/** The station service's socket: LINESIGN_SOCKET, else <home>/run/station.sock. */
export function serviceSocket(env: NodeJS.ProcessEnv): string {
  if (env.LINESIGN_SOCKET) return env.LINESIGN_SOCKET;
  const home = env.LINESIGN_HOME ?? join(homedir(), ".linesign");
  return join(home, "run", "station.sock");
}

/** Calls the station service over its Unix socket. */
export function socketForward(socketPath: string): Forward {
  return (channel, args, login) =>
    new Promise((resolve) => {
      const body = JSON.stringify({ channel, args });
      const req = request(
        {
          socketPath,
          path: "/api/call",
          method: "POST",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            ...(login ? { [LOGIN_HEADER]: login } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            try {
              const reply = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Reply<unknown>;
              const header = res.headers[LOGIN_HEADER];
              resolve({ reply, login: typeof header === "string" ? header : null });
            } catch {
              resolve(unreachable());
            }
          });
        },
      );
      req.on("error", () => resolve(unreachable()));
      req.end(body);
    });
}

function unreachable(): { reply: Reply<never> } {
  return {
    reply: {
      ok: false,
      error: {
        code: "SERVICE_UNREACHABLE",
        message: "The station service does not answer. Call the line lead to restart the station.",
      },
    },
  };
}

/**
 * The file an app:// request may read, or null: only our origin, only files
 * inside the page's folder, only the types the page is made of.
 */
export function resolveAppFile(
  rendererDir: string,
  url: string,
): { path: string; type: string } | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  return isOurs(u) ? resolveStaticFile(rendererDir, u.pathname) : null;
}

/** Every permission a page may ask for (camera, notifications, serial...) is refused. */
export function denyPermission(): boolean {
  return false;
}

/** Navigation away from the kiosk page is refused; so is every new window. */
export function allowNavigation(url: string): boolean {
  try {
    return isOurs(new URL(url));
  } catch {
    return false;
  }
}

/** An Electron event that can be refused (navigation, webview, download). */
export interface Refusable {
  preventDefault(): void;
  /** Electron passes the target in the event (will-frame-navigate) or as the second argument. */
  url?: string;
}

/** What the guard needs of a session (Electron's Session, narrowed). */
export interface GuardedSession {
  setPermissionRequestHandler(h: (wc: unknown, p: string, cb: (ok: boolean) => void) => void): void;
  setPermissionCheckHandler(h: () => boolean): void;
  setDevicePermissionHandler?(h: () => boolean): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Electron's overloaded on()
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/** What the guard needs of a web contents (Electron's WebContents, narrowed). */
export interface GuardedContents {
  readonly session: GuardedSession;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Electron's overloaded on()
  on(event: string, listener: (...args: any[]) => void): unknown;
  setWindowOpenHandler(h: (details: { url: string }) => { action: "deny" }): void;
}

/** What the guard needs of a download (Electron's DownloadItem, narrowed). */
export interface GuardedDownload {
  getURL(): string;
  getFilename(): string;
  setSavePath(path: string): void;
}

/** Where the kiosk saves exports: <home>/exports (the station home is the operator account's own, 0700). */
export function exportDir(env: NodeJS.ProcessEnv): string {
  return join(env.LINESIGN_HOME ?? join(homedir(), ".linesign"), "exports");
}

/**
 * Where a download from the page is saved, chosen here so that no native
 * file dialog opens (a dialog is a way out of the kiosk to the file system):
 * only an audit export the page made itself (a blob: of our origin), under a
 * name of ours, in `dir`, never over an existing file. Anything else: null.
 */
export function downloadPath(dir: string, url: string, fileName: string): string | null {
  if (!url.startsWith(`blob:${APP_ORIGIN}/`)) return null;
  const m = /^(linesign-audit-[A-Za-z0-9._-]{1,160})\.json$/.exec(fileName);
  if (!m || m[1]!.includes("..")) return null;
  for (let i = 0; i < 1000; i++) {
    const path = join(dir, `${m[1]}${i ? `-${i}` : ""}.json`);
    if (!existsSync(path)) return path;
  }
  return null;
}

/**
 * The rules every web contents gets, the kiosk window's and any other
 * (a devtools page, a frame's, one made by a future feature): no navigation
 * away from our page, no new window, no webview, no permission, and
 * downloads saved without a dialog (or cancelled). Each session once.
 */
export function makeContentsGuard(deps: {
  exportDir: () => string;
  log: (entry: { refused: string; what: string; url: string }) => void;
}) {
  const sessions = new WeakSet<GuardedSession>();
  const refuseNav = (what: string) => (e: Refusable, url?: string) => {
    const target = e.url ?? url ?? "";
    if (allowNavigation(target)) return;
    e.preventDefault();
    deps.log({ refused: "NAVIGATION", what, url: wellFormed(cut(target, 200)) });
  };
  return (wc: GuardedContents): void => {
    wc.on("will-navigate", refuseNav("will-navigate"));
    wc.on("will-frame-navigate", refuseNav("will-frame-navigate"));
    wc.on("will-redirect", refuseNav("will-redirect"));
    wc.on("will-attach-webview", (e: Refusable) => {
      e.preventDefault();
      deps.log({ refused: "WEBVIEW", what: "will-attach-webview", url: "" });
    });
    wc.setWindowOpenHandler((d) => {
      deps.log({ refused: "WINDOW_OPEN", what: "window-open", url: wellFormed(cut(d.url, 200)) });
      return { action: "deny" };
    });
    const ses = wc.session;
    if (sessions.has(ses)) return;
    sessions.add(ses);
    ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(denyPermission()));
    ses.setPermissionCheckHandler(() => denyPermission());
    ses.setDevicePermissionHandler?.(() => denyPermission());
    for (const chooser of ["select-serial-port", "select-hid-device", "select-usb-device"])
      ses.on(chooser, (e: Refusable, ...rest: unknown[]) => {
        e.preventDefault();
        const cb = rest.find((x): x is (id: string) => void => typeof x === "function");
        cb?.("");
      });
    ses.on("will-download", (e: Refusable, item: GuardedDownload) => {
      const dir = deps.exportDir();
      let path: string | null;
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        path = downloadPath(dir, item.getURL(), item.getFilename());
      } catch {
        path = null;
      }
      if (path === null) {
        e.preventDefault();
        deps.log({
          refused: "DOWNLOAD",
          what: "will-download",
          url: wellFormed(cut(item.getURL(), 200)),
        });
        return;
      }
      // A save path set here means Electron asks nobody: no dialog opens.
      item.setSavePath(path);
    });
  };
}

/** What main starts as the station service: an absolute Node, an absolute entry, a minimal environment. */
export interface ServiceLaunch {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** Variables the service is given (nothing else: no secret, no ELECTRON_*, no NODE_OPTIONS). */
export const SERVICE_ENV = [
  "HOME",
  "LANG",
  "TZ",
  "LINESIGN_HOME",
  "LINESIGN_SOCKET",
  "SOFTHSM2_CONF",
];

/**
 * How the kiosk starts its service. Packaged, the service (bin/, dist/cli, dist/src and
 * its node_modules, built for the system's Node) is in the application's
 * resources, outside the asar: `<resources>/service/bin/linesign.js`.
 * Unpackaged, it is the repository's bin/. Node is LINESIGN_NODE when that is
 * an absolute path, else /usr/bin/node; never one found on PATH, never Electron.
 * @returns the launch, or a refusal naming the fix
 */
export function serviceLaunch(o: {
  packaged: boolean;
  resourcesPath: string;
  /** The folder main.js is in (dist/electron when unpackaged). */
  mainDir: string;
  env: NodeJS.ProcessEnv;
}): ServiceLaunch | { refused: string } {
  const node = o.env.LINESIGN_NODE ?? "/usr/bin/node";
  if (!isAbsolute(node))
    return {
      refused: `LINESIGN_NODE must be an absolute path to Node (it is "${wellFormed(cut(node, 200))}"): a Node found on PATH is not started.`,
    };
  const entry = o.packaged
    ? join(o.resourcesPath, "service", "bin", "linesign.js")
    : join(o.mainDir, "..", "..", "bin", "linesign.js");
  const env: NodeJS.ProcessEnv = { PATH: "/usr/local/bin:/usr/bin:/bin" };
  for (const k of SERVICE_ENV) if (o.env[k] !== undefined) env[k] = o.env[k];
  return { command: node, args: [entry, "serve"], env };
}

/** Installs `guard` on every web contents the application creates (Electron's app, narrowed). */
export function guardEveryContents(
  app: {
    on(event: "web-contents-created", listener: (e: unknown, wc: GuardedContents) => void): unknown;
  },
  guard: (wc: GuardedContents) => void,
): void {
  app.on("web-contents-created", (_e, wc) => guard(wc));
}

/**
 * Whether a service answers on `socketPath`. A socket file alone says nothing: a service that
 * was killed leaves its file behind, and main must then start a new one (serve replaces it).
 */
export function serviceAnswers(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socketPath);
    const done = (up: boolean) => {
      c.destroy();
      resolve(up);
    };
    c.setTimeout(timeoutMs, () => done(false));
    c.once("connect", () => done(true));
    c.once("error", () => done(false));
  });
}
