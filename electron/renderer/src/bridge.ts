/**
 * `window.linesign` for a browser: the same named functions Electron's
 * preload exposes, carried over loopback HTTP to the station service. The
 * page is given the service's per-start secret in the address's fragment
 * (never sent in a request line), or a one-time ticket there, and removes
 * the fragment from the address bar at once. It trades either for the
 * station's stable kiosk key and keeps that in this page's memory only:
 * nothing goes into the browser's profile (no cookie, no localStorage or
 * sessionStorage), yet after the service restarts the page still reaches
 * it, with no reload. The login token is kept here too, out of the page's
 * reach.
 */
import { CHANNEL_NAMES } from "../../../src/domain/kiosk-channels.js";
import type { LinesignApi, Reply } from "../../../src/domain/kiosk-api.js";

const LOGIN_HEADER = "x-linesign-login";

/** The key a POST answers with, or "" when it is refused or the service is away. */
async function keyFrom(path: string, init: RequestInit): Promise<string> {
  try {
    const res = await fetch(path, { method: "POST", cache: "no-store", ...init });
    const reply = (await res.json()) as Reply<{ key: string }>;
    return reply.ok ? reply.result.key : "";
  } catch {
    return "";
  }
}

/**
 * A one-time ticket (from `linesign kiosk`) is exchanged once for the kiosk
 * key, so the address Chromium was started on holds nothing worth reading
 * later; a per-start secret is traded for the kiosk key (kept by the
 * service across restarts), and used as it is when the service has none.
 */
function keyOf(ticket: string | null, secret: string | null): Promise<string> {
  if (ticket)
    return keyFrom("/api/kiosk-redeem", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ticket }),
    });
  if (secret)
    return keyFrom("/api/kiosk-key", { headers: { authorization: `Bearer ${secret}` } }).then(
      (k) => k || secret,
    );
  return Promise.resolve("");
}

export function httpBridge(): LinesignApi {
  const hash = new URLSearchParams(location.hash.slice(1));
  const secret = hash.get("key");
  const ticket = hash.get("ticket");
  if (secret || ticket) history.replaceState(null, "", location.pathname);
  // In this page's memory only: a reload, or a browser that opened the plain address, has none.
  const keyReady = keyOf(ticket, secret);
  let login: string | null = null;
  const call = async (channel: string, args: unknown): Promise<Reply<unknown>> => {
    const key = await keyReady;
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
      // Refused at the door: this page holds no key the service takes (never started by the station).
      if (res.status === 401) {
        login = null;
        const refused = (await res.json().catch(() => null)) as Reply<unknown> | null;
        return {
          ok: false,
          error: {
            code: "KIOSK_NOT_CONNECTED",
            message: refused && !refused.ok ? refused.error.message : "",
          },
        };
      }
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
