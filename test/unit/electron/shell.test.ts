/**
 * The Electron shell's wiring, through its own seams (no Electron runtime
 * can be downloaded here): window options, the sender check, the relay's
 * allow-list and argument validation, the preload's API, the app:// file
 * resolution, the packaging configuration and its fuses.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CHANNEL_NAMES } from "../../../src/domain/kiosk-api.js";
import {
  allowNavigation,
  APP_ORIGIN,
  ELECTRON_CSP,
  isTrustedSender,
  kioskWindowOptions,
  makeRelay,
  resolveAppFile,
  type CallSender,
  type Forward,
} from "../../../electron/shell.js";
import { buildApi } from "../../../electron/preload-api.js";

const KIOSK = 7;
const fromKiosk: CallSender = {
  senderId: KIOSK,
  frameUrl: `${APP_ORIGIN}/index.html`,
  isMainFrame: true,
};

function relayWith() {
  const forwarded: { channel: string; args: unknown; login: string | null }[] = [];
  const logged: { refused: string; channel: string; why: string }[] = [];
  const forward: Forward = async (channel, args, login) => {
    forwarded.push({ channel, args, login });
    if (channel === "auth.login")
      return { reply: { ok: true, result: { name: "op", role: "operator" } }, login: "LOGIN-1" };
    return { reply: { ok: true, result: { done: true } } };
  };
  const relay = makeRelay({ forward, kioskWebContentsId: () => KIOSK, log: (e) => logged.push(e) });
  return { relay, forwarded, logged };
}

describe("the kiosk window", () => {
  it("is full screen in kiosk mode with every web preference locked down and no devtools", () => {
    const o = kioskWindowOptions("/app/preload.cjs");
    expect(o).toMatchObject({ fullscreen: true, kiosk: true, autoHideMenuBar: true, show: false });
    expect(o.webPreferences).toMatchObject({
      preload: "/app/preload.cjs",
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webviewTag: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      devTools: false,
    });
    expect(kioskWindowOptions("/p", { devTools: true }).webPreferences.devTools).toBe(true);
  });

  it("allows no network from the page and no navigation away from it", () => {
    expect(ELECTRON_CSP).toContain("default-src 'none'");
    expect(ELECTRON_CSP).toContain("connect-src 'none'");
    expect(ELECTRON_CSP).not.toContain("unsafe");
    expect(allowNavigation(`${APP_ORIGIN}/index.html`)).toBe(true);
    for (const url of [
      "https://example.com/",
      "file:///etc/passwd",
      "app://other/index.html",
      "javascript:alert(1)",
      "nonsense",
    ])
      expect(allowNavigation(url), url).toBe(false);
  });

  it("serves only the page's own files over app://", () => {
    const dir = "/opt/linesign/dist/renderer";
    expect(resolveAppFile(dir, `${APP_ORIGIN}/`)).toEqual({
      path: `${dir}/index.html`,
      type: "text/html; charset=utf-8",
    });
    expect(resolveAppFile(dir, `${APP_ORIGIN}/assets/index-1.js`)?.path).toBe(
      `${dir}/assets/index-1.js`,
    );
    // Climbing out is folded back inside the folder (or refused).
    for (const url of [
      `${APP_ORIGIN}/../../../etc/passwd.js`,
      `${APP_ORIGIN}/assets/..%2f..%2f..%2fsecret.js`,
      `${APP_ORIGIN}/%2e%2e/%2e%2e/x.css`,
    ]) {
      const r = resolveAppFile(dir, url);
      expect(r === null || r.path.startsWith(`${dir}/`), url).toBe(true);
    }
    for (const url of [
      `${APP_ORIGIN}/%2e%2e/%2e%2e/station.json`,
      `${APP_ORIGIN}/station.db`,
      "app://elsewhere/index.html",
      "https://kiosk/index.html",
      `${APP_ORIGIN}/%E0%A4%A`,
    ])
      expect(resolveAppFile(dir, url), url).toBeNull();
  });
});

describe("the sender check", () => {
  it("trusts only the kiosk window's top frame showing our page", () => {
    expect(isTrustedSender(fromKiosk, KIOSK)).toBe(true);
    expect(isTrustedSender({ ...fromKiosk, senderId: 8 }, KIOSK)).toBe(false);
    expect(isTrustedSender({ ...fromKiosk, isMainFrame: false }, KIOSK)).toBe(false);
    expect(isTrustedSender({ ...fromKiosk, frameUrl: "https://evil.example/" }, KIOSK)).toBe(false);
    expect(isTrustedSender({ ...fromKiosk, frameUrl: null }, KIOSK)).toBe(false);
    expect(isTrustedSender(fromKiosk, null)).toBe(false);
  });
});

describe("the relay", () => {
  it("forwards a checked call with the login main keeps, never handing the login to the page", async () => {
    const { relay, forwarded } = relayWith();
    const login = await relay("auth.login", { name: "op", passphrase: "p" }, fromKiosk);
    expect(login).toEqual({ ok: true, result: { name: "op", role: "operator" } });
    expect(JSON.stringify(login)).not.toContain("LOGIN-1");
    await relay("line.watch", { after: 3, waitMs: 100 }, fromKiosk);
    expect(forwarded.at(-1)).toEqual({
      channel: "line.watch",
      args: { after: 3, waitMs: 100 },
      login: "LOGIN-1",
    });
    await relay("auth.logout", {}, fromKiosk);
    await relay("auth.whoami", {}, fromKiosk);
    expect(forwarded.at(-1)!.login).toBeNull();
  });

  it("refuses and logs unknown channels, malformed arguments and foreign senders before anything leaves main", async () => {
    const { relay, forwarded, logged } = relayWith();
    expect(await relay("token.export", {}, fromKiosk)).toMatchObject({
      ok: false,
      error: { code: "API_REQUEST_INVALID" },
    });
    expect(await relay(42, {}, fromKiosk)).toMatchObject({ ok: false });
    // A channel nested 10,000 deep is refused, not turned into text (which overflows the stack).
    let deep: unknown = [];
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(await relay(deep, {}, fromKiosk)).toMatchObject({ ok: false });
    const bad = await relay("line.acknowledge", { port: 5 }, fromKiosk);
    expect(bad).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    expect(!bad.ok && bad.error.message).toContain('"port"');
    expect(
      await relay("line.watch", { after: 1, waitMs: 1, extra: true }, fromKiosk),
    ).toMatchObject({ ok: false });
    expect(await relay("auth.whoami", {}, { ...fromKiosk, senderId: 99 })).toMatchObject({
      ok: false,
      error: { code: "ROLE_FORBIDDEN" },
    });
    expect(forwarded).toEqual([]);
    expect(logged.map((l) => l.channel)).toEqual([
      "token.export",
      "(number)",
      "(object)",
      "line.acknowledge",
      "line.watch",
      "auth.whoami",
    ]);
  });
});

describe("the preload", () => {
  it("exposes exactly the contract's channels as named functions, each one call to main", async () => {
    const calls: [string, unknown][] = [];
    const api = buildApi(async (channel, args) => {
      calls.push([channel, args]);
      return { ok: true, result: null };
    });
    expect(Object.keys(api).sort()).toEqual([...CHANNEL_NAMES].sort());
    expect(Object.isFrozen(api)).toBe(true);
    await api["line.watch"]({ after: 0, waitMs: 0 });
    expect(calls).toEqual([["line.watch", { after: 0, waitMs: 0 }]]);
    expect((api as unknown as Record<string, unknown>).invoke).toBeUndefined();
    const src = readFileSync(new URL("../../../electron/preload.ts", import.meta.url), "utf8");
    expect(src).toContain("contextBridge.exposeInMainWorld");
    expect(src).not.toMatch(/exposeInMainWorld\([^)]*ipcRenderer[,)]/);
  });

  it("is bundled to a file that requires only electron and carries no schema library", () => {
    // Built by the suite's global setup (npm run build).
    const bundle = readFileSync(
      new URL("../../../dist/electron/preload.cjs", import.meta.url),
      "utf8",
    );
    expect([...bundle.matchAll(/require\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1])).toEqual([
      "electron",
    ]);
    expect(bundle).not.toMatch(/zod|safeParse|ZodError/);
    for (const name of CHANNEL_NAMES) expect(bundle).toContain(`"${name}"`);
  });
});

describe("packaging", () => {
  const cfg = JSON.parse(
    readFileSync(new URL("../../../electron/electron-builder.json", import.meta.url), "utf8"),
  ) as Record<string, unknown> & { files: string[]; electronFuses: Record<string, boolean> };

  it("builds a Linux kiosk from an asar with the fuses set, and carries no native module", () => {
    expect(cfg.asar).toBe(true);
    expect(cfg.linux).toMatchObject({ target: expect.arrayContaining(["AppImage"]) });
    expect(cfg.electronFuses).toMatchObject({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
      grantFileProtocolExtraPrivileges: false,
    });
    // The token, the ports and the database stay in the station service (system Node).
    for (const native of ["better-sqlite3", "pkcs11js", "serialport", "@serialport"])
      expect(
        cfg.files.some((f) => f.includes(native)),
        native,
      ).toBe(false);
    expect(cfg.npmRebuild).toBe(false);
    expect(cfg.extraMetadata).toEqual({ main: "dist/electron/main.js" });
  });

  it("main wires every contract channel and the hardening hooks", () => {
    const main = readFileSync(new URL("../../../electron/main.ts", import.meta.url), "utf8");
    for (const hook of [
      "requestSingleInstanceLock",
      "setPermissionRequestHandler",
      "setPermissionCheckHandler",
      "setWindowOpenHandler",
      '"will-navigate"',
      '"will-attach-webview"',
      "Menu.setApplicationMenu(null)",
      "for (const channel of CHANNEL_NAMES)",
    ])
      expect(main, hook).toContain(hook);
    expect(main).not.toMatch(/better-sqlite3|pkcs11js|serialport|compose/);
  });
});
