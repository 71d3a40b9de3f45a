/**
 * The station service's transports. Both speak one route, POST /api/call
 * with {channel, args}, and answer the contract's reply:
 * - a Unix socket (mode 0600 in a 0700 folder): Electron's main process;
 * - loopback TCP with a per-start secret (Authorization: Bearer), which also
 *   serves the kiosk page to a browser (`serve --ui`): tests, and sites that
 *   run Chromium's own kiosk mode. Host and Origin must be this address, so a
 *   web page elsewhere cannot reach it through DNS rebinding.
 * The caller's login token travels in the x-linesign-login header.
 *
 * A browser kiosk gets its key without it ever being on a command line or
 * in a browser profile: `linesign kiosk` asks the socket (POST
 * /api/kiosk-ticket, owner only) for a one-time ticket, the page exchanges
 * it once on loopback (POST /api/kiosk-redeem) for the stable kiosk key and
 * keeps that in memory only, so it reaches the service again after a
 * restart. A ticket read later (from a file, a profile) is spent. Nothing is
 * ever set in the browser (no cookie). The page never sends the kiosk key:
 * before each call it has the service prove it holds the key (POST
 * /api/kiosk-hello: its challenge answered with a nonce and an HMAC), then
 * signs the call with an HMAC over that nonce, its login and the body; the
 * nonce is spent by the call. Whoever takes the port while the service is
 * away (another local account) cannot prove the key and is sent nothing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { dirname } from "node:path";
import { connect, type AddressInfo } from "node:net";
import { LinesignError } from "../domain/errors.js";
import type { StationService } from "./station-service.js";
import { resolveStaticFile } from "./static-files.js";

export const LOGIN_HEADER = "x-linesign-login";
/** A kiosk page's call: the nonce the service gave it, and the HMAC under the kiosk key. */
export const NONCE_HEADER = "x-linesign-nonce";
export const MAC_HEADER = "x-linesign-mac";
const MAX_BODY = 64 * 1024;

/** The kiosk page's policy: its own scripts and styles, calls to this origin, nothing else. */
export const KIOSK_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface Listening {
  close(): Promise<void>;
}

/** How long a kiosk ticket may wait to be exchanged, and how many may wait at once. */
export const TICKET_TTL_MS = 60_000;
const MAX_TICKETS = 8;

/**
 * One-time kiosk tickets: minted for the station's own account (over the
 * socket), exchanged once for the loopback secret, spent by the exchange or
 * after TICKET_TTL_MS, whichever comes first.
 */
export class KioskTickets {
  private readonly waiting = new Map<string, number>();
  /** The loopback origin (set when it listens); empty while there is none. */
  origin = "";

  constructor(private readonly now: () => number = () => Date.now()) {}

  mint(): string {
    const t = this.now();
    for (const [k, until] of this.waiting) if (until <= t) this.waiting.delete(k);
    // Never more than a few at once: the oldest goes first.
    while (this.waiting.size >= MAX_TICKETS) this.waiting.delete(this.waiting.keys().next().value!);
    const ticket = randomBytes(32).toString("base64url");
    this.waiting.set(ticket, t + TICKET_TTL_MS);
    return ticket;
  }

  /** True once for a ticket minted here and still waiting; it is spent either way. */
  redeem(ticket: unknown): boolean {
    if (typeof ticket !== "string" || ticket.length !== 43) return false;
    const until = this.waiting.get(ticket);
    this.waiting.delete(ticket);
    return until !== undefined && until > this.now();
  }
}

export interface LoopbackListening extends Listening {
  port: number;
  /** The per-start secret every call must carry. */
  secret: string;
  /** The kiosk page's address, with the secret in the fragment (never sent to the server). */
  url: string | null;
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}

/** How long a request may take to arrive in full (headers and body). */
const REQUEST_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 5_000;
/** Open connections one listener keeps (the kiosk needs a handful; a page's fetches, a few more). */
const MAX_CONNECTIONS = 64;

type RefusalCode = "API_REQUEST_INVALID" | "AUTH_REQUIRED";
type Outcome = { status: number; code: RefusalCode; message: string; why: string };

/**
 * Reads at most MAX_BODY + 1 bytes. Resolves to the text, or to the refusal:
 * too large, the client hung up, the body never ended (the server's request
 * timeout destroys the request), or bytes that are not UTF-8.
 */
