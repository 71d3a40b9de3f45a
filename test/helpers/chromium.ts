/** Chromium as the machine has it (Debian's), through playwright-core: no downloads, no background traffic. */
import { request } from "node:http";
import { chromium, type Browser, type Page } from "playwright-core";

/** The switches every test browser starts with (also for a persistent profile of a test's own). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
}

/** A kiosk ticket from the service's socket, as `linesign kiosk` asks for one: its address. */
export function mintTicket(socketPath: string): Promise<string> {
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

/**
 * Signs in on the kiosk's sign-in screen (already on screen, or reached by
 * `url`). A refused sign-in fails at once with the words the page shows,
 * so a failure says why instead of timing out.
 */
export async function signIn(
  page: Page,
  who: { name: string; passphrase: string },
  url?: string,
): Promise<void> {
  if (url) await page.goto(url);
  await page.waitForSelector("#login-name");
  await page.fill("#login-name", who.name);
  await page.fill("#login-pass", who.passphrase);
  await page.click("button[type=submit]");
  const outcome = await Promise.race([
    page.waitForSelector(`text=${who.name} (`).then(() => null),
    page
      .waitForSelector(".login [role=alert]")
      .then(async (alert) => (await alert.innerText()).replace(/\s+/g, " ").trim()),
  ]);
  if (outcome !== null) throw new Error(`signing in as ${who.name} was refused: ${outcome}`);
}
