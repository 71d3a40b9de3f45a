/**
 * `window.linesign` for a browser: the same named functions Electron's
 * preload exposes, carried over loopback HTTP to the station service. The
 * service's per-start secret arrives in the address's fragment (never sent
 * in a request line), or is exchanged for the one-time ticket found there;
 * it is kept for this tab only, and the fragment is removed from the address
 * bar. The login token is kept here, out of the page's reach.
 */
import { CHANNEL_NAMES } from "../../../src/domain/kiosk-channels.js";
import type { LinesignApi, Reply } from "../../../src/domain/kiosk-api.js";

const KEY_STORE = "linesign.kiosk-key";
const LOGIN_HEADER = "x-linesign-login";

/**
 * A one-time ticket (from `linesign kiosk`) is exchanged once for the secret,
 * so the address Chromium was started on holds nothing worth reading later.
 */
async function redeem(ticket: string): Promise<string> {
  try {
    const res = await fetch("/api/kiosk-redeem", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ticket }),
      cache: "no-store",
    });
    const reply = (await res.json()) as Reply<{ key: string }>;
    return reply.ok ? reply.result.key : "";
  } catch {
    return "";
  }
}

export function httpBridge(): LinesignApi {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("key");
  const ticket = hash.get("ticket");
  if (fromHash || ticket) history.replaceState(null, "", location.pathname);
  if (fromHash) sessionStorage.setItem(KEY_STORE, fromHash);
  const keyReady: Promise<string> = ticket
    ? redeem(ticket).then((k) => {
        if (k) sessionStorage.setItem(KEY_STORE, k);
        return k;
      })
    : Promise.resolve(sessionStorage.getItem(KEY_STORE) ?? "");
  let login: string | null = null;
  const call = async (channel: string, args: unknown): Promise<Reply<unknown>> => {
    const key = (await keyReady) || (sessionStorage.getItem(KEY_STORE) ?? "");
    try {
      const res = await fetch("/api/call", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${key}`,
          ...(login ? { [LOGIN_HEADER]: login } : {}),
        },
        body: JSON.stringify({ channel, args }),
      });
      const reply = (await res.json()) as Reply<unknown>;
      const token = res.headers.get(LOGIN_HEADER);
      if (channel === "auth.login" && reply.ok && token) login = token;
      if (
        channel === "auth.logout" ||
        channel === "auth.handover" ||
        (!reply.ok && reply.error.code === "AUTH_REQUIRED")
      )
        login = null;
      return reply;
    } catch {
      return {
        ok: false,
        error: {
          code: "SERVICE_UNREACHABLE",
          message:
            "The station service does not answer. The kiosk reconnects by itself once it does; check that it is running.",
        },
      };
    }
  };
  const api: Record<string, (args: unknown) => Promise<Reply<unknown>>> = {};
  for (const name of CHANNEL_NAMES) api[name] = (args) => call(name, args);
  return Object.freeze(api) as unknown as LinesignApi;
}
