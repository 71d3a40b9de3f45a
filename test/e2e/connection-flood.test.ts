/**
 * A local account floods the service's loopback port with idle connections,
 * or holds one open with a body that trickles in. The service runs with a
 * small file-descriptor limit (prlimit), as a busy station would reach its
 * own: the flood must not take every descriptor, so the station's socket
 * (Electron's path) still answers during it, and the loopback port answers
 * again once it ends; a trickling body is cut at its 10 s limit, not left
 * for Node's 30 s check of timeouts.
 */
import { connect, type Socket } from "node:net";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";
import { startProc, type Proc } from "../helpers/serial.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const FLOOD = 400;

let st: TestStation;
let serve: Proc;
let url: URL;
let socket: string;

beforeAll(async () => {
  st = devStation();
  serve = startProc(
    "/usr/bin/prlimit",
    ["--nofile=200:200", process.execPath, BIN, "--json", "serve", "--ui", "--port", "/dev/null"],
    st.env,
  );
  const l = await serve.lines.waitFor((e) => e.event === "listening", "the service");
  url = new URL(String(l.url));
  socket = String(l.socket);
}, 120_000);

afterAll(async () => {
  if (serve.proc.exitCode === null) serve.proc.kill("SIGINT");
  await serve.exited;
});

/** One call; the answer's status and body, or the error that ended it (bounded: 10 s). */
function call(o: { socketPath?: string; port?: number; auth?: string }): Promise<string> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ channel: "kiosk.welcome", args: {} });
    const req = request(
      {
        ...(o.socketPath ? { socketPath: o.socketPath } : { host: "127.0.0.1", port: o.port }),
        path: "/api/call",
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(o.auth ? { authorization: o.auth } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (d: string) => (text += d));
        res.on("end", () => resolve(`${res.statusCode} ${text}`));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("no answer in 10 s")));
    req.on("error", (e) => resolve(`error ${e.message}`));
    req.end(body);
  });
}

it("keeps its socket answering while idle connections flood its loopback port, and the port once they go", async () => {
  const port = Number(url.port);
  const flood: Socket[] = [];
  await Promise.all(
    Array.from(
      { length: FLOOD },
      () =>
        new Promise<void>((resolve) => {
          const c = connect(port, "127.0.0.1");
          flood.push(c);
          c.on("error", () => undefined);
          c.once("connect", () => resolve());
          c.once("close", () => resolve());
        }),
    ),
  );
  try {
    const during = await call({ socketPath: socket });
    expect(during).toMatch(/^200 \{"ok":true/);
  } finally {
    for (const c of flood) c.destroy();
  }
  const secret = url.hash.replace(/^#key=/, "");
  // The flood's connections close as they go; then the kiosk's port answers.
  let after = "";
  for (let i = 0; i < 50 && !after.startsWith("200"); i++)
    after = await call({ port, auth: `Bearer ${secret}` });
  expect(after).toMatch(/^200 \{"ok":true/);
  expect(serve.proc.exitCode).toBeNull();
}, 120_000);

it("cuts a body that trickles in at its 10 s limit", async () => {
  const c = connect(Number(url.port), "127.0.0.1");
  c.on("error", () => undefined);
  await new Promise<void>((resolve) => c.once("connect", () => resolve()));
  const opened = performance.now();
  c.write(
    `POST /api/call HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nAuthorization: Bearer ${url.hash.replace(/^#key=/, "")}\r\nContent-Length: 1000\r\n\r\n`,
  );
  // One byte a second, never the whole body: the request can only end by the service's limit.
  const drip = setInterval(() => c.writable && c.write("["), 1000);
  let answer = "";
  c.setEncoding("utf8").on("data", (d: string) => (answer += d));
  await new Promise<void>((resolve) => c.once("close", () => resolve()));
  clearInterval(drip);
  const heldMs = performance.now() - opened;
  // Node checks timeouts every 30 s unless told otherwise: on the old service the request lived 30 s or more.
  expect(heldMs).toBeLessThan(20_000);
  expect(answer).toMatch(/^HTTP\/1\.1 4\d\d /);
  expect(serve.proc.exitCode).toBeNull();
}, 120_000);
