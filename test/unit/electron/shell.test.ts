/**
 * The Electron shell's wiring, through its own seams (no Electron runtime
 * can be downloaded here): window options, the sender check, the relay's
 * allow-list and argument validation, the preload's API, the app:// file
 * resolution, the packaging configuration and its fuses.
 */
import { EventEmitter } from "node:events";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CHANNEL_NAMES } from "../../../src/domain/kiosk-api.js";
import {
  allowNavigation,
  APP_ORIGIN,
  downloadPath,
  ELECTRON_CSP,
  guardEveryContents,
  isTrustedSender,
  kioskWindowOptions,
  makeContentsGuard,
  makeRelay,
  resolveAppFile,
  serviceAnswers,
  serviceLaunch,
  type CallSender,
  type GuardedContents,
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

  it("main wires every contract channel, the guard on every web contents, and the service launch", () => {
    const main = readFileSync(new URL("../../../electron/main.ts", import.meta.url), "utf8");
    for (const hook of [
      "requestSingleInstanceLock",
      "guardEveryContents(",
      "makeContentsGuard(",
      "serviceLaunch(",
      "app.isPackaged",
      "process.resourcesPath",
      "Menu.setApplicationMenu(null)",
      "await serviceAnswers(socket)",
      "for (const channel of CHANNEL_NAMES)",
    ])
      expect(main, hook).toContain(hook);
    // The guard is installed before any window exists, not inside start().
    expect(main.indexOf("guardEveryContents(")).toBeLessThan(main.indexOf("async function start"));
    expect(main).not.toMatch(/better-sqlite3|pkcs11js|serialport|compose/);
    expect(main).not.toMatch(/spawn\([^)]*"node"/);
    // A socket file alone is no service: one killed leaves its file behind.
    expect(main).not.toMatch(/existsSync\(socket\)/);
  });

  it("starts a service when the socket file is only what a killed one left behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "linesign-stale-"));
    const path = join(dir, "station.sock");
    expect(await serviceAnswers(path)).toBe(false);
    // A service killed outright leaves its socket file: nobody answers on it.
    const child = spawnSync(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    expect(child.signal).toBe("SIGKILL");
    expect(existsSync(path)).toBe(true);
    expect(await serviceAnswers(path)).toBe(false);
    // A live one answers.
    rmSync(path);
    const live = createServer();
    await new Promise<void>((r) => live.listen(path, () => r()));
    try {
      expect(await serviceAnswers(path)).toBe(true);
    } finally {
      live.close();
    }
  });

  it("carries the service the packaged kiosk starts, where main looks for it, and pins electron-builder", () => {
    const pkg = JSON.parse(
      readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
    ) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const extra = cfg.extraResources as { from: string; to: string; filter: string[] }[];
    const code = extra.find((e) => e.from === ".")!;
    expect(code.to).toBe("service");
    expect(code.filter).toEqual(
      expect.arrayContaining([
        "package.json",
        "bin/linesign.js",
        "dist/cli/**/*.js",
        "dist/src/**/*.js",
      ]),
    );
    const modules = extra.find((e) => e.from === "node_modules")!;
    expect(modules.to).toBe("service/node_modules");
    // Every production dependency goes along (none is excluded); Electron and the build tools do not.
    for (const dep of Object.keys(pkg.dependencies))
      expect(
        modules.filter
          .filter((f) => f.startsWith("!"))
          .map((f) => f.slice(1).replace(/\/\*\*$/, ""))
          .some((p) => dep === p || dep.startsWith(`${p}/`)),
        dep,
      ).toBe(false);
    for (const tool of ["electron", "electron-builder", "vitest", "playwright-core", "typescript"])
      expect(modules.filter, tool).toContain(`!${tool}/**`);
    // Where the packaging puts the entry is where main starts it from.
    const launch = serviceLaunch({
      packaged: true,
      resourcesPath: "/opt/Linesign Kiosk/resources",
      mainDir: "/opt/Linesign Kiosk/resources/app.asar/dist/electron",
      env: {},
    });
    expect(launch).toMatchObject({
      command: "/usr/bin/node",
      args: [`/opt/Linesign Kiosk/resources/${code.to}/bin/linesign.js`, "serve"],
    });
    // electron-builder is pinned to one exact version.
    expect(pkg.devDependencies["electron-builder"]).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe("the service main starts", () => {
  const env = {
    PATH: "/home/op/bin:/usr/bin",
    HOME: "/home/op",
    LINESIGN_HOME: "/srv/station",
    SOFTHSM2_CONF: "/srv/softhsm2.conf",
    LINESIGN_USER_PIN: "246810",
    LINESIGN_SO_PIN: "13572468",
    NODE_OPTIONS: "--require /tmp/evil.js",
    ELECTRON_RUN_AS_NODE: "1",
    LD_PRELOAD: "/tmp/evil.so",
  };

  it("is the repository's bin/ under an absolute Node when unpackaged, with only what it needs", () => {
    const launch = serviceLaunch({
      packaged: false,
      resourcesPath: "/unused",
      mainDir: "/src/linesign/dist/electron",
      env,
    });
    expect(launch).toEqual({
      command: "/usr/bin/node",
      args: ["/src/linesign/bin/linesign.js", "serve"],
      env: {
        PATH: "/usr/local/bin:/usr/bin:/bin",
        HOME: "/home/op",
        LINESIGN_HOME: "/srv/station",
        SOFTHSM2_CONF: "/srv/softhsm2.conf",
      },
    });
    const own = serviceLaunch({
      packaged: true,
      resourcesPath: "/r",
      mainDir: "/r/app.asar/dist/electron",
      env: { ...env, LINESIGN_NODE: "/opt/node/bin/node" },
    });
    expect("command" in own && own.command).toBe("/opt/node/bin/node");
  });

  it("refuses a Node that would be found on PATH", () => {
    const r = serviceLaunch({
      packaged: true,
      resourcesPath: "/r",
      mainDir: "/r",
      env: { LINESIGN_NODE: "node" },
    });
    expect(r).toMatchObject({ refused: expect.stringContaining("absolute path") });
  });
});

/** A web contents and its session as Electron's emit them, recording what the guard set. */
function fakeContents(session = fakeSession()) {
  const wc = new EventEmitter() as EventEmitter & GuardedContents & { opened?: unknown };
  Object.assign(wc, {
    session,
    setWindowOpenHandler: (h: (d: { url: string }) => unknown) =>
      (wc.opened = h({ url: "https://example.com/" })),
  });
  return wc;
}
function fakeSession() {
  const ses = new EventEmitter() as EventEmitter & {
    request?: (wc: unknown, p: string, cb: (ok: boolean) => void) => void;
    check?: () => boolean;
    device?: () => boolean;
    setPermissionRequestHandler(h: unknown): void;
    setPermissionCheckHandler(h: unknown): void;
    setDevicePermissionHandler(h: unknown): void;
  };
  Object.assign(ses, {
    setPermissionRequestHandler: (h: never) => (ses.request = h),
    setPermissionCheckHandler: (h: never) => (ses.check = h),
    setDevicePermissionHandler: (h: never) => (ses.device = h),
  });
  return ses;
}
const refusable = (url?: string) => {
  const e = { prevented: false, url, preventDefault: () => void (e.prevented = true) };
  return e;
};

describe("every web contents", () => {
  function guarded() {
    const dir = mkdtempSync(join(tmpdir(), "linesign-exports-"));
    const logged: { refused: string; what: string; url: string }[] = [];
    const app = new EventEmitter();
    guardEveryContents(
      app as never,
      makeContentsGuard({ exportDir: () => join(dir, "exports"), log: (e) => logged.push(e) }),
    );
    return { app, dir, logged };
  }

  it("gets the navigation, window-open, webview and permission rules, not only the kiosk window", () => {
    const { app, logged } = guarded();
    const ses = fakeSession();
    // Two contents (the window's and another, e.g. a frame's or one a later feature makes) on one session.
    for (const wc of [fakeContents(ses), fakeContents(ses)]) {
      app.emit("web-contents-created", {}, wc);
      for (const ev of ["will-navigate", "will-frame-navigate", "will-redirect"]) {
        const away = refusable();
        wc.emit(ev, away, "https://evil.example/");
        expect(away.prevented, ev).toBe(true);
        const inside = refusable(`${APP_ORIGIN}/index.html`);
        wc.emit(ev, inside);
        expect(inside.prevented, ev).toBe(false);
        const file = refusable("file:///etc/passwd");
        wc.emit(ev, file);
        expect(file.prevented, ev).toBe(true);
      }
      const webview = refusable();
      wc.emit("will-attach-webview", webview, {}, {});
      expect(webview.prevented).toBe(true);
      expect(wc.opened).toEqual({ action: "deny" });
    }
    let granted: boolean | null = null;
    ses.request!(null, "media", (ok) => (granted = ok));
    expect(granted).toBe(false);
    expect(ses.check!()).toBe(false);
    expect(ses.device!()).toBe(false);
    const port = refusable();
    let chosen: string | null = null;
    ses.emit("select-serial-port", port, [{ portId: "1" }], {}, (id: string) => (chosen = id));
    expect(port.prevented).toBe(true);
    expect(chosen).toBe("");
    // One session is set up once: one will-download listener, however many contents share it.
    expect(ses.listenerCount("will-download")).toBe(1);
    expect(logged.map((l) => l.refused)).toContain("NAVIGATION");
    expect(logged.map((l) => l.refused)).toContain("WEBVIEW");
    expect(logged.map((l) => l.refused)).toContain("WINDOW_OPEN");
  });

  it("saves the audit export without a dialog, in the exports folder, never over a file; refuses other downloads", () => {
    const { app, dir, logged } = guarded();
    const ses = fakeSession();
    const wc = fakeContents(ses);
    app.emit("web-contents-created", {}, wc);
    const name = "linesign-audit-dev-st-1-20261201T190000Z.json";
    const download = (url: string, fileName: string) => {
      const item = { saved: null as string | null };
      const e = refusable();
      ses.emit("will-download", e, {
        getURL: () => url,
        getFilename: () => fileName,
        setSavePath: (p: string) => (item.saved = p),
      });
      return { prevented: e.prevented, saved: item.saved };
    };
    const first = download(`blob:${APP_ORIGIN}/5e1c`, name);
    // A save path set in will-download is what keeps Electron from asking with a dialog.
    expect(first).toEqual({ prevented: false, saved: join(dir, "exports", name) });
    expect((statSync(join(dir, "exports")).mode & 0o777).toString(8)).toBe("700");
    writeFileSync(first.saved!, "{}");
    expect(download(`blob:${APP_ORIGIN}/77aa`, name).saved).toBe(
      join(dir, "exports", name.replace(/\.json$/, "-1.json")),
    );
    for (const [url, fileName] of [
      ["https://evil.example/x.json", name],
      ["blob:https://evil.example/1", name],
      [`blob:${APP_ORIGIN}/1`, "../../.bashrc"],
      [`blob:${APP_ORIGIN}/1`, "linesign-audit-x.sh"],
      [`blob:${APP_ORIGIN}/1`, "linesign-audit-../../x.json"],
    ]) {
      const r = download(url!, fileName!);
      expect(r, `${url} ${fileName}`).toEqual({ prevented: true, saved: null });
    }
    expect(logged.filter((l) => l.refused === "DOWNLOAD")).toHaveLength(5);
    expect(existsSync(join(dir, ".bashrc"))).toBe(false);
    expect(downloadPath("/d", `blob:${APP_ORIGIN}/1`, name)).toBe(`/d/${name}`);
  });
});
