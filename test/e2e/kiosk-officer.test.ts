/**
 * The officer's station from the kiosk, in real Chromium against a real
 * station service (`linesign serve --ui`) on a SoftHSM token: on the CAs
 * screen the roots and the profiles each CA issues for, a profile moved to
 * another intermediate, a CA deactivated and activated again, a CRL published
 * into the export folder (a removable medium's folder set in station.json);
 * on the Targets screen a bundle exported there and its signed receipt
 * imported back by name (an unsigned one refused in words); on the Audit
 * screen a backup into the backup folder. Each act is checked in the files
 * written, the log's rows and what the screen says; screenshots of the
 * screens at 1280x800 and 1024x768.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { devStation, type TestStation } from "../helpers/station.js";
import { startProc, type Proc } from "../helpers/serial.js";
import { launchChromium, signIn } from "../helpers/chromium.js";
import { receiptFor } from "../helpers/receipt.js";
import { newTmpfs, unmount } from "../helpers/mounts.js";
import { x509 } from "../../src/app/pki/x509.js";
import {
  BUNDLE_FORMAT,
  createUploaderIdentity,
  type UploaderIdentity,
} from "../../src/app/sync/bundle-format.js";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/kiosk", import.meta.url));
const PIN = "246810";
const OFFICER = { name: "dev-officer", passphrase: "linesign-dev-officer" };

describe("the officer's station in the kiosk", () => {
  let st: TestStation;
  let serve: Proc;
  let url: string;
  let browser: Browser;
  let media = "";
  let backups = "";
  let uploader: UploaderIdentity;
  const ok = (args: string[]) => {
    const r = st.run(args);
    expect(r.code, `${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
  };
  const last = (action: string) => st.events().findLast((e) => e.action === action)!;
  const shots = async (page: Page, name: string) => {
    for (const [width, height] of [
      [1280, 800],
      [1024, 768],
    ] as const) {
      await page.setViewportSize({ width, height });
      await page.screenshot({
        path: join(ARTIFACTS, `officer-${name}-${width}x${height}.png`),
        fullPage: true,
      });
      // Nothing spills sideways at this size.
      expect(
        await page.evaluate(
          () =>
            (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } })
              .document.documentElement.scrollWidth,
        ),
        `${name} at ${width}x${height}`,
      ).toBeLessThanOrEqual(width);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  };

  beforeAll(async () => {
    st = devStation();
    // The medium is a file system of its own (a tmpfs here), as a USB stick is.
    media = newTmpfs("16m", "linesign-media-");
    backups = mkdtempSync(join(tmpdir(), "linesign-backups-"));
    const cfgPath = join(st.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
    writeFileSync(
      cfgPath,
      JSON.stringify({ ...cfg, export: { dir: media }, backup: { dir: backups } }, null, 2),
    );
    // A second intermediate to move the profile to, a target, and an enrolled uploader.
    ok([
      "ca",
      "create",
      "--label",
      "ica-2",
      "--key",
      "ec-p256",
      "--subject",
      "CN=Kiosk Issuing CA 2",
      "--root",
      "dev-root",
    ]);
    ok([
      "target",
      "add",
      "--name",
      "plant-k",
      "--region",
      "eu-west-1",
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
    ]);
    uploader = await createUploaderIdentity("kiosk-uploader");
    ok([
      "uploader",
      "enroll",
      "--name",
      "kiosk-uploader",
      "--cert",
      st.file("up.pem", uploader.certPem),
    ]);
    serve = startProc(
      process.execPath,
      [BIN, "--json", "serve", "--ui", "--port", join(st.hsm.dir, "no-line")],
      st.env,
    );
    url = String((await serve.lines.waitFor((e) => e.event === "listening", "the service")).url);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    serve?.proc.kill("SIGINT");
    await serve?.exited;
    if (media) unmount(media);
  });

  it("moves a profile, deactivates and activates a CA, publishes a CRL, exports a bundle, imports its receipt and backs up, from the screen", async () => {
    const page = await (
      await browser.newContext({ viewport: { width: 1280, height: 800 } })
    ).newPage();
    await page.goto(url);
    await signIn(page, OFFICER);
    await page.click("nav >> text=Signing session");
    await page.fill("#pin", PIN);
    await page.click("text=Open signing session");
    await page.waitForSelector('[data-session="open"]');

    // Which CAs are roots, which profiles each issues for.
    await page.click("nav >> text=CAs");
    await page.waitForSelector('[data-ca="dev-root"]');
    const row = (label: string) =>
      page.locator("tr", { has: page.locator(`[data-ca="${label}"]`) });
    expect(await row("dev-root").textContent()).toContain("Root: signs CAs, never devices");
    expect(await page.textContent('[data-ca-used-by="dev-ica"]')).toBe("default");
    expect(await page.textContent('[data-ca-used-by="ica-2"]')).toBe("no profile");
    // A root is not offered as a CA to move a profile to.
    const offered = await page.$$eval("#rot-to option", (os) =>
      os.map((o) => (o as unknown as { value: string }).value).filter(Boolean),
    );
    expect(offered.sort()).toEqual(["dev-ica", "ica-2"]);

    // Deactivating a CA in use names its profile and offers only to stop it (a compromised CA).
    await page.click('[data-ca-act="deactivate dev-ica"]');
    const dialog = await page.waitForSelector("[role=alertdialog]");
    expect(await dialog.getAttribute("aria-labelledby")).toBe("ca-confirm-title");
    expect(await page.textContent("[data-used-by]")).toContain("It still issues for default");
    expect(await page.textContent("[data-focus=ca-stop]")).toBe(
      "Deactivate dev-ica and stop default",
    );
    await page.click("[role=alertdialog] >> text=Cancel");

    // The profile moves to the new intermediate, recorded as ca rotate records it.
    await page.selectOption("#rot-profile", "default");
    await page.selectOption("#rot-to", "ica-2");
    await page.click("#rotate-form button[type=submit]");
    const rotated = await page.waitForSelector('[data-rotated="default ica-2"]');
    expect(await rotated.textContent()).toContain('CA "dev-ica" issues for no profile now');
    expect(await page.textContent('[data-ca-used-by="ica-2"]')).toBe("default");
    expect(last("ca.rotate")).toMatchObject({
      actor: OFFICER.name,
      subject: "default",
      outcome: "ok",
    });
    expect(
      JSON.parse(readFileSync(join(st.home, "station.json"), "utf8")).profiles.default.ca,
    ).toBe("ica-2");

    // Now free, dev-ica is deactivated and activated again.
    await page.click('[data-ca-act="deactivate dev-ica"]');
    await page.click("[data-focus=ca-confirm]");
    await page.waitForSelector('[data-ca-done="deactivate dev-ica"]');
    expect(await row("dev-ica").textContent()).toContain("inactive");
    expect(last("ca.deactivate")).toMatchObject({ actor: OFFICER.name, outcome: "ok" });
    await page.click('[data-ca-act="activate dev-ica"]');
    await page.waitForSelector('[data-ca-done="activate dev-ica"]');
    expect(last("ca.activate")).toMatchObject({
      actor: OFFICER.name,
      subject: "dev-ica",
      outcome: "ok",
    });

    // A CRL, signed in the token, written to the export folder; the screen says where.
    await page.click('[data-ca-act="crl ica-2"]');
    const crlBanner = await page.waitForSelector("[data-crl-out]");
    const crlPath = join(media, "crl-ica-2-1.pem");
    expect(await crlBanner.getAttribute("data-crl-out")).toBe(crlPath);
    expect(await crlBanner.textContent()).toContain(`written to ${crlPath}`);
    const crl = new x509.X509Crl(readFileSync(crlPath, "utf8"));
    expect(crl.issuer).toContain("CN=Kiosk Issuing CA 2");
    expect(last("ca.crl")).toMatchObject({ actor: OFFICER.name, subject: "ica-2", outcome: "ok" });
    await shots(page, "cas");

    // The offline round trip through the export folder.
    await page.click("nav >> text=Targets");
    await page.waitForSelector(`[data-export-dir="${media}"]`);
    expect(await page.textContent('[data-last-sync="plant-k"]')).toBe("never");
    await page.selectOption("#bx-target", "plant-k");
    await page.click("#bundle-form button[type=submit]");
    const bundleBanner = await page.waitForSelector("[data-bundle-out]");
    const bundlePath = (await bundleBanner.getAttribute("data-bundle-out"))!;
    expect(bundlePath.startsWith(`${media}/bundle-plant-k-`)).toBe(true);
    expect(await bundleBanner.textContent()).toContain(`written to ${bundlePath}`);
    const bundleText = readFileSync(bundlePath, "utf8");
    expect(JSON.parse(bundleText)).toMatchObject({ format: BUNDLE_FORMAT });
    expect(last("bundle.export")).toMatchObject({
      actor: OFFICER.name,
      subject: "plant-k",
      outcome: "ok",
    });

    // The online machine's receipt comes back on the medium, with an unsigned file beside it.
    const receiptName = `${bundlePath.split("/").pop()}.receipt.json`;
    writeFileSync(
      join(media, receiptName),
      receiptFor(bundleText, uploader, { region: "eu-west-1", account: "123456789012" }),
    );
    writeFileSync(join(media, "unsigned.json"), JSON.stringify({ receipt: "{}" }));
    await page.click("text=Look again");
    await page.waitForSelector(`#rc-name option[value="${receiptName}"]`, { state: "attached" });
    await page.selectOption("#rc-name", "unsigned.json");
    await page.click("#receipt-form button[type=submit]");
    const refused = await page.waitForSelector('.alert[data-code="RECEIPT_INVALID"]');
    expect(await refused.textContent()).toContain("The receipt file is not valid");
    expect(last("bundle.receipt")).toMatchObject({ outcome: "refused", code: "RECEIPT_INVALID" });
    await page.selectOption("#rc-name", receiptName);
    await page.click("#receipt-form button[type=submit]");
    const imported = await page.waitForSelector("[data-receipt]");
    expect(await imported.textContent()).toContain(
      `Receipt imported from ${join(media, receiptName)}`,
    );
    expect(await imported.textContent()).toContain('uploaded by "kiosk-uploader"');
    expect(last("bundle.receipt")).toMatchObject({
      actor: OFFICER.name,
      subject: "plant-k",
      outcome: "ok",
    });
    await page.waitForFunction(
      () =>
        (
          globalThis as unknown as {
            document: { querySelector(s: string): { textContent: string | null } | null };
          }
        ).document
          .querySelector('[data-last-sync="plant-k"]')
          ?.textContent?.includes("(bundle)") ?? false,
    );
    await shots(page, "targets");

    // The backup into the backup folder (another disk, removable media).
    await page.click("nav >> text=Audit");
    await page.click("#backup-now");
    const backup = await page.waitForSelector("[data-backup]");
    const [file] = readdirSync(backups);
    expect(file).toMatch(/^linesign-backup-.+\.tar$/);
    expect(await backup.textContent()).toContain(`Backup written to ${join(backups, file!)}`);
    expect(last("backup.snapshot")).toMatchObject({ actor: OFFICER.name, outcome: "ok" });
    await shots(page, "audit-backup");

    // Everything this walk wrote went into the folders it named, nothing else into them.
    expect(readdirSync(media).sort()).toEqual(
      ["crl-ica-2-1.pem", bundlePath.split("/").pop()!, receiptName, "unsigned.json"].sort(),
    );
    expect(existsSync(join(st.home, "exports"))).toBe(false);
  }, 120_000);
});
