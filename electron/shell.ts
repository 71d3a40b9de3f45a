/**
 * The kiosk shell's decisions, kept free of Electron's runtime so they are
 * unit-tested: the window's options, which sender is trusted, how a call is
 * checked before it is relayed to the station service, and which file the
 * app:// protocol may serve. electron/main.ts only wires these to Electron.
 */
import { request } from "node:http";
import { homedir } from "node:os";
import { join } from "node:path";
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
