/**
 * `window.linesign` for a browser: the same named functions Electron's
 * preload exposes, carried over loopback HTTP to the station service. The
 * page is given the service's per-start secret in the address's fragment
 * (never sent in a request line), or a one-time ticket there, and removes
 * the fragment from the address bar at once. It trades either for the
 * station's stable kiosk key and keeps that in this page's memory only:
 * nothing goes into the browser's profile (no cookie, no localStorage or
 * sessionStorage), yet after the service restarts the page still reaches
 * it, with no reload. The key itself is never sent: before each call the
 * page has whoever listens prove it holds the key (a challenge answered by
 * an HMAC), and signs the call with an HMAC over the service's fresh nonce,
 * the login and the body. Another account that takes the port while the
 * service restarts cannot prove the key, is sent nothing (no key, no
 * passphrase, no PIN), and the screen says it is not connected to the
 * station. The login token is kept here too, out of the page's reach.
 */
import { CHANNEL_NAMES } from "../../../src/domain/kiosk-channels.js";
import type { LinesignApi, Reply } from "../../../src/domain/kiosk-api.js";

const LOGIN_HEADER = "x-linesign-login";
const NONCE_HEADER = "x-linesign-nonce";
const MAC_HEADER = "x-linesign-mac";

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

const enc = new TextEncoder();
const hex = (b: ArrayBuffer | Uint8Array): string =>
  Array.from(b instanceof Uint8Array ? b : new Uint8Array(b), (x) =>
    x.toString(16).padStart(2, "0"),
  ).join("");
const HEX32 = /^[0-9a-f]{64}$/;
const fromHex = (s: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array((s.match(/../g) ?? []).map((x) => parseInt(x, 16)));

/** The key as a non-extractable HMAC key: it signs here and is never sent. */
async function macKey(key: string): Promise<CryptoKey | null> {
  if (!key) return null;
  return crypto.subtle.importKey("raw", enc.encode(key), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

/** The server did not prove it holds the key: nothing of the user's was sent to it. */
class NotTheStation extends Error {}

/**
 * Asks whoever listens to prove it holds the key: a fresh challenge, answered
 * by a nonce and HMAC(key, server, challenge, nonce). Resolves to the nonce
 * for the call; throws NotTheStation when the proof is missing or wrong, and
 * a TypeError when nothing answers.
 */
async function proven(key: CryptoKey): Promise<string> {
  const challenge = hex(crypto.getRandomValues(new Uint8Array(32)));
  const res = await fetch("/api/kiosk-hello", {
    method: "POST",
    cache: "no-store",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ challenge }),
  });
  const reply = (await res.json().catch(() => null)) as Reply<{
    nonce?: unknown;
    proof?: unknown;
  }> | null;
  const nonce = reply?.ok ? reply.result.nonce : null;
  const proof = reply?.ok ? reply.result.proof : null;
  if (
    typeof nonce !== "string" ||
    !HEX32.test(nonce) ||
    typeof proof !== "string" ||
    !HEX32.test(proof)
  )
    throw new NotTheStation();
  const text = `linesign-kiosk-server\n${challenge}\n${nonce}`;
  if (!(await crypto.subtle.verify("HMAC", key, fromHex(proof), enc.encode(text))))
    throw new NotTheStation();
  return nonce;
}

const notConnected = (message: string): Reply<unknown> => ({
  ok: false,
  error: { code: "KIOSK_NOT_CONNECTED", message },
});
const NO_KEY =
  'This browser holds no key for the station service: start the kiosk with "linesign kiosk" beside "linesign serve --ui" (or use Electron\'s kiosk).';
const NOT_PROVEN =
  "What answers at this address did not prove it is the station service, so nothing was sent to it: check that the station service is running.";

export function httpBridge(): LinesignApi {
  const hash = new URLSearchParams(location.hash.slice(1));
  const secret = hash.get("key");
  const ticket = hash.get("ticket");
  if (secret || ticket) history.replaceState(null, "", location.pathname);
  // In this page's memory only, as a key that cannot be read back: a reload, or a
  // browser that opened the plain address, has none.
  const keyReady = keyOf(ticket, secret).then(macKey);
  let login: string | null = null;
  const call = async (channel: string, args: unknown): Promise<Reply<unknown>> => {
    const key = await keyReady;
    if (!key) {
      login = null;
      return notConnected(NO_KEY);
    }
    try {
      // Every call, a secret of the user's or not, goes only to a service that has proved the key.
      const nonce = await proven(key);
      const body = JSON.stringify({ channel, args });
      const text = `linesign-kiosk-call\n${nonce}\n${login ?? ""}\n${body}`;
      const mac = hex(await crypto.subtle.sign("HMAC", key, enc.encode(text)));
      const res = await fetch("/api/call", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          [NONCE_HEADER]: nonce,
          [MAC_HEADER]: mac,
          ...(login ? { [LOGIN_HEADER]: login } : {}),
        },
        body,
      });
      // Refused at the door: this page holds no key the service takes (never started by the station).
      if (res.status === 401) {
        login = null;
        const refused = (await res.json().catch(() => null)) as Reply<unknown> | null;
        return notConnected(refused && !refused.ok ? refused.error.message : "");
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
    } catch (e) {
      if (e instanceof NotTheStation) {
        login = null;
        return notConnected(NOT_PROVEN);
      }
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
