import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { cleanEnv, linesign } from "../helpers/cli.js";
import { tempSoftHsm } from "../helpers/softhsm.js";

// The main job: a development station, then simulated devices provisioned over pty pairs.
it("demo sets up the development station and provisions six simulated devices", () => {
  const hsm = tempSoftHsm();
  const env = cleanEnv({
    SOFTHSM2_CONF: hsm.conf,
    LINESIGN_HOME: mkdtempSync(join(tmpdir(), "linesign-demo-")),
  });
  const r = linesign(["demo", "--json"], env);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const line = r.json.line as { summary: { devices: number; confirmed: number; failed: number } };
  expect(line.summary).toMatchObject({ devices: 6, confirmed: 6, failed: 0 });
  // Then the kiosk on loopback; not on a terminal, it is checked and closed again.
  expect(r.json.kiosk).toMatchObject({
    url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/#key=/),
    shell: "browser",
    checked: expect.stringContaining("demo operator signed in"),
  });
  const log = linesign(["audit", "log", "--status", "CONFIRMED", "--json"], env);
  const rows = log.json.rows as { deviceId: string; keyType: string }[];
  expect(rows).toHaveLength(6);
  expect(new Set(rows.map((x) => x.keyType))).toEqual(new Set(["ec-p256", "ec-p384", "rsa-2048"]));
  expect(linesign(["audit", "verify", "--json"], env).json.ok).toBe(true);
  // Text mode shows each port's steps in plain words.
  const text = linesign(["demo"], env);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/p256-station +demo-\S+-p256-0001: CONFIRMED serial/);
  expect(text.stdout).toContain("already set up");
  expect(text.stdout).toContain(
    "Electron's runtime is not installed here: open it in Chromium with npx linesign kiosk",
  );
  // The service's secret is not shown for a command line to carry.
  expect(text.stdout).not.toMatch(/#key=|kiosk\.url/);
  expect(text.stdout).toContain("Sign in as dev-officer / linesign-dev-officer");
}, 120_000);

// On a terminal the main job keeps the kiosk open until Ctrl-C (script(1) gives it one).
it("demo on a terminal keeps the kiosk open until Ctrl-C", async () => {
  const hsm = tempSoftHsm();
  const env = cleanEnv({
    SOFTHSM2_CONF: hsm.conf,
    LINESIGN_HOME: mkdtempSync(join(tmpdir(), "linesign-demo-tty-")),
  });
  const bin = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
  // script(1) runs its command through $SHELL or /bin/sh; exec makes the station the
  // terminal's process itself, so no shell between it and the Ctrl-C (dash would die of it).
  const child = spawn("script", ["-qfec", `exec ${process.execPath} ${bin} demo`, "/dev/null"], {
    env: { ...env, SHELL: "/bin/sh" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const seen = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "${text}" in:\n${out}`)), 60_000);
      const check = () => {
        if (!out.includes(text)) return;
        clearTimeout(t);
        resolve();
      };
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        check();
      });
      check();
    });
  await seen("Ctrl-C closes the kiosk");
  // The page's address is shown; the service's secret is not.
  expect(out).not.toContain("#key=");
  const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)![0];
  const page = await fetch(url.replace(/#.*/, ""));
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("<title>Linesign</title>");
  child.stdin.write("\x03");
  expect(await exited).toBe(0);
  expect(out).toContain("Kiosk closed.");
  // The service is gone with it.
  await expect(fetch(url.replace(/#.*/, ""))).rejects.toThrow();
}, 120_000);
