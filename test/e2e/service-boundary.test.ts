/**
 * The station service's transports against hostile requests, through a real
 * `linesign serve --ui` process: request lines that are no URL, clients that
 * hang up mid-body, chunked bodies and Content-Lengths that never end, a
 * 10,000-deep channel, invalid UTF-8, then a bounded fuzz run of both
 * transports. The service must answer each with a 4xx (or close), record a
 * refusal, never exit, and still answer a good call after.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { devStation, type TestStation } from "../helpers/station.js";
import { startProc, type Proc } from "../helpers/serial.js";
import { fuzzTransports, goodCall, sendCase, type Target } from "../../fixtures/transport-fuzz.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));

describe("station service boundary", () => {
  let st: TestStation;
  let serve: Proc;
  let unix: Target;
  let loop: Target;
  let host: string;
  let alive = true;

  beforeAll(async () => {
    st = devStation();
    serve = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--port", "/dev/null"],
      st.env,
    );
    void serve.exited.then(() => (alive = false));
    const l = await serve.lines.waitFor((e) => e.event === "listening", "the service");
    const u = new URL(String(l.url));
    host = u.host;
    unix = { socketPath: String(l.socket) };
    loop = { port: Number(u.port), secret: u.hash.replace(/^#key=/, "") };
  });

  afterAll(async () => {
    if (alive) serve.proc.kill("SIGINT");
    await serve.exited;
  });

  const raw = (t: Target, text: string, o: { hold?: boolean; hangUp?: boolean } = {}) =>
    sendCase(t, { name: "raw", bytes: Buffer.from(text), ...o }, 500);

  it("answers request lines that are no URL with a 4xx and stays up", async () => {
    for (const target of ["//[", "http://[/", "//a:b/", "/%ZZ", "http://127.0.0.1:1/x"]) {
      const r = await raw(
        loop,
        `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      expect(r.status, target).toBeGreaterThanOrEqual(400);
      expect(r.status, target).toBeLessThan(500);
      expect(alive, `alive after GET ${target}`).toBe(true);
    }
    expect(await goodCall(loop, host)).toBe(true);
  });

  it("survives hang-ups, endless bodies and a 10,000-deep channel on both transports", async () => {
    for (const t of [unix, loop]) {
      const auth = t.secret ? `Authorization: Bearer ${t.secret}\r\n` : "";
      const head = `POST /api/call HTTP/1.1\r\nHost: ${host}\r\n${auth}Content-Type: application/json\r\n`;
      // The client hangs up half-way through its body.
      await raw(t, `${head}Content-Length: 1000\r\n\r\n{"channel":"auth.`, { hangUp: true });
      // A chunked body that never ends, and a Content-Length that never arrives (held open).
      await raw(t, `${head}Transfer-Encoding: chunked\r\n\r\n5\r\n{"cha\r\n`, { hangUp: true });
      await raw(t, `${head}Content-Length: 50\r\n\r\n{"channel"`, { hangUp: true });
      // A channel nested 10,000 deep.
      const deep = `{"channel":${"[".repeat(10_000)}${"]".repeat(10_000)},"args":{}}`;
      const r = await raw(
        t,
        `${head}Content-Length: ${deep.length}\r\nConnection: close\r\n\r\n${deep}`,
      );
      expect(r.status).toBe(200);
      // Invalid UTF-8 is refused, not decoded into replacement characters.
      const bad = Buffer.concat([
        Buffer.from(`${head}Content-Length: 9\r\nConnection: close\r\n\r\n`),
        Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]),
      ]);
      const u = await sendCase(t, { name: "utf8", bytes: bad }, 500);
      expect(u.status).toBe(400);
      expect(alive).toBe(true);
      expect(await goodCall(t, host)).toBe(true);
    }
  });

  it("answers a bounded fuzz run on both transports and serves a good call after", async () => {
    const report = await fuzzTransports(
      [
        { target: unix, host },
        { target: loop, host },
      ],
      { cases: 400, seed: 20261201, parallel: 8, holdMs: 200, checkEvery: 50 },
    );
    expect(report.failures).toEqual([]);
    expect(report.cases).toBe(400);
    expect(alive).toBe(true);
    // Most cases reach an answer, not only a closed connection.
    const answered = Object.entries(report.statuses)
      .filter(([k]) => k !== "closed")
      .reduce((n, [, v]) => n + v, 0);
    expect(answered).toBeGreaterThan(200);
  });

  it("stops cleanly afterwards, with the refusals in the log, aggregated", async () => {
    serve.proc.kill("SIGINT");
    const exit = await serve.exited;
    expect(exit.code, serve.stderr()).toBe(0);
    const refused = st.events().filter((e) => e.action === "api.refused");
    expect(refused.length).toBeGreaterThan(0);
    // Hundreds of refusals, a bounded number of entries: repeats are counted, not written.
    expect(refused.length).toBeLessThan(200);
    expect(refused.some((e) => (JSON.parse(e.details) as { repeated?: number }).repeated)).toBe(
      true,
    );
    const v = st.run(["audit", "verify", "--json"]);
    expect(v.code, v.stdout).toBe(0);
  });
});