function readBody(req: IncomingMessage): Promise<{ text: string } | Outcome> {
  return new Promise((resolve) => {
    let size = 0;
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (v: { text: string } | Outcome) => {
      if (done) return;
      done = true;
      resolve(v);
    };
    req.on("data", (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > MAX_BODY) {
        finish(refusal(413, "The request is over 64 KiB.", "The request must be under 64 KiB."));
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      try {
        finish({ text: UTF8.decode(Buffer.concat(chunks)) });
      } catch {
        finish(refusal(400, "The request is not UTF-8.", "Send JSON in UTF-8."));
      }
    });
    const gone = () =>
      finish(
        refusal(400, "The client hung up before its request ended.", "Send the whole request."),
      );
    req.on("aborted", gone);
    req.on("error", gone);
    req.on("close", () => {
      if (!req.complete) gone();
    });
  });
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function refusal(
  status: number,
  why: string,
  message: string,
  code: RefusalCode = "API_REQUEST_INVALID",
): Outcome {
  return { status, code, message, why };
}

/** Where a request came from, for the refusal log: the transport and the caller's login, if any. */
function sourceOf(transport: string, req: IncomingMessage): string {
  return `${transport}${req.headers[LOGIN_HEADER] ? "+login" : ""}`;
}

async function handleCall(
  service: StationService,
  transport: string,
  req: IncomingMessage,
  res: ServerResponse,
  extraHeaders: Record<string, string> = {},
  /** Checks the raw body against the call's MAC (a kiosk page's call); a refusal ends the call. */
  authorize?: (body: string) => boolean,
): Promise<void> {
  const source = sourceOf(transport, req);
  const fail = (o: Outcome) => {
    service.refuseRequest(o.why, source, o.code);
    send(res, o.status, { ok: false, error: { code: o.code, message: o.message } });
  };
  if (!String(req.headers["content-type"] ?? "").startsWith("application/json"))
    return fail(refusal(415, "The request is not JSON.", "Send JSON."));
  const body = await readBody(req);
  if (!("text" in body)) return fail(body);
  if (authorize && !authorize(body.text))
    return fail(
      refusal(
        401,
        "A call whose kiosk MAC or nonce is wrong.",
        NO_KIOSK_KEY_MESSAGE,
        "AUTH_REQUIRED",
      ),
    );
  let parsed: { channel?: unknown; args?: unknown } | null = null;
  try {
    const value: unknown = JSON.parse(body.text);
    if (value && typeof value === "object" && !Array.isArray(value))
      parsed = value as { channel?: unknown; args?: unknown };
  } catch {
    parsed = null;
  }
  if (!parsed)
    return fail(
      refusal(
        400,
        "The request is not valid JSON.",
        "The request must be a JSON object {channel, args} under 64 KiB.",
      ),
    );
  const token = req.headers[LOGIN_HEADER];
  const out = await service.call(
    parsed.channel,
    parsed.args,
    typeof token === "string" ? token : null,
    source,
  );
  send(res, 200, out.reply, {
    ...extraHeaders,
    ...(out.loginToken ? { [LOGIN_HEADER]: out.loginToken } : {}),
  });
}

/**
 * The one entry of every request: whatever the handler does, the request is
 * answered (a 4xx for what it sent, a 500 for a fault of ours) and nothing
 * escapes to the process. Malformed request lines are answered by
 * `clientError`, recorded as refusals too.
 */
function boundary(
  service: StationService,
  transport: string,
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void> | void,
): Server {
  const answerFault = (res: ServerResponse, e: unknown) => {
    try {
      service.fault(transport, e);
    } catch {
      // the fault is reported as well as can be
    }
    try {
      if (!res.headersSent)
        send(res, 500, {
          ok: false,
          error: { code: "API_REQUEST_INVALID", message: "The request could not be answered." },
        });
      else res.destroy();
    } catch {
      res.destroy();
    }
  };
  // Timeouts are checked every second (Node's default is 30 s, which let a slow body outlive
  // its 10 s by far), and connections are capped so that a flood of idle ones cannot take
  // every file descriptor of the service: excess connections are closed as they come.
  const server = createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    try {
      const r = handle(req, res);
      if (r) r.catch((e: unknown) => answerFault(res, e));
    } catch (e) {
      answerFault(res, e);
    }
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.maxHeadersCount = 64;
  server.maxConnections = MAX_CONNECTIONS;
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    try {
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE")
        service.refuseRequest(
          `A malformed HTTP request (${String(err.code ?? "bad request").slice(0, 40)}).`,
          transport,
          "API_REQUEST_INVALID",
        );
      if (socket.writable && !socket.writableEnded)
        socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      else socket.destroy();
    } catch {
      socket.destroy();
    }
  });
  return server;
}

