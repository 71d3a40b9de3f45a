/**
 * Chromium's own kiosk mode without the service's secret on any command line
 * or in any browser profile, against a real `linesign serve --ui` and the
 * machine's Chromium: `linesign kiosk` starts it on a one-time ticket that the
 * page spends at once; every process's /proc/PID/cmdline and every file of
 * the profile are searched for the secret and the kiosk key; a ticket read afterwards gets
 * nothing; stopping the launcher removes the profile. A page opened with a
 * ticket (playwright-core) signs in and works, and its address keeps nothing.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { startProc, type Proc } from "../helpers/serial.js";
import { mintTicket } from "../helpers/chromium.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };
const HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"];

/** Every file under `dir`, as bytes (Chromium may be writing: files that vanish are skipped). */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const f of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    try {
      const p = join(dir, f);
      if (statSync(p).isFile()) out.push({ path: f, bytes: readFileSync(p) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Every process's command line, as bytes. */
function commandLines(): Buffer[] {
  const out: Buffer[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      out.push(readFileSync(`/proc/${pid}/cmdline`));
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

describe("the Chromium kiosk start", () => {
  let st: TestStation;
  let serve: Proc;
  let secret: string;
  let origin: string;
  let socket: string;

  beforeAll(async () => {
    st = devStation();
    serve = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--port", "/dev/null"],
      st.env,
    );
    const l = await serve.lines.waitFor((e) => e.event === "listening", "the service");
    const u = new URL(String(l.url));
    secret = u.hash.replace(/^#key=/, "");
    origin = u.origin;
    socket = String(l.socket);
  });
  afterAll(async () => {
    if (serve.proc.exitCode === null) serve.proc.kill("SIGINT");
    await serve.exited;
  });

  const redeem = (ticket: string) =>
    fetch(`${origin}/api/kiosk-redeem`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ticket }),
    });

  it("starts Chromium with no secret on any command line or in its profile, on a ticket spent at once", async () => {
    const kiosk = startProc(
      process.execPath,
      [
        BIN,
        "--json",
        "kiosk",
        "--browser",
        "/usr/bin/chromium",
        ...HEADLESS.map((a) => `--browser-arg=${a}`),
      ],
      st.env,
    );
    await kiosk.lines.waitFor((e) => e.event === "kiosk", "the launcher");
    await serve.lines.waitFor((e) => e.event === "kiosk.opened", "the page spending its ticket");
    for (const cmd of commandLines()) expect(cmd.includes(secret)).toBe(false);
    const run = join(st.home, "run");
    const profiles = readdirSync(run).filter((f) => f.startsWith("chromium-"));
    expect(profiles).toHaveLength(1);
    const profile = join(run, profiles[0]!);
    expect((statSync(profile).mode & 0o777).toString(8)).toBe("700");
    const start = readFileSync(join(profile, "start.html"), "utf8");
    const ticket = /#ticket=([A-Za-z0-9_-]{43})/.exec(start)![1]!;
    // Neither the ticket nor the secret is on a command line; Chromium's names only the start page.
    for (const cmd of commandLines()) expect(cmd.includes(ticket)).toBe(false);
    expect(commandLines().some((c) => c.includes(join(profile, "start.html")))).toBe(true);
    // The page holds the station's kiosk key in memory; neither it nor the secret is written.
    const key = readFileSync(join(run, "kiosk.key"), "utf8").trim();
    for (const f of filesUnder(profile)) {
      expect(f.bytes.includes(secret), f.path).toBe(false);
      expect(f.bytes.includes(key), f.path).toBe(false);
    }
    // Whoever reads the start page now holds a spent ticket.
    const late = await redeem(ticket);
    expect(late.status).toBe(401);
    expect(JSON.stringify(await late.json())).not.toContain(secret);
    kiosk.proc.kill("SIGTERM");
    expect((await kiosk.exited).code, kiosk.stderr()).toBe(0);
    expect(existsSync(profile)).toBe(false);
    expect(st.events().filter((e) => e.action === "kiosk.open")).toHaveLength(1);
  });

  it("a page opened on a ticket signs in and works, keeps nothing in its address, and the ticket works once", async () => {
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: HEADLESS });
    try {
      const url = await mintTicket(socket);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#ticket=/);
      expect(url).not.toContain(secret);
      const page = await browser.newPage();
      await page.goto(url);
      await page.fill("#login-name", OFFICER.name);
      await page.fill("#login-pass", OFFICER.passphrase);
      await page.click("button[type=submit]");
      await page.waitForSelector(`text=${OFFICER.name} (`);
      expect(page.url()).toBe(`${origin}/`);
      const ticket = new URL(url).hash.replace(/^#ticket=/, "");
      expect((await redeem(ticket)).status).toBe(401);
      // A ticket nobody minted, or none, gets nothing either.
      expect((await redeem("A".repeat(43))).status).toBe(401);
      expect((await redeem("")).status).toBe(401);
    } finally {
      await browser.close();
    }
  });
});
