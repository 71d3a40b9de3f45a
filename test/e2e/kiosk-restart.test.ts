/**
 * The kiosk across a restart of the station service, in real Chromium against
 * `linesign serve --ui` on a fixed loopback port, with a persistent profile
 * (a --user-data-dir read back afterwards) so that anything the browser kept
 * would be found. The page opens on a one-time ticket (as `linesign kiosk`
 * starts it) and is given the station's stable kiosk key into its memory
 * only; when the service stops it says so and reconnects by itself once the
 * service is back, with no reload, and asks the officer to sign in again.
 * The service never sends a cookie, and no file of the profile holds either
 * start's secret or the kiosk key. A browser that opens the plain address
 * holds nothing and is refused, pointed at `linesign kiosk`; deleting
 * <home>/run/kiosk.key ends the key's access at the next start.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type BrowserContext } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { ptyPair, startProc, type Proc, type PtyPair } from "../helpers/serial.js";
import { launchChromium, signIn } from "../helpers/chromium.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A ticket from the service's socket, as `linesign kiosk` asks for one. */
function mintTicket(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: "/api/kiosk-ticket", method: "POST" }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve((JSON.parse(text) as { result: { url: string } }).result.url));
    });
    req.on("error", reject);
    req.end();
  });
}

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
      args: ARGS,
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

    // Back on the same address with a new per-start secret: no reload, a sign-in with the key it holds.
    const second = await serve(port);
    expect(second.secret).not.toBe(first.secret);
    const notice = await page.waitForSelector('[data-notice="restarted"]', { timeout: 30_000 });
    expect(await notice.textContent()).toContain("sign in again");
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
    expect((await whoami({ authorization: `Bearer ${key}` })).status).toBe(200);
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
    expect((await whoami({ authorization: `Bearer ${key}` })).status).toBe(401);
  });
});