/**
 * Why the folder of a socket is no place for the station's socket, or null: another account
 * that may write there (/tmp, a shared folder) can put its own socket in the service's place
 * before it starts or after it stops, and be asked for kiosk tickets, or keep the service down.
 */
export function unsafeSocketFolder(socketPath: string): string | null {
  const dir = dirname(socketPath);
  let st;
  try {
    st = statSync(dir);
  } catch {
    return null; // the listen that follows names what is missing
  }
  const uid = process.getuid?.() ?? st.uid;
  if ((st.mode & 0o022) !== 0 || (st.uid !== uid && st.uid !== 0))
    return `The socket's folder ${dir} may be written by other accounts (mode ${(st.mode & 0o7777).toString(8)}, owner uid ${st.uid}): one of them could put its own socket in the service's place. Use a folder only the station's account can write, such as the default <home>/run.`;
  return null;
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

/**
 * Listens on a Unix socket only this OS user can open.
 * @throws LinesignError USAGE when the path is too long, or another service is already listening there
 */
export async function listenUnix(
  service: StationService,
  socketPath: string,
  opts: { tickets?: KioskTickets } = {},
): Promise<Listening> {
  // sockaddr_un holds 108 bytes on Linux; a longer path fails with a bare EINVAL.
  if (Buffer.byteLength(socketPath) > 100)
    throw new LinesignError(
      "USAGE",
      `The socket path ${socketPath} is too long for a Unix socket (at most 100 bytes): choose a shorter one with --socket.`,
    );
  // A folder Linesign makes is 0700; one that exists (/tmp, a site's own) is never changed.
  if (!existsSync(dirname(socketPath)))
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  const unsafe = unsafeSocketFolder(socketPath);
  if (unsafe) throw new LinesignError("USAGE", unsafe);
  if (existsSync(socketPath) && lstatSync(socketPath).isSocket()) {
    // A socket left by a service that died is replaced; a live one is not.
    const alive = await new Promise<boolean>((resolve) => {
      const c = connect(socketPath);
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (alive)
      throw new LinesignError(
        "USAGE",
        `A station service is already running on ${socketPath}: stop it first (one service per station).`,
      );
    unlinkSync(socketPath);
  }
  const server = boundary(service, "socket", (req, res) => {
    if (req.method === "POST" && req.url === "/api/call")
      return handleCall(service, "socket", req, res);
    // Only the station's own account reaches the socket (0600): a launcher asking for a browser's ticket.
    if (req.method === "POST" && req.url === "/api/kiosk-ticket" && opts.tickets?.origin)
      return send(res, 200, {
        ok: true,
        result: {
          url: `${opts.tickets.origin}/#ticket=${opts.tickets.mint()}`,
          expiresInMs: TICKET_TTL_MS,
        },
      });
    return send(res, 404, {
      ok: false,
      error: { code: "API_REQUEST_INVALID", message: "POST /api/call only." },
    });
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(socketPath, 0o600);
  return { close: closer(server) };
}

/** How long a kiosk page's nonce may wait for its call, and how many may wait at once. */
const NONCE_TTL_MS = 30_000;
const MAX_NONCES = 256;
const HEX32 = /^[0-9a-f]{64}$/;

/**
 * The proof and MAC of a kiosk page's call, keyed by the kiosk key (which
 * never leaves the page or the service): the page sends a fresh challenge,
 * the service answers a nonce of its own with HMAC(key, server, challenge,
 * nonce), and the page sends its call only when that proves the service holds
 * the key; the call carries HMAC(key, call, nonce, login, body), and the
 * nonce is spent by its first use, so a call cannot be replayed. An impostor
 * on the port cannot prove the key, and is sent nothing a user typed.
 */
export const kioskProofText = (challenge: string, nonce: string) =>
  `linesign-kiosk-server\n${challenge}\n${nonce}`;
export const kioskCallText = (nonce: string, login: string, body: string) =>
  `linesign-kiosk-call\n${nonce}\n${login}\n${body}`;
const hmac = (key: string, text: string): Buffer =>
  createHmac("sha256", Buffer.from(key, "utf8")).update(text, "utf8").digest();

/** Nonces handed out to kiosk pages: each spent by its first call, or after NONCE_TTL_MS. */
class KioskNonces {
  private readonly waiting = new Map<string, number>();

  mint(): string {
    const t = Date.now();
    for (const [k, until] of this.waiting) if (until <= t) this.waiting.delete(k);
    while (this.waiting.size >= MAX_NONCES) this.waiting.delete(this.waiting.keys().next().value!);
    const nonce = randomBytes(32).toString("hex");
    this.waiting.set(nonce, t + NONCE_TTL_MS);
    return nonce;
  }

  /** True once for a nonce handed out here and still waiting; it is spent either way. */
  spend(nonce: string): boolean {
    const until = this.waiting.get(nonce);
    this.waiting.delete(nonce);
    return until !== undefined && until > Date.now();
  }
}

function sameSecret(got: string, expected: Buffer): boolean {
  const b = Buffer.from(got);
  return b.length === expected.length && timingSafeEqual(b, expected);
}

/** The refusal of a call that holds neither the per-start secret nor the kiosk key. */
export const NO_KIOSK_KEY_MESSAGE =
  'This browser holds no key for the station service: start the kiosk with "linesign kiosk" beside "linesign serve --ui" (or use Electron\'s kiosk).';

/**
 * Listens on 127.0.0.1 with a per-start secret; with `uiDir`, also serves the
 * kiosk page. With `kioskKey` (the stable key in <home>/run/kiosk.key), a
 * page that holds the per-start secret may ask for it (POST /api/kiosk-key),
 * and a redeemed ticket is answered with it: the page keeps it in memory and
 * calls with it, so it still reaches the service after a restart, with no
 * reload. Nothing is ever given to the browser to keep (no cookie).
 */
export async function listenLoopback(
  service: StationService,
  opts: {
    port?: number;
    uiDir?: string | null;
    kioskKey?: string;
    tickets?: KioskTickets;
    /** Told when a browser has exchanged a ticket for the secret. */
    onRedeemed?: () => void;
  },
): Promise<LoopbackListening> {
  const secret = randomBytes(32).toString("base64url");
  const expected = Buffer.from(`Bearer ${secret}`);
  // A page holds the kiosk key (or this start's secret when there is none) and never sends it.
  const pageKey = opts.kioskKey ?? secret;
  const nonces = new KioskNonces();
  const holdsSecret = (req: IncomingMessage): boolean =>
    sameSecret(String(req.headers.authorization ?? ""), expected);
  /** A kiosk page's call: its nonce is ours and unspent, and its MAC is right (constant time). */
  const pageCall = (req: IncomingMessage) => {
    const nonce = String(req.headers[NONCE_HEADER] ?? "");
    const mac = String(req.headers[MAC_HEADER] ?? "");
    const login = req.headers[LOGIN_HEADER];
    return (body: string): boolean => {
      if (!HEX32.test(nonce) || !HEX32.test(mac) || !nonces.spend(nonce)) return false;
      const want = hmac(
        pageKey,
        kioskCallText(nonce, typeof login === "string" ? login : "", body),
      );
      return timingSafeEqual(Buffer.from(mac, "hex"), want);
    };
  };
  let origin = "";
  const server = boundary(service, "loopback", (req, res) => {
    // Only this address: a page elsewhere that rebinds a name to 127.0.0.1 sends another Host.
    if (req.headers.host !== origin.slice("http://".length))
      return send(res, 421, {
        ok: false,
        error: { code: "API_REQUEST_INVALID", message: "Wrong host." },
      });
    if (req.method === "POST" && req.url === "/api/call") {
      if (req.headers.origin !== undefined && req.headers.origin !== origin) {
        service.refuseRequest("A call from another origin.", "loopback", "API_REQUEST_INVALID");
        return send(res, 403, {
          ok: false,
          error: { code: "API_REQUEST_INVALID", message: "Wrong origin." },
        });
      }
      if (req.headers[MAC_HEADER] !== undefined)
        return handleCall(service, "loopback", req, res, {}, pageCall(req));
      if (holdsSecret(req)) return handleCall(service, "loopback", req, res);
      service.refuseRequest("A call without the service's secret.", "loopback", "AUTH_REQUIRED");
      return send(res, 401, {
        ok: false,
        error: { code: "AUTH_REQUIRED", message: NO_KIOSK_KEY_MESSAGE },
      });
    }
    // A page about to call asks the service to prove it holds the key, and is given a nonce.
    if (req.method === "POST" && req.url === "/api/kiosk-hello")
      return hello(service, origin, pageKey, nonces, req, res);
    // A page that holds this start's secret asks for the stable key, to keep in its memory.
    if (req.method === "POST" && req.url === "/api/kiosk-key" && opts.kioskKey) {
      if (
        (req.headers.origin !== undefined && req.headers.origin !== origin) ||
        !sameSecret(String(req.headers.authorization ?? ""), expected)
      ) {
        service.refuseRequest("A kiosk key asked without the secret.", "loopback", "AUTH_REQUIRED");
        return send(res, 401, {
          ok: false,
          error: { code: "AUTH_REQUIRED", message: NO_KIOSK_KEY_MESSAGE },
        });
      }
      return send(res, 200, { ok: true, result: { key: opts.kioskKey } });
    }
    if (req.method === "POST" && req.url === "/api/kiosk-redeem" && opts.tickets)
      return redeemTicket(
        service,
        opts.tickets,
        origin,
        opts.kioskKey ?? secret,
        req,
        res,
        opts.onRedeemed,
      );
    if (req.method === "GET" && opts.uiDir) return serveStatic(opts.uiDir, req, res);
    return send(res, 404, {
      ok: false,
      error: { code: "API_REQUEST_INVALID", message: "Not found." },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
  if (opts.tickets) opts.tickets.origin = origin;
  return {
    port,
    secret,
    url: opts.uiDir ? `${origin}/#key=${secret}` : null,
    close: closer(server),
  };
}

/**
 * A kiosk page's challenge (64 hex digits) is answered with a fresh nonce and
 * HMAC(key, server, challenge, nonce): the page sends its call only when that
 * proves this is the station. Anyone may ask; the answer gives nothing away.
 */
async function hello(
  service: StationService,
  origin: string,
  key: string,
  nonces: KioskNonces,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const refuse = (why: string) => {
    service.refuseRequest(why, "loopback", "API_REQUEST_INVALID");
    send(res, 400, {
      ok: false,
      error: { code: "API_REQUEST_INVALID", message: "Send {challenge} as 64 hex digits." },
    });
  };
  if (req.headers.origin !== undefined && req.headers.origin !== origin)
    return refuse("A kiosk challenge from another origin.");
  const body = await readBody(req);
  if (!("text" in body)) return refuse("A kiosk challenge that could not be read.");
  let challenge: unknown;
  try {
    challenge = (JSON.parse(body.text) as { challenge?: unknown } | null)?.challenge;
  } catch {
    challenge = null;
  }
  if (typeof challenge !== "string" || !HEX32.test(challenge))
    return refuse("A kiosk challenge that is not 64 hex digits.");
  const nonce = nonces.mint();
  send(res, 200, {
    ok: true,
    result: { nonce, proof: hmac(key, kioskProofText(challenge, nonce)).toString("hex") },
  });
}

/**
 * A browser exchanges its one-time ticket for `key` (the stable kiosk key, or
 * the per-start secret when there is none); the answer is not cached anywhere.
 */
async function redeemTicket(
  service: StationService,
  tickets: KioskTickets,
  origin: string,
  key: string,
  req: IncomingMessage,
  res: ServerResponse,
  onRedeemed?: () => void,
): Promise<void> {
  const refuse = (why: string) => {
    service.refuseRequest(why, "loopback", "AUTH_REQUIRED");
    send(res, 401, {
      ok: false,
      error: {
        code: "AUTH_REQUIRED",
        message:
          'This kiosk address was used already or is too old: start the kiosk again ("linesign kiosk").',
      },
    });
  };
  if (req.headers.origin !== undefined && req.headers.origin !== origin)
    return refuse("A kiosk ticket from another origin.");
  const body = await readBody(req);
  if (!("text" in body)) return refuse("A kiosk ticket request that could not be read.");
  let ticket: unknown;
  try {
    ticket = (JSON.parse(body.text) as { ticket?: unknown } | null)?.ticket;
  } catch {
    ticket = null;
  }
  if (!tickets.redeem(ticket)) return refuse("A kiosk ticket that is spent, old or unknown.");
  onRedeemed?.();
  send(res, 200, { ok: true, result: { key } }, { "cache-control": "no-store" });
}

function serveStatic(dir: string, req: IncomingMessage, res: ServerResponse): void {
  // Only a plain path: a request line such as "//[" or "http://[/" is no URL and is refused.
  const target = req.url ?? "/";
  let pathname: string | null = null;
  if (target.startsWith("/") && !target.startsWith("//")) {
    try {
      pathname = new URL(target, "http://127.0.0.1").pathname;
    } catch {
      pathname = null;
    }
  }
  const file = pathname === null ? null : resolveStaticFile(dir, pathname);
  if (!file || !existsSync(file.path))
    return send(res, 404, {
      ok: false,
      error: { code: "API_REQUEST_INVALID", message: "Not found." },
    });
  res.writeHead(200, {
    "content-type": file.type,
    "content-security-policy": KIOSK_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
  });
  res.end(readFileSync(file.path));
}
