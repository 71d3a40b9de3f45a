/**
 * Every refusal code the kiosk can receive, rendered by the kiosk page in
 * real Chromium (served by `linesign serve --ui`). The station cannot be made
 * to refuse with each of a hundred codes on demand, so the page's calls are
 * answered at the browser's network boundary with each code in turn and a
 * station message full of a developer's words; what the page shows is read
 * back. An operator (and a kiosk nobody has signed in to) sees the code's own
 * title and one next step, never an environment variable, a command, a path
 * or the code; an officer sees their own next step, with the message and code
 * (on three codes: the box is the same for all).
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { ptyPair, startProc, type Proc, type PtyPair } from "../helpers/serial.js";
import { launchChromium } from "../helpers/chromium.js";
import { developerWord } from "../helpers/developer-words.js";
import { ALL_KIOSK_CODES, refusalText } from "../../src/domain/operator-text.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const FALLBACK = refusalText("NO_SUCH_CODE_AT_ALL");
const MESSAGE = (code: string) =>
  `Set LINESIGN_USER_PIN, then run "linesign serve --ui" with /etc/linesign/station.json (${code}).`;

describe("every refusal code in the kiosk's words", () => {
  let st: TestStation;
  let pair: PtyPair;
  let serve: Proc;
  let url: string;
  let browser: Browser;

  beforeAll(async () => {
    st = devStation();
    pair = await ptyPair(st.hsm.dir, "w1");
    serve = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--port", pair.station],
      st.env,
    );
    url = String((await serve.lines.waitFor((e) => e.event === "listening", "the service")).url);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    serve?.proc.kill("SIGINT");
    await serve?.exited;
    await pair?.kill();
  });

  /**
   * The kiosk page with its calls answered at the network boundary: `who` for
   * whoami (null: the service's own answer), and a refusal with `code()` for
   * the sign-in, and for every other call when someone is signed in.
   */
  async function kiosk(
    who: { name: string; role: string } | null,
    code: () => string,
  ): Promise<Page> {
    const page = await (await browser.newContext()).newPage();
    await page.route("**/api/call", async (route) => {
      const { channel } = JSON.parse(route.request().postData() ?? "{}") as { channel: string };
      if (channel === "auth.whoami" && who)
        return route.fulfill({
          status: 200,
          contentType: "application/json",
          body: JSON.stringify({ ok: true, result: who }),
        });
      if (channel === "auth.login" || who) {
        const c = code();
        return route.fulfill({
          status: 200,
          contentType: "application/json",
          body: JSON.stringify({ ok: false, error: { code: c, message: MESSAGE(c) } }),
        });
      }
      return route.continue();
    });
    await page.goto(url);
    return page;
  }

  // The page makes SERVICE_UNREACHABLE itself and answers it by reconnecting (kiosk-restart.test.ts);
  // AUTH_REQUIRED on an officer's call takes the page back to the sign-in.
  const RECEIVED = ALL_KIOSK_CODES.filter((c) => c !== "SERVICE_UNREACHABLE");

  it("gives an operator every code's own words and no developer's words", async () => {
    let current = "";
    const page = await kiosk(null, () => current);
    await page.fill("#login-name", "op-anna");
    const bad: string[] = [];
    for (const code of RECEIVED) {
      current = code;
      await page.fill("#login-pass", "a passphrase");
      await page.click("button[type=submit]");
      const box = await page.waitForSelector(`.login [role=alert][data-code="${code}"]`);
      const text = (await box.innerText()).replace(/\s+/g, " ").trim();
      const words = refusalText(code);
      if (words.title === FALLBACK.title && words.action === FALLBACK.action)
        bad.push(`${code}: has no words of its own`);
      else if (!text.includes(words.title) || !text.includes(words.action))
        bad.push(`${code}: shows "${text}"`);
      else if (developerWord(text))
        bad.push(`${code}: shows "${developerWord(text)}" in "${text}"`);
    }
    expect(bad).toEqual([]);
    await page.close();
  });

  it("gives an officer their own next step, with the station's message and the code", async () => {
    let current = "";
    const page = await kiosk({ name: "dev-officer", role: "officer" }, () => current);
    const bad: string[] = [];
    // The same box for every code (the words are checked for all of them above and in
    // test/unit/domain/operator-text.test.ts): a device's, a station's and a person's refusal.
    for (const code of ["CSR_SIGNATURE_INVALID", "DB_FULL", "ROLE_FORBIDDEN"]) {
      current = code;
      // The Line screen asks the service again each time it is shown.
      await page.click("nav >> text=Line");
      const box = await page.waitForSelector(`.line [role=alert][data-code="${code}"]`);
      const text = (await box.innerText()).replace(/\s+/g, " ").trim();
      const words = refusalText(code);
      if (words.officer === FALLBACK.officer) bad.push(`${code}: no officer words of its own`);
      else if (!text.includes(words.officer) || !text.includes(MESSAGE(code)))
        bad.push(`${code}: shows "${text}"`);
    }
    expect(bad).toEqual([]);
    await page.close();
  });
});
