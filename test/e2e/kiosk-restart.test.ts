/**
 * The kiosk across a restart of the station service, in real Chromium against
 * `linesign serve --ui` on a fixed loopback port, with a persistent profile
 * (a --user-data-dir read back afterwards) so that anything the browser kept
 * would be found. The page opens on a one-time ticket (as `linesign kiosk`
 * starts it) and is given the station's stable kiosk key into its memory
 * only; when the service stops it says so and reconnects by itself once the
 * service is back, with no reload, and asks the officer to sign in again.
 * While the service is away another account's listener takes the port: the
 * page asks it to prove the kiosk key, it cannot, and it records neither the
 * key nor the passphrase of the sign-in tried meanwhile (the screen says it
 * is not connected to the station).
 * The service never sends a cookie, and no file of the profile holds either
 * start's secret or the kiosk key. A browser that opens the plain address
 * holds nothing and is refused, pointed at `linesign kiosk`; deleting
 * <home>/run/kiosk.key ends the key's access at the next start.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createHmac } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type BrowserContext } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { ptyPair, startProc, type Proc, type PtyPair } from "../helpers/serial.js";
import { CHROMIUM_ARGS, launchChromium, mintTicket, signIn } from "../helpers/chromium.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };
/** The files under `dir` holding `secret` as UTF-8 or UTF-16 (how Chromium stores page strings). */
function filesHolding(dir: string, secret: string): string[] {
  const forms = [Buffer.from(secret, "utf8"), Buffer.from(secret, "utf16le")];
  const out: string[] = [];
  for (const f of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    const p = join(dir, f);
    if (!statSync(p).isFile()) continue;
    const bytes = readFileSync(p);
    if (forms.some((s) => bytes.includes(s))) out.push(f);
  }
  return out;
}

/**
 * Another local account's listener on the station's port while the service
 * is away: it records every byte it is sent and answers each request as the
 * station would (a challenge with a made-up proof, a call with "sign in").
 */
