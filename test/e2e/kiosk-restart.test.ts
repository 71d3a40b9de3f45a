/**
 * The kiosk across a restart of the station service, in real Chromium against
 * `linesign serve --ui` on a fixed loopback port: the page that opened the
 * printed address is paired (an HttpOnly cookie holding the key kept in the
 * station home), so when the service stops it says so and reconnects by
 * itself once the service is back, with no reload, and asks the officer to
 * sign in again. A kiosk browser started later with the plain address (no
 * secret on its command line) reaches the service through the same pairing;
 * a browser that was never paired is refused.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { ptyPair, startProc, type Proc, type PtyPair } from "../helpers/serial.js";
import { launchChromium, signIn } from "../helpers/chromium.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };

describe("the kiosk across a service restart", () => {
  let st: TestStation;
  let pair: PtyPair;
  let browser: Browser;
  const procs: Proc[] = [];

  async function serve(httpPort: number): Promise<{ proc: Proc; url: string }> {
    const proc = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--http-port", String(httpPort), "--port", pair.station],
      st.env,
    );
    procs.push(proc);
    const listening = await proc.lines.waitFor((e) => e.event === "listening", "the service");
    return { proc, url: String(listening.url) };
  }

  beforeAll(async () => {
    st = devStation();
    pair = await ptyPair(st.hsm.dir, "r1");
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    for (const p of procs) p.proc.kill("SIGKILL");
    await pair?.kill();
  });

  it("reconnects by itself after a restart, and a paired kiosk needs no secret on its command line", async () => {
    const first = await serve(0);
    const port = Number(new URL(first.url).port);
    const plain = `http://127.0.0.1:${port}/`;
    const kiosk = await browser.newContext();
    const page = await kiosk.newPage();
    await signIn(page, OFFICER, first.url);
    // The pairing: a cookie the page's scripts cannot read, with the key kept in the home (0600).
    const key = readFileSync(join(st.home, "run", "kiosk.key"), "utf8").trim();
    expect(statSync(join(st.home, "run", "kiosk.key")).mode & 0o777).toBe(0o600);
    const [pairing] = await kiosk.cookies();
    expect(pairing).toMatchObject({
      name: "linesign-kiosk",
      value: key,
      httpOnly: true,
      sameSite: "Strict",
    });
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { document: { cookie: string } }).document.cookie,
      ),
    ).toBe("");

    // The service stops: the page says so, and keeps asking.
    first.proc.proc.kill("SIGINT");
    await first.proc.exited;
    const waiting = await page.waitForSelector('[data-reconnect="waiting"]', { timeout: 30_000 });
    expect(await waiting.textContent()).toContain("reconnects by itself");

    // The service is back on the same address with a new per-start secret: no reload, a sign-in.
    const second = await serve(port);
    expect(second.url).not.toBe(first.url);
    const notice = await page.waitForSelector('[data-notice="restarted"]', { timeout: 30_000 });
    expect(await notice.textContent()).toContain("sign in again");
    await signIn(page, OFFICER);
    expect(page.url()).toBe(plain);

    // A kiosk browser started with the plain address: paired, it signs in.
    const later = await kiosk.newPage();
    await signIn(later, OFFICER, plain);
    expect(readFileSync(`/proc/${second.proc.proc.pid}/cmdline`, "utf8")).not.toContain(key);

    // A browser that was never paired gets nothing from the plain address.
    const stranger = await (await browser.newContext()).newPage();
    await expect(signIn(stranger, OFFICER, plain)).rejects.toThrow("refused");
    const refused = await fetch(`${plain}api/call`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie: "linesign-kiosk=not-the-key" },
      body: JSON.stringify({ channel: "auth.whoami", args: {} }),
    });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      "not paired",
    );
  });
});
