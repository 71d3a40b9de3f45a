/**
 * The kiosk through a shift, in real Chromium against a real station service
 * (`linesign serve --ui`), a SoftHSM token and simulated devices on socat
 * ptys. The signing session's idle time is set short in station.json (the
 * shift's clock): an officer mistypes the PIN and is told the attempts left,
 * opens the session, creates a work order from the station's profiles and
 * hands over; the sign-in screen says a session waits; the operator runs the
 * line, a device whose transfer is damaged fails with one instruction, is
 * acknowledged and re-tried with no stale notice; the countdown shows before
 * the session's idle end; the line holds a device that arrives after it, and
 * signs it once an officer reopens the session. Then the officer's screens
 * (audit paging and lookup, revocation with its confirmation and result),
 * and screenshots of each screen at 1280x800 and 1024x768.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import {
  exportChain,
  ptyPair,
  startProc,
  startSim,
  type Proc,
  type PtyPair,
} from "../helpers/serial.js";
import { developerWord } from "../helpers/developer-words.js";
import { launchChromium, signIn } from "../helpers/chromium.js";

declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): ArrayLike<unknown>;
};

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/kiosk", import.meta.url));
const PIN = "246810";
const OPERATOR = { name: "op-berit", passphrase: "berit-runs-line-4" };
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };
const IDLE_SECONDS = 24;
const require = createRequire(import.meta.url);

describe("the kiosk through a shift", () => {
  let st: TestStation;
  let serve: Proc;
  let url: string;
  let browser: Browser;
  let chain: string;
  const pairs: PtyPair[] = [];
  const sims: Proc[] = [];
  const sim = (i: number, deviceId: string, extra: string[] = []) => {
    const p = startSim([
      "--port",
      pairs[i]!.device,
      "--device-id",
      deviceId,
      "--root",
      chain,
      "--store",
      join(st.hsm.dir, "devices"),
      "--answer-ms",
      "120000",
      ...extra,
    ]);
    sims.push(p);
    return p;
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    st = devStation();
    const add = st.run(["user", "add", "--name", OPERATOR.name, "--role", "operator"], {
      LINESIGN_NEW_PASSPHRASE: OPERATOR.passphrase,
    });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const cfgPath = join(st.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
    cfg.sessions = { signingIdleSeconds: IDLE_SECONDS, loginIdleSeconds: 3600 };
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    ({ chain } = exportChain(st));
    for (let i = 1; i <= 3; i++) pairs.push(await ptyPair(st.hsm.dir, `s${i}`));
    serve = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", ...pairs.flatMap((p) => ["--port", p.station])],
      st.env,
    );
    const listening = await serve.lines.waitFor((e) => e.event === "listening", "the service");
    url = String(listening.url);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    serve?.proc.kill("SIGINT");
    await serve?.exited;
    for (const s of sims) s.proc.kill("SIGKILL");
    await Promise.all(pairs.map((p) => p.kill()));
  });

  it("walks a shift: PIN, hand-over, a failure re-tried, the idle warning, a held line, the officer's screens", async () => {
    const page = await (
      await browser.newContext({ viewport: { width: 1280, height: 800 } })
    ).newPage();
    await page.goto(url);
    await page.waitForSelector('[data-welcome="no-session"]');

    // A wrong PIN says how many attempts are left; the right one opens the session.
    await signIn(page, OFFICER);
    await page.click("nav >> text=Signing session");
    expect(await page.getAttribute("[data-pin-attempts]", "data-pin-attempts")).toBe("5");
    await page.fill("#pin", "999999");
    await page.click("text=Open signing session");
    await page.waitForSelector('[data-pin-attempts="4"]');
    expect(await page.textContent("[data-pin-attempts]")).toContain("4 attempts left");
    expect(await page.textContent(".alert")).toContain("The PIN was not accepted");
    await page.fill("#pin", PIN);
    await page.click("text=Open signing session");
    await page.waitForSelector('[data-session="open"]');
    // Times are ISO 8601 with a 24-hour clock.
    expect(await page.textContent('[data-session="open"]')).toMatch(
      /since \d{4}-\d\d-\d\d [0-2]\d:[0-5]\d:[0-5]\d/,
    );

    // The work order's profile is chosen from the station's own.
    await page.click("nav >> text=Work orders");
    await page.waitForSelector("#wo-profile option", { state: "attached" });
    const options = await page.$$eval("#wo-profile option", (os) =>
      os.map((o) => (o as unknown as { value: string }).value),
    );
    expect(options).toEqual(["default"]);
    await page.fill("#wo-id", "wo-shift");
    await page.fill("#wo-quantity", "20");
    await page.click("text=Create work order");
    await page.waitForSelector("td >> text=wo-shift");

    // Hand-over: the sign-in screen says a session is open and waiting.
    await page.click("text=Hand over");
    const welcome = await page.waitForSelector('[data-welcome="session-open"]');
    expect(await welcome.textContent()).toContain("opened by dev-officer");
    expect(await welcome.textContent()).toContain("waiting for an operator");
    await page.screenshot({ path: join(ARTIFACTS, "shift-handover-1280x800.png") });

    await signIn(page, OPERATOR);
    await page.click("text=Start line: wo-shift");
    await page.waitForSelector(".tiles");
    // A good device, and one whose certificate arrives damaged.
    sim(0, "shift-a");
    const damaged = sim(1, "shift-b", ["--fault", "wrong-hash"]);
    await page.waitForSelector(`.tile[data-port="${pairs[0]!.station}"] [data-state="confirmed"]`, {
      timeout: 60_000,
    });
    const failure = await page.waitForSelector(`.tile[data-port="${pairs[1]!.station}"] .failure`, {
      timeout: 60_000,
    });
    expect(await failure.getAttribute("data-code")).toBe("CONFIRMATION_MISMATCH");
    const words = (await failure.textContent()) ?? "";
    // One failure, one instruction, in the operator's words.
    expect(words.match(/What to do/g)).toHaveLength(1);
    expect(words).toContain("Plug the device in again");
    expect(words).not.toContain("set it aside, do not ship");
    expect(developerWord(words)).toBeNull();
    expect(await page.textContent("#announce")).toContain("failed");
    await page.screenshot({ path: join(ARTIFACTS, "shift-failure-1280x800.png") });
    await damaged.exited;

    // Acknowledged and re-tried: it gets through, and nothing stale is left.
    await page.click(`.tile[data-port="${pairs[1]!.station}"] button.ack`);
    await page.waitForSelector(".tile.has-failure", { state: "detached" });
    sim(1, "shift-b");
    await page.waitForSelector(`.tile[data-port="${pairs[1]!.station}"] [data-state="confirmed"]`, {
      timeout: 60_000,
    });
    expect(await page.locator(".failure").count()).toBe(0);
    expect(await page.textContent("#announce")).toBe("");
    expect(await page.textContent('[data-count="shift-confirmed"]')).toBe("2");

    // A fault of the station itself: another process holds the database. The line pauses and
    // says what is wrong and what to do, in the operator's words; the device is not failed.
    const holder = spawn(
      process.execPath,
      [
        "-e",
        `const D = require(${JSON.stringify(require.resolve("better-sqlite3"))});
         const db = new D(process.argv[1]); db.exec("BEGIN EXCLUSIVE");
         process.stdout.write("locked\\n");
         process.stdin.once("data", () => { db.exec("ROLLBACK"); db.close(); process.exit(0); });`,
        join(st.home, "station.db"),
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve) =>
      holder.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && resolve()),
    );
    sim(0, "shift-lock");
    const fault = await page.waitForSelector('[data-line="paused"][data-paused-by="station"]', {
      timeout: 60_000,
    });
    expect(await fault.getAttribute("data-code")).toBe("DB_LOCKED");
    const faultWords = (await fault.textContent()) ?? "";
    expect(faultWords).toContain("The station is busy");
    expect(faultWords).toContain("the line goes on by itself");
    expect(developerWord(faultWords)).toBeNull();
    await page.screenshot({ path: join(ARTIFACTS, "shift-station-fault-1280x800.png") });
    holder.stdin.write("go\n");
    await page.waitForFunction(
      () => document.querySelector('[data-count="shift-confirmed"]')?.textContent === "3",
      null,
      { timeout: 60_000 },
    );
    await page.waitForSelector('[data-line="paused"]', { state: "detached" });
    expect(await page.locator(".failure").count()).toBe(0);

    // No signing for a while: the countdown shows, then the session ends and the line holds.
    await page.waitForSelector('[data-countdown="signing"]', { timeout: IDLE_SECONDS * 1000 });
    expect(await page.textContent("#signing-strip")).toContain("Call an officer now");
    await page.screenshot({ path: join(ARTIFACTS, "shift-countdown-1280x800.png") });
    const held = await page.waitForSelector('[data-line="paused"][data-paused-by="signing"]', {
      timeout: IDLE_SECONDS * 1000,
    });
    expect(await held.getAttribute("data-code")).toBe("SIGNING_SESSION_REQUIRED");
    expect(await held.textContent()).toContain("Call an officer to reopen the signing session.");
    expect(developerWord((await held.textContent()) ?? "")).toBeNull();
    expect(await page.locator("#signing-strip .countdown").count()).toBe(0);

    // A device that arrives now waits on its port, ungreeted; it is not failed (had it been
    // greeted, it would have been refused for want of a session and the simulator would fail).
    const late = sim(2, "shift-c");
    await late.lines.waitFor((e) => e.event === "ready", "the late device's port");
    await page.waitForSelector(`.tile[data-port="${pairs[2]!.station}"] [data-state="waiting"]`);
    await page.screenshot({ path: join(ARTIFACTS, "shift-held-1280x800.png") });
    expect(await page.locator(".failure").count()).toBe(0);
    const ended = st.events().findLast((e) => e.action === "signing.close");
    expect(JSON.parse(ended!.details)).toMatchObject({ reason: "idle", kind: "kiosk" });
    const hold = st.events().find((e) => e.action === "line.hold" && e.subject === "signing");
    expect(hold?.code).toBe("SIGNING_SESSION_REQUIRED");

    // An officer reopens the session: the waiting device goes on and is signed.
    await page.click("text=Sign out");
    await signIn(page, OFFICER);
    await page.click("nav >> text=Signing session");
    await page.fill("#pin", PIN);
    await page.click("text=Open signing session");
    await page.waitForSelector('[data-session="open"]');
    expect(await page.locator("[data-pin-attempts]").count()).toBe(0);
    await page.click("nav >> text=Line");
    await page.waitForSelector(`.tile[data-port="${pairs[2]!.station}"] [data-state="confirmed"]`, {
      timeout: 60_000,
    });
    expect((await late.exited).code).toBe(0);
    const rejected = st
      .events()
      .filter((e) => e.subject === "shift-c" && e.outcome !== "ok")
      .map((e) => e.action);
    expect(rejected).toEqual([]);
    expect(st.events().some((e) => e.action === "line.release")).toBe(true);

    // The audit screen pages a long log and finds everything about one device.
    for (let i = 0; i < 12 && st.events().length <= 60; i++) {
      const v = st.run(["audit", "verify"]);
      expect(v.code, v.stdout + v.stderr).toBe(0);
    }
    await page.click("nav >> text=Audit");
    await page.waitForSelector('[data-page="1"]');
    const total = st.events().length;
    expect(total).toBeGreaterThan(50);
    expect(await page.locator("table[aria-label='Event log'] tbody tr").count()).toBe(50);
    await page.click("[data-focus=older]");
    await page.waitForSelector('[data-page="2"]');
    const firstOnPage2 = await page.textContent(
      "table[aria-label='Event log'] tbody tr:first-child td:first-child",
    );
    expect(Number(firstOnPage2)).toBeLessThanOrEqual(total - 50);
    await page.click("[data-focus=newer]");
    await page.waitForSelector('[data-page="1"]');
    await page.fill("#f-action", "issuance.");
    await page.click("form.filters button[type=submit]");
    await page.waitForFunction(
      () =>
        [...(document.querySelectorAll("table[aria-label='Event log'] tbody tr") as never as [])]
          .length > 0,
    );
    const actions = await page.$$eval(
      "table[aria-label='Event log'] tbody tr td:nth-child(4)",
      (tds) => tds.map((td) => (td as unknown as { textContent: string }).textContent),
    );
    expect(actions.every((a) => a.startsWith("issuance."))).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, "shift-audit-1280x800.png"), fullPage: true });
    await page.fill("#f-lookup", "shift-b");
    await page.click("#lookup-form button[type=submit]");
    await page.waitForSelector('[data-lookup="device shift-b"]');
    const certs = await page.$$eval(
      "table[aria-label='Certificates'] tbody tr td:nth-child(3)",
      (tds) => tds.map((td) => (td as unknown as { textContent: string }).textContent).sort(),
    );
    expect(certs).toEqual(["CONFIRMED", "DELIVERY_FAILED"]);
    expect(
      await page
        .locator("table[aria-label='Entries about it'] td:text-is('issuance.confirm')")
        .count(),
    ).toBeGreaterThanOrEqual(2);

    // Revocation: no reason is chosen for the officer, a confirmation names device and serial, then the result.
    await page.click("nav >> text=Revoke");
    expect(await page.inputValue("#rv-reason")).toBe("");
    await page.fill("#rv-device", "shift-a");
    await page.click("#revoke-form button[type=submit]");
    expect(await page.locator("[role=alertdialog]").count()).toBe(0); // the form asks for a reason first
    await page.selectOption("#rv-reason", "superseded");
    await page.click("#revoke-form button[type=submit]");
    const dialog = await page.waitForSelector("[role=alertdialog]");
    const serial = await page.textContent(
      "table[aria-label='Certificates to revoke'] tbody td:nth-child(2)",
    );
    expect(serial).toMatch(/^[0-9a-f]{16,}$/);
    expect(await dialog.textContent()).toContain("shift-a");
    expect(await page.textContent("[data-focus=rv-confirm]")).toBe(`Revoke ${serial} of shift-a`);
    await page.screenshot({ path: join(ARTIFACTS, "shift-revoke-confirm-1280x800.png") });
    await page.click("[data-focus=rv-confirm]");
    await page.waitForSelector(`[data-revoked="${serial}"]`);
    expect(await page.textContent("[data-crl]")).toContain("number 1 of dev-ica");
    expect(await page.textContent("[data-targets]")).toContain("No target had this certificate");
    const revoked = st.events().find((e) => e.action === "issuance.revoke" && e.outcome === "ok");
    expect(JSON.parse(revoked!.details)).toMatchObject({ serial, reason: "superseded" });
    await page.screenshot({ path: join(ARTIFACTS, "shift-revoke-done-1280x800.png") });
  }, 300_000);

  it("takes screenshots of each screen at 1280x800 and 1024x768", async () => {
    for (const [width, height] of [
      [1280, 800],
      [1024, 768],
    ] as const) {
      const size = `${width}x${height}`;
      const page = await (await browser.newContext({ viewport: { width, height } })).newPage();
      await page.goto(url);
      await page.waitForSelector("[data-welcome]");
      await page.screenshot({ path: join(ARTIFACTS, `screen-sign-in-${size}.png`) });
      await signIn(page, OFFICER);
      for (const [tab, ready] of [
        ["Line", ".tiles"],
        ["Signing session", "[data-session]"],
        ["Work orders", "td >> text=wo-shift"],
        ["CAs", "td >> text=dev-ica"],
        ["Targets", "text=AWS IoT targets"],
        ["Audit", '[data-page="1"]'],
        ["Revoke", "#revoke-form"],
      ] as const) {
        await page.click(`nav >> text=${tab}`);
        await page.waitForSelector(ready);
        const name = tab.toLowerCase().replace(/ /g, "-");
        await page.screenshot({ path: join(ARTIFACTS, `screen-${name}-${size}.png`) });
        // Nothing spills sideways at this size.
        expect(
          await page.evaluate(
            () =>
              (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } })
                .document.documentElement.scrollWidth,
          ),
          `${tab} at ${size}`,
        ).toBeLessThanOrEqual(width);
      }
      await page.click("text=Sign out");
      await signIn(page, OPERATOR);
      await page.waitForSelector(".tiles");
      await page.screenshot({ path: join(ARTIFACTS, `screen-operator-line-${size}.png`) });
      await page.context().close();
    }
  }, 180_000);
});
