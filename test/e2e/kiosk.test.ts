/**
 * The kiosk in real Chromium (Debian's, driven by playwright-core) against a
 * real station service (`linesign serve --ui`) with a SoftHSM token and
 * simulated devices on socat ptys: an officer opens a signing session and a
 * work order; an operator starts the line and four devices reach confirmed
 * while a faulty one shows its reason; the operator cannot reach officer
 * functions even by calling the API; the officer verifies the log. Screenshots
 * of each screen go to test-artifacts/kiosk/.
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { launchChromium, signIn } from "../helpers/chromium.js";
import Database from "better-sqlite3";
import { devStation, type TestStation } from "../helpers/station.js";
import { cleanEnv, linesign } from "../helpers/cli.js";
import {
  exportChain,
  ptyPair,
  startProc,
  startSim,
  type Proc,
  type PtyPair,
} from "../helpers/serial.js";
import { fileURLToPath } from "node:url";
import type { LinesignApi } from "../../src/domain/kiosk-api.js";
import { csrPem, deviceKey, makeCsr } from "../../fixtures/csr-factory.js";

// What the page callbacks below touch, in the browser (this file is type-checked for Node).
declare const document: { querySelectorAll(selector: string): ArrayLike<unknown> };
declare const window: { linesign?: LinesignApi };

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/kiosk", import.meta.url));
const PIN = "246810"; // the development token's user PIN (README)
const OPERATOR = { name: "op-anna", passphrase: "anna-runs-line-3" };
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };

describe("kiosk", () => {
  let st: TestStation;
  let serve: Proc;
  let url: string;
  let browser: Browser;
  const pairs: PtyPair[] = [];
  const sims: Proc[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    st = devStation();
    const add = st.run(["user", "add", "--name", OPERATOR.name, "--role", "operator"], {
      LINESIGN_NEW_PASSPHRASE: OPERATOR.passphrase,
    });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const { chain } = exportChain(st);
    for (let i = 1; i <= 5; i++) pairs.push(await ptyPair(st.hsm.dir, `k${i}`));
    // Four good devices and one whose request carries a bad signature.
    for (const [i, p] of pairs.entries())
      sims.push(
        startSim([
          "--port",
          p.device,
          "--device-id",
          `kiosk-dev-${i + 1}`,
          "--root",
          chain,
          "--store",
          join(st.hsm.dir, "devices"),
          "--answer-ms",
          "120000",
          ...(i === 4 ? ["--fault", "bad-signature"] : []),
        ]),
      );
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

  it("serves the page with its secret in the fragment only, and a strict policy", async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#key=[\w-]{40,}$/);
    const res = await fetch(url.replace(/#.*/, ""));
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(res.headers.get("content-security-policy")).toContain("connect-src 'self'");
    // Without the secret, nothing is answered.
    const api = await fetch(url.replace(/#.*/, "api/call"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: "auth.whoami", args: {} }),
    });
    expect(api.status).toBe(401);
  });

  it("draws the sign-in screen once, so a form being filled is never replaced; a refused sign-in says why", async () => {
    const page = await (await browser.newContext()).newPage();
    // Counts every sign-in form the page puts on screen, from before its own script runs.
    await page.addInitScript(() => {
      const g = globalThis as unknown as {
        loginForms: number;
        MutationObserver: new (f: (r: { addedNodes: ArrayLike<unknown> }[]) => void) => {
          observe(n: unknown, o: unknown): void;
        };
        document: unknown;
      };
      g.loginForms = 0;
      new g.MutationObserver((records) => {
        for (const r of records)
          for (const n of Array.from(r.addedNodes) as { querySelector?(s: string): unknown }[])
            if (n.querySelector?.("#login-name")) g.loginForms++;
      }).observe(g.document, { childList: true, subtree: true });
    });
    await expect(
      signIn(page, { name: OFFICER.name, passphrase: "not-the-passphrase" }, url),
    ).rejects.toThrow(
      "signing in as dev-officer was refused: ⚠ Sign-in failed What to do: Check your name and passphrase",
    );
    expect(
      await page.evaluate(() => (globalThis as unknown as { loginForms: number }).loginForms),
    ).toBe(1);
    await page.close();
  });

  it("an officer opens a signing session and a work order; an operator provisions; a failure is explained", async () => {
    const officer = await (
      await browser.newContext({ viewport: { width: 1280, height: 860 } })
    ).newPage();
    await signIn(officer, OFFICER, url);
    await officer.click("nav >> text=Signing session");
    await officer.waitForSelector('[data-session="closed"]');
    await officer.fill("#pin", PIN);
    await officer.click("text=Open signing session");
    const open = await officer.waitForSelector('[data-session="open"]');
    expect(await open.textContent()).toContain("Open, by dev-officer");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-session.png") });

    await officer.click("nav >> text=Work orders");
    await officer.fill("#wo-id", "wo-kiosk");
    await officer.fill("#wo-quantity", "10");
    await officer.click("text=Create work order");
    await officer.waitForSelector("td >> text=wo-kiosk");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-work-orders.png") });

    // One kiosk screen: the officer hands over, the session stays open, the operator signs in.
    await officer.click("text=Hand over");
    await officer.waitForSelector("#login-name");
    const operator = officer;
    // By keyboard alone: the name field has the focus, Tab to the passphrase, Enter signs in.
    await operator.keyboard.type(OPERATOR.name);
    await operator.keyboard.press("Tab");
    await operator.keyboard.type(OPERATOR.passphrase);
    await operator.keyboard.press("Enter");
    await operator.waitForSelector(`text=${OPERATOR.name} (`);
    await operator.waitForSelector("text=Signing session open (dev-officer)");
    // Operators have no officer screens: their line and the shift's figures.
    expect(await operator.locator("nav button").allTextContents()).toEqual(["Line", "Shift"]);
    await operator.waitForSelector("text=Start line: wo-kiosk");
    await operator.screenshot({ path: join(ARTIFACTS, "operator-choose.png") });
    await operator.click("text=Start line: wo-kiosk");
    await operator.waitForFunction(
      () => document.querySelectorAll('.tile [data-state="confirmed"]').length === 4,
      null,
      { timeout: 90_000 },
    );
    const failed = await operator.waitForSelector(".tile.has-failure", { timeout: 30_000 });
    expect(await failed.getAttribute("data-port")).toBe(pairs[4]!.station);
    expect(await failed.textContent()).toContain("The device's request was refused");
    expect(await failed.textContent()).toContain("Set the device aside");
    expect(await operator.textContent('[data-count="shift-confirmed"]')).toBe("4");
    expect(await operator.textContent('[data-count="issued"]')).toBe("4 / 10");
    await operator.screenshot({ path: join(ARTIFACTS, "operator-line.png"), fullPage: true });

    // The failure stays until acknowledged, by keyboard as by touch.
    await operator.focus("button.ack");
    await operator.keyboard.press("Enter");
    await operator.waitForSelector(".tile.has-failure", { state: "detached" });

    // What the devices stored is what the station recorded, under the work order and operator.
    const db = new Database(join(st.home, "station.db"), { readonly: true });
    const rows = db
      .prepare("SELECT device_id, state, operator, work_order FROM issuances ORDER BY device_id")
      .all() as { device_id: string; state: string; operator: string; work_order: string }[];
    db.close();
    expect(rows).toEqual(
      [1, 2, 3, 4].map((i) => ({
        device_id: `kiosk-dev-${i}`,
        state: "CONFIRMED",
        operator: OPERATOR.name,
        work_order: "wo-kiosk",
      })),
    );
    const stored = readdirSync(join(st.hsm.dir, "devices")).filter((f) => f.endsWith(".pem"));
    expect(stored.length).toBeGreaterThanOrEqual(4);

    // The page reaches nothing but the service: other addresses are blocked by its policy.
    const reach = await operator.evaluate(async () => {
      const g = globalThis as unknown as {
        addEventListener(t: string, f: (e: { violatedDirective: string }) => void): void;
        fetch(u: string): Promise<unknown>;
        require?: unknown;
        process?: unknown;
      };
      const violated: string[] = [];
      g.addEventListener("securitypolicyviolation", (e) => violated.push(e.violatedDirective));
      const fetched = await g.fetch("http://127.0.0.1:9/steal").then(
        () => "answered",
        () => "blocked",
      );
      await new Promise((r) => setTimeout(r, 0));
      return {
        fetched,
        violated: [...new Set(violated)],
        node: typeof g.require + typeof g.process,
      };
    });
    expect(reach).toEqual({
      fetched: "blocked",
      violated: ["connect-src"],
      node: "undefinedundefined",
    });

    // An operator cannot reach officer functions, even by calling the API directly.
    const direct = await operator.evaluate(async () => ({
      close: await window.linesign!["signing.close"]({}),
      revoke: await window.linesign!["revocation.revoke"]({
        serial: "00",
        reason: "keyCompromise",
      }),
      malformed: await window.linesign!["line.acknowledge"]({ port: 5 } as never),
    }));
    expect(direct.close).toMatchObject({
      ok: false,
      error: {
        code: "ROLE_FORBIDDEN",
        message: '"close the signing session" needs the officer role; op-anna is an operator.',
      },
    });
    expect(direct.revoke).toMatchObject({ ok: false, error: { code: "ROLE_FORBIDDEN" } });
    expect(direct.malformed).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    const refused = st
      .events()
      .filter((e) => e.action === "api.refused" && e.actor === OPERATOR.name);
    expect(refused.map((e) => [e.subject, e.code])).toEqual([
      ["signing.close", "ROLE_FORBIDDEN"],
      ["revocation.revoke", "ROLE_FORBIDDEN"],
      ["line.acknowledge", "API_REQUEST_INVALID"],
    ]);
    // The hand-over signed the officer out and left the session to the line.
    const handover = st
      .events()
      .find((e) => e.action === "user.logout" && e.actor === "dev-officer");
    expect(JSON.parse(handover!.details)).toMatchObject({ via: "kiosk", reason: "handover" });
    expect(st.events().some((e) => e.action === "signing.close" && e.seq > handover!.seq)).toBe(
      false,
    );
    expect(st.events().find((e) => e.action === "line.acknowledge")).toMatchObject({
      actor: OPERATOR.name,
      subject: pairs[4]!.station,
    });

    // The officer comes back, verifies the log and sees the counts.
    await operator.click("text=Sign out");
    await signIn(officer, OFFICER, url);
    await officer.click("nav >> text=Audit");
    await officer.click("text=Verify now");
    const verdict = await officer.waitForSelector("[data-verdict]");
    expect(await verdict.getAttribute("data-verdict")).toBe("intact");
    expect(await officer.textContent('[data-count="issued"]')).toBe("4");
    expect(await officer.textContent('[data-count="confirmed"]')).toBe("4");
    expect(Number(await officer.textContent('[data-count="rejected"]'))).toBeGreaterThanOrEqual(1);
    await officer.waitForSelector("td >> text=CSR_SIGNATURE_INVALID");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-audit.png"), fullPage: true });

    // The export downloads a bundle that checks out on its own, with no token and no station.
    const [download] = await Promise.all([
      officer.waitForEvent("download"),
      officer.click("text=Export audit bundle"),
    ]);
    const bundle = join(st.hsm.dir, download.suggestedFilename());
    await download.saveAs(bundle);
    const verified = linesign(
      ["--json", "audit", "verify", "--bundle", bundle],
      cleanEnv({ HOME: st.hsm.dir, LINESIGN_HOME: join(st.hsm.dir, "nowhere") }),
    );
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.json).toMatchObject({ ok: true, counts: { issued: 4, confirmed: 4 } });

    // CAs, targets, and a revocation from the officer's screens.
    await officer.click("nav >> text=CAs");
    await officer.waitForSelector("td >> text=dev-ica");
    expect(await officer.textContent("tr:has([data-ca='dev-ica']) .status")).toBe("active");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-cas.png") });
    await officer.click("nav >> text=Targets");
    await officer.waitForSelector("text=AWS IoT targets");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-targets.png") });
    await officer.click("nav >> text=Revoke");
    await officer.fill("#rv-device", "kiosk-dev-1");
    await officer.selectOption("#rv-reason", "keyCompromise");
    await officer.click("#revoke-form button[type=submit]");
    // The confirmation names the device and its serial before anything changes.
    const confirm = await officer.waitForSelector("[role=alertdialog]");
    expect(await confirm.textContent()).toContain("kiosk-dev-1");
    await officer.click("[data-focus=rv-confirm]");
    await officer.waitForSelector("text=Revoked:");
    expect(await officer.textContent("[data-crl]")).toContain("number 1 of dev-ica");
    await officer.fill("#ri-device", "kiosk-dev-2");
    await officer.fill("#ri-reason", "board replaced at rework");
    await officer.click("#reissue-form button[type=submit]");
    await officer.waitForSelector("text=Approved: the next certificate for kiosk-dev-2");
    await officer.screenshot({ path: join(ARTIFACTS, "officer-revoke.png") });
    const revoked = new Database(join(st.home, "station.db"), { readonly: true });
    expect(
      revoked.prepare("SELECT state FROM issuances WHERE device_id = 'kiosk-dev-1'").get(),
    ).toEqual({ state: "REVOKED" });
    revoked.close();

    // The PIN was typed once, into the officer's screen: it is nowhere the station keeps anything.
    const pin = Buffer.from(PIN);
    for (const f of readdirSync(st.home).filter((f) => f.startsWith("station.db")))
      expect(readFileSync(join(st.home, f)).includes(pin), f).toBe(false);
    for (const f of readdirSync(join(st.home, "logs")))
      expect(readFileSync(join(st.home, "logs", f), "utf8")).not.toContain(PIN);
    expect(st.events().some((e) => `${e.message} ${e.details}`.includes(PIN))).toBe(false);
    expect(readFileSync(`/proc/${serve.proc.pid}/cmdline`, "utf8")).not.toContain(PIN);
    expect(readFileSync(`/proc/${serve.proc.pid}/environ`, "utf8")).not.toContain(PIN);
    expect(serve.lines.text + serve.stderr()).not.toContain(PIN);
  });

  it("draws the shift's figures from the log, within the page's policy, for officers and operators", async () => {
    // What the log says the line did (the devices above): the figures the screen must show.
    const sessions = st.events().filter((e) => e.action === "line.session");
    const confirmed = sessions.filter((e) => e.outcome === "ok").length;
    const failed = sessions
      .filter((e) => e.outcome !== "ok")
      .reduce((n, e) => n + ((JSON.parse(e.details) as { repeated?: number }).repeated ?? 1), 0);
    const firsts = new Map<string, string>();
    for (const e of sessions)
      if (e.subject && !firsts.has(e.subject)) firsts.set(e.subject, e.outcome);
    const firstPass = [...firsts.values()].filter((o) => o === "ok").length;
    expect([confirmed, firsts.size, firstPass]).toEqual([4, 5, 4]);
    expect(failed).toBeGreaterThanOrEqual(1);

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Every refusal of the page's policy, from before its own script runs.
    await context.addInitScript(() => {
      const g = globalThis as unknown as {
        violations: string[];
        addEventListener(t: string, f: (e: { violatedDirective: string }) => void): void;
      };
      g.violations = [];
      g.addEventListener("securitypolicyviolation", (e) => g.violations.push(e.violatedDirective));
    });
    const page = await context.newPage();
    await signIn(page, OFFICER, url);
    await page.click("nav >> text=Shift");
    // Bars in the confirmed colour on the per-hour chart: the chart was drawn, not just its box.
    const painted = (chart: string) =>
      page.evaluate((key) => {
        const g = globalThis as unknown as {
          document: { querySelector(s: string): unknown };
        };
        const c = g.document.querySelector(`[data-chart="${key}"]`) as {
          width: number;
          height: number;
          getContext(k: "2d"): {
            getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
          };
        } | null;
        if (!c || c.width === 0) return { ok: 0, bad: 0 };
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let ok = 0;
        let bad = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] === 0x0b && d[i + 1] === 0x6b && d[i + 2] === 0x2e) ok++;
          if (d[i] === 0xa4 && d[i + 1] === 0x00 && d[i + 2] === 0x0f) bad++;
        }
        return { ok, bad };
      }, chart);
    await page.waitForSelector('[data-chart="per-hour"]');
    await page.waitForFunction(() => {
      const g = globalThis as unknown as {
        document: { querySelector(s: string): { width: number } | null };
      };
      return (g.document.querySelector('[data-chart="ports"]')?.width ?? 0) > 0;
    });
    const perHour = await painted("per-hour");
    expect(perHour.ok).toBeGreaterThan(100);
    expect(perHour.bad).toBeGreaterThan(10);
    expect((await painted("reasons")).bad).toBeGreaterThan(10);
    expect((await painted("ports")).ok).toBeGreaterThan(100);
    expect(await page.textContent('[data-figure="confirmed"]')).toBe(String(confirmed));
    expect(await page.textContent('[data-figure="failed"]')).toBe(String(failed));
    expect(await page.textContent('[data-figure="first-pass"]')).toBe(
      `${Math.round((firstPass / firsts.size) * 100)}% (${firstPass} of ${firsts.size} devices)`,
    );
    // Per port and by reason, in words and the code for an officer.
    const badPort = page.locator(`tr:has([data-port="${pairs[4]!.station}"]) td`);
    expect(await badPort.allTextContents()).toEqual([
      pairs[4]!.station,
      "0",
      String(failed),
      "0% (0 of 1)",
    ]);
    expect(await page.textContent('[data-reason="CSR_SIGNATURE_INVALID"]')).toContain(
      "(CSR_SIGNATURE_INVALID)",
    );
    // The work order's progress toward its quantity (one device revoked since: 3 still confirmed).
    expect(await page.textContent('[data-progress="wo-kiosk"]')).toBe(
      "4 / 10 issued, 3 confirmed (4 in this window)",
    );
    expect(await page.getAttribute('[data-work-order="wo-kiosk"] progress', "value")).toBe("4");
    // Times as everywhere in the kiosk: ISO 8601 date, 24-hour clock.
    expect(await page.textContent('[data-shift="window"]')).toMatch(
      /^From \d{4}-\d{2}-\d{2} \d{2}:\d{2} to \d{4}-\d{2}-\d{2} \d{2}:\d{2}$/,
    );
    await page.screenshot({ path: join(ARTIFACTS, "screen-shift-1280x800.png"), fullPage: true });
    await page.setViewportSize({ width: 1024, height: 768 });
    await page.click("text=Refresh");
    await page.waitForFunction(() => {
      const g = globalThis as unknown as {
        document: { querySelector(s: string): { width: number } | null };
      };
      const w = g.document.querySelector('[data-chart="per-hour"]')?.width ?? 2000;
      return w > 0 && w < 1000;
    });
    expect((await painted("per-hour")).ok).toBeGreaterThan(100);
    await page.screenshot({ path: join(ARTIFACTS, "screen-shift-1024x768.png"), fullPage: true });
    // A window that is not a time is refused by the page before anything is asked.
    await page.fill("#shift-from", "yesterday");
    await page.click("[data-focus=shift-show]");
    await page.waitForSelector("text=Write times as year-month-day hour:minute");

    // An operator reads the same figures; the reason in words, never its code.
    await page.click("text=Sign out");
    await signIn(page, OPERATOR);
    await page.click("nav >> text=Shift");
    await page.waitForSelector('[data-chart="reasons"]');
    expect(await page.textContent('[data-figure="confirmed"]')).toBe(String(confirmed));
    const reason = (await page.textContent('[data-reason="CSR_SIGNATURE_INVALID"]'))!;
    expect(reason).not.toContain("CSR_SIGNATURE_INVALID");
    expect(reason.length).toBeGreaterThan(5);
    expect(
      await page.evaluate(() => (globalThis as unknown as { violations: string[] }).violations),
    ).toEqual([]);
    await context.close();
  });

  it("prints the same figures as a self-contained shift report, every string from the log escaped", () => {
    // A device whose id is markup (a profile that takes any id), its certificate written to a file
    // whose name is markup: both are in the log, and the report lists the certificate as unconfirmed.
    const hostile = "<script>alert(1)</script>";
    const profile = st.file(
      "open-ids.json",
      JSON.stringify({ ca: "dev-ica", deviceIdRule: "^.{1,64}$" }),
    );
    const created = st.run([
      "profile",
      "create",
      "--name",
      "open-ids",
      "--file",
      profile,
      "--json",
    ]);
    expect(created.code, created.stdout + created.stderr).toBe(0);
    const csr = st.file(
      "odd.csr",
      csrPem(makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", hostile]] })),
    );
    const cert = join(st.hsm.dir, "odd<i>.pem");
    const issued = st.run([
      "issue",
      "--csr",
      csr,
      "--profile",
      "open-ids",
      "--out",
      cert,
      "--json",
    ]);
    expect(issued.code, issued.stdout + issued.stderr).toBe(0);

    const out = join(st.hsm.dir, "shift-report.html");
    const r = st.run(["audit", "report", "--format", "html", "--out", out, "--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, out });
    const page = readFileSync(out, "utf8");
    // The report's text as a reader sees it (markup and layout whitespace left out).
    const text = page
      .replace(/<style>[^]*?<\/style>/, "")
      .replace(/<[^>]*>/g, " ")
      .replace(/\s+/g, " ");
    const figure = (key: string) =>
      new RegExp(`data-figure="${key}"\\s*>([^<]*)<`).exec(page)?.[1]?.trim();
    const sessions = st.events().filter((e) => e.action === "line.session");
    const failed = sessions
      .filter((e) => e.outcome !== "ok")
      .reduce((n, e) => n + ((JSON.parse(e.details) as { repeated?: number }).repeated ?? 1), 0);
    // The figures the kiosk showed, from the same log.
    expect([figure("confirmed"), figure("failed"), figure("first-pass")]).toEqual([
      "4",
      String(failed),
      "80% (4 of 5 devices)",
    ]);
    expect(text).toContain(
      ` ${pairs[4]!.station} 0 ${failed} 0% (0 of 1) CSR_SIGNATURE_INVALID ${failed} `,
    );
    expect(text).toContain(" wo-kiosk open 10 4 3 4 ");
    // The rejected requests, one by one.
    expect(text).toContain(
      ` kiosk-dev-5 The device&#39;s request was refused CSR_SIGNATURE_INVALID serial:${pairs[4]!.station} wo-kiosk op-anna `,
    );
    expect(page.match(/<svg\b/g)!.length).toBeGreaterThan(5);
    // Escaped wherever the log's strings go; no script, nothing fetched.
    expect(text).toContain(` &lt;script&gt;alert(1)&lt;/script&gt; `);
    expect(text).toContain(`file:${st.hsm.dir}/odd&lt;i&gt;.pem`);
    expect(page).not.toContain(hostile);
    expect(page).not.toContain("<i>");
    expect(page).not.toMatch(/<script|<link|<img|<iframe|\ssrc=|\shref=|url\(|@import|https?:/i);
    expect(page).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
  });
});