async function impostor(
  port: number,
): Promise<{ bytes: () => Buffer; close: () => Promise<void> }> {
  const got: Buffer[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on("error", () => undefined);
    socket.on("data", (d: Buffer) => {
      got.push(d);
      pending = Buffer.concat([pending, d]);
      for (;;) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = pending.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        pending = pending.subarray(end + 4 + length);
        const body = head.startsWith("POST /api/kiosk-hello")
          ? { ok: true, result: { nonce: "ab".repeat(32), proof: "cd".repeat(32) } }
          : { ok: false, error: { code: "AUTH_REQUIRED", message: "Sign in." } };
        const text = JSON.stringify(body);
        socket.write(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
        );
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    bytes: () => Buffer.concat(got),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

const hmacHex = (key: string, text: string) =>
  createHmac("sha256", Buffer.from(key, "utf8")).update(text).digest("hex");

describe("the kiosk across a service restart", () => {
  let st: TestStation;
  let pair: PtyPair;
  let profile: string;
  let kiosk: BrowserContext | null = null;
  const procs: Proc[] = [];

  async function serve(
    httpPort: number,
  ): Promise<{ proc: Proc; port: number; secret: string; socket: string }> {
    const proc = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--http-port", String(httpPort), "--port", pair.station],
      st.env,
    );
    procs.push(proc);
    const l = await proc.lines.waitFor((e) => e.event === "listening", "the service");
    const url = new URL(String(l.url));
    return {
      proc,
      port: Number(url.port),
      secret: url.hash.replace(/^#key=/, ""),
      socket: String(l.socket),
    };
  }
  async function stop(p: Proc): Promise<void> {
    p.proc.kill("SIGINT");
    await p.exited;
  }

  beforeAll(async () => {
    st = devStation();
    pair = await ptyPair(st.hsm.dir, "r1");
    profile = mkdtempSync(join(tmpdir(), "linesign-profile-"));
  });

  afterAll(async () => {
    await kiosk?.close();
    for (const p of procs) p.proc.kill("SIGKILL");
    await pair?.kill();
    rmSync(profile, { recursive: true, force: true });
  });

  it("reconnects by itself after a restart with the key in page memory only, and nothing in the profile", async () => {
    const first = await serve(0);
    const port = first.port;
    const plain = `http://127.0.0.1:${port}/`;
    kiosk = await chromium.launchPersistentContext(profile, {
      executablePath: "/usr/bin/chromium",
      args: CHROMIUM_ARGS,
    });
    // Every answer the browser is given, with its headers as sent (cookies included).
    const headers: Promise<Record<string, string>>[] = [];
    kiosk.on("response", (r) => headers.push(r.allHeaders()));
    const page = await kiosk.newPage();
    await signIn(page, OFFICER, await mintTicket(first.socket));
    const keyFile = join(st.home, "run", "kiosk.key");
    const key = readFileSync(keyFile, "utf8").trim();
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    // The service stops: the page says so, and keeps asking.
    await stop(first.proc);
    const waiting = await page.waitForSelector('[data-reconnect="waiting"]', { timeout: 30_000 });
    expect(await waiting.textContent()).toContain("reconnects by itself");

    // Another account takes the port first: the page asks it to prove the key, it cannot, and it
    // is sent neither the key nor the passphrase typed into the sign-in.
    const fake = await impostor(port);
    const notice = await page.waitForSelector('[data-notice="restarted"]', { timeout: 30_000 });
    expect(await notice.textContent()).toContain("sign in again");
    const refused = await signIn(page, OFFICER).then(
      () => "signed in",
      (e: Error) => e.message,
    );
    await fake.close();
    const sent = fake.bytes();
    for (const secret of [key, OFFICER.passphrase, first.secret]) {
      expect(sent.includes(Buffer.from(secret, "utf8"))).toBe(false);
      expect(sent.includes(Buffer.from(secret, "utf16le"))).toBe(false);
    }
    expect(sent.toString("latin1")).not.toContain("/api/call");
    expect(sent.toString("latin1")).toContain("POST /api/kiosk-hello");
    expect(refused).toContain("This screen is not connected to the station");

    // Back on the same address with a new per-start secret: no reload, a sign-in with the key it holds.
    const second = await serve(port);
    expect(second.secret).not.toBe(first.secret);
    await signIn(page, OFFICER);
    expect(page.url()).toBe(plain);
    // The browser was given nothing to keep: no cookie, no storage.
    expect(await kiosk.cookies()).toEqual([]);
    expect(
      await page.evaluate(() => {
        const w = globalThis as unknown as {
          document: { cookie: string };
          localStorage: { length: number };
          sessionStorage: { length: number };
        };
        return [w.document.cookie, w.localStorage.length, w.sessionStorage.length];
      }),
    ).toEqual(["", 0, 0]);
    await kiosk.close();
    kiosk = null;
    expect(headers.length).toBeGreaterThan(4);
    expect((await Promise.all(headers)).filter((h) => "set-cookie" in h)).toEqual([]);
    // Chromium has written its profile out: neither start's secret nor the kiosk key is in it.
    for (const secret of [first.secret, second.secret, key])
      expect(filesHolding(profile, secret)).toEqual([]);

    // A browser that opens the plain address holds nothing: refused, pointed at linesign kiosk.
    const browser = await launchChromium();
    try {
      const stranger = await browser.newPage();
      await expect(signIn(stranger, OFFICER, plain)).rejects.toThrow(
        "This screen is not connected to the station",
      );
    } finally {
      await browser.close();
    }
    const whoami = (auth: Record<string, string>) =>
      fetch(`${plain}api/call`, {
        method: "POST",
        headers: { "content-type": "application/json", ...auth },
        body: JSON.stringify({ channel: "auth.whoami", args: {} }),
      });
    const none = await whoami({});
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { message: string } }).error.message).toContain(
      '"linesign kiosk"',
    );
    expect((await whoami({ cookie: `linesign-kiosk=${key}` })).status).toBe(401);
    // The key is never a bearer: a call is signed under it over a nonce the service gave, once.
    expect((await whoami({ authorization: `Bearer ${key}` })).status).toBe(401);
    const signed = async (k: string, nonceOf?: string) => {
      const challenge = "0f".repeat(32);
      const hello = (await (
        await fetch(`${plain}api/kiosk-hello`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ challenge }),
        })
      ).json()) as { result: { nonce: string; proof: string } };
      const nonce = nonceOf ?? hello.result.nonce;
      const body = JSON.stringify({ channel: "auth.whoami", args: {} });
      const res = await fetch(`${plain}api/call`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-linesign-nonce": nonce,
          "x-linesign-mac": hmacHex(k, `linesign-kiosk-call\n${nonce}\n\n${body}`),
        },
        body,
      });
      return {
        status: res.status,
        nonce,
        proven: hello.result.proof === hmacHex(k, `linesign-kiosk-server\n${challenge}\n${nonce}`),
      };
    };
    const good = await signed(key);
    expect(good).toMatchObject({ status: 200, proven: true });
    expect((await signed(key, good.nonce)).status).toBe(401); // a replay
    expect((await signed(`${key}x`)).status).toBe(401);
    // The key is given only to a caller that holds this start's secret.
    const ask = (auth: Record<string, string>) =>
      fetch(`${plain}api/kiosk-key`, { method: "POST", headers: auth });
    expect((await ask({ authorization: `Bearer ${first.secret}` })).status).toBe(401);
    const given = await ask({ authorization: `Bearer ${second.secret}` });
    expect(given.headers.get("set-cookie")).toBeNull();
    expect(((await given.json()) as { result: { key: string } }).result.key).toBe(key);

    // Deleting kiosk.key ends that key's access at the next start.
    rmSync(keyFile);
    await stop(second.proc);
    await serve(port);
    expect(existsSync(keyFile)).toBe(true);
    expect(readFileSync(keyFile, "utf8").trim()).not.toBe(key);
    expect(await signed(key)).toMatchObject({ status: 401, proven: false });
  });
});
