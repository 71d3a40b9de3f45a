/**
 * The station service's API against a real station (SoftHSM token, SQLite
 * file): every role against every channel, refusals logged, logins that time
 * out, an officer's logout ending the signing session, and both transports
 * (Unix socket with its permissions; loopback with its secret, Host and
 * Origin checks).
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { request } from "node:http";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHANNELS, CHANNEL_NAMES } from "../../../src/domain/kiosk-api.js";
import { isAllowed, ROLES, type Role } from "../../../src/domain/roles.js";
import type { Station } from "../../../src/compose.js";
import { StationService } from "../../../src/service/station-service.js";
import {
  listenLoopback,
  listenUnix,
  LOGIN_HEADER,
  type LoopbackListening,
} from "../../../src/service/http.js";
import { engineStation } from "../../helpers/engine.js";
import { mountTmpfs, newTmpfs, unmount } from "../../helpers/mounts.js";
import { RefusalLog } from "../../../src/app/refusal-log.js";
import { verifyChain } from "../../../src/domain/event-log.js";
import { discardRestore, stageRestore } from "../../../src/compose-backup.js";
import { cleanEnv, linesignAsync } from "../../helpers/cli.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { x509 } from "../../../src/app/pki/x509.js";
import { createUploaderIdentity } from "../../../src/app/sync/bundle-format.js";
import { enrollUploader } from "../../../src/app/sync/bundle.js";
import { receiptFor } from "../../helpers/receipt.js";

const PASS: Record<Role, string> = {
  operator: "operator-pass-1",
  officer: "officer-pass-1",
  auditor: "auditor-pass-1",
  sync: "sync-pass-1",
};

describe("station service API", () => {
  let s: Station;
  let service: StationService;
  let clock = Date.now();
  let backupDir = "";
  /** The station's export folder (export.dir: a removable medium's mount point). */
  let exportDir = "";
  const tokens = {} as Record<Role, string>;

  async function login(role: Role): Promise<string> {
    const r = await service.call("auth.login", { name: `${role}-1`, passphrase: PASS[role] }, null);
    expect(r.reply).toEqual({ ok: true, result: { name: `${role}-1`, role } });
    return r.loginToken!;
  }

  beforeAll(async () => {
    const es = await engineStation();
    // The kiosk's backups go to a folder outside the home (another disk, removable media).
    backupDir = mkdtempSync(join(tmpdir(), "linesign-backups-"));
    const cfgPath = join(es.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
    // The medium is a file system of its own (a tmpfs here), as a USB stick is.
    exportDir = newTmpfs("8m", "linesign-media-");
    writeFileSync(
      cfgPath,
      JSON.stringify({ ...cfg, backup: { dir: backupDir }, export: { dir: exportDir } }, null, 2),
    );
    s = es.open(undefined, { mode: "service", officer: undefined });
    for (const role of ROLES) await s.users.add(`${role}-1`, role, PASS[role]);
    service = new StationService(s, {
      ports: ["/dev/null"],
      loginIdleMs: 60_000,
      now: () => clock,
    });
    for (const role of ROLES) tokens[role] = await login(role);
  });
  afterAll(async () => {
    await service.close();
    await s.close();
    unmount(exportDir);
  });

  it("lets each role reach exactly the channels its rule allows", async () => {
    for (const name of CHANNEL_NAMES) {
      const rule = CHANNELS[name].rule;
      if (rule === "none" || name === "auth.logout") continue;
      for (const role of ROLES) {
        // Arguments no channel accepts: an allowed call stops at validation, a forbidden one before it.
        const r = await service.call(name, { __probe: 1 }, tokens[role]);
        expect(r.reply.ok, `${role} ${name}`).toBe(false);
        const code = !r.reply.ok ? r.reply.error.code : "";
        expect(code, `${role} calling ${name}`).toBe(
          isAllowed(rule, role) ? "API_REQUEST_INVALID" : "ROLE_FORBIDDEN",
        );
      }
    }
    // Officers alone change the station; auditors only read; operators run the line.
    for (const name of CHANNEL_NAMES) {
      const rule = CHANNELS[name].rule;
      if (typeof rule === "string") continue;
      if (rule.includes("auditor"))
        expect([
          "line.watch",
          "line.shift",
          "cas.list",
          "targets.list",
          "audit.verify",
          "audit.log",
          "audit.export",
          "certificates.find",
        ]).toContain(name);
      if (rule.includes("operator")) expect(name.startsWith("line.")).toBe(true);
    }
    const refused = s.ctx.store.queryEvents({ action: "api.refused" });
    expect(
      refused.some(
        (e) =>
          e.actor === "operator-1" && e.subject === "signing.open" && e.code === "ROLE_FORBIDDEN",
      ),
    ).toBe(true);
    expect(refused.some((e) => e.actor === "auditor-1" && e.subject === "revocation.revoke")).toBe(
      true,
    );
  });

  it("refuses unknown channels, missing logins and malformed arguments, naming the field", async () => {
    const unknown = await service.call("token.export", {}, tokens.officer);
    expect(unknown.reply).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    expect(s.ctx.store.queryEvents({ action: "api.refused" }).at(-1)).toMatchObject({
      actor: "officer-1",
      subject: "token.export",
    });
    const anon = await service.call("audit.log", { limit: 5 }, null);
    expect(anon.reply).toMatchObject({ ok: false, error: { code: "AUTH_REQUIRED" } });
    const forged = await service.call("audit.log", { limit: 5 }, "not-a-login");
    expect(forged.reply).toMatchObject({ ok: false, error: { code: "AUTH_REQUIRED" } });
    const bad = await service.call(
      "workOrders.create",
      { profile: "default", quantity: -3 },
      tokens.officer,
    );
    expect(bad.reply).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    expect(!bad.reply.ok && bad.reply.error.message).toContain('"quantity"');
    const wrongPass = await service.call(
      "auth.login",
      { name: "officer-1", passphrase: "nope" },
      null,
    );
    expect(wrongPass.reply).toMatchObject({ ok: false, error: { code: "AUTH_FAILED" } });
    expect(wrongPass.loginToken).toBeUndefined();
  });

  it("answers the shift's figures to operators, officers and auditors, over a bounded window", async () => {
    for (const role of ["operator", "officer", "auditor"] as const) {
      const r = await service.call("line.shift", {}, tokens[role]);
      expect(r.reply.ok, role).toBe(true);
      const f = r.reply.ok
        ? (r.reply.result as { from: string; to: string; hours: string[] })
        : null;
      // The last 12 hours by default: 12 or 13 clock hours.
      expect(Date.parse(f!.to) - Date.parse(f!.from)).toBe(12 * 3_600_000);
      expect(f!.hours.length).toBeGreaterThanOrEqual(12);
    }
    expect((await service.call("line.shift", {}, tokens.sync)).reply).toMatchObject({
      ok: false,
      error: { code: "ROLE_FORBIDDEN" },
    });
    const window = await service.call(
      "line.shift",
      { from: "2026-12-02T06:00:00Z", to: "2026-12-02T14:00:00+02:00" },
      tokens.operator,
    );
    expect(window.reply).toMatchObject({
      ok: true,
      result: {
        from: "2026-12-02T06:00:00.000Z",
        to: "2026-12-02T12:00:00.000Z",
        totals: { confirmed: 0, failed: 0 },
        firstPass: { tried: 0, yield: null },
      },
    });
    const refused = async (args: Record<string, unknown>) => {
      const r = await service.call("line.shift", args, tokens.officer);
      return r.reply.ok ? "answered" : `${r.reply.error.code} ${r.reply.error.message}`;
    };
    // The contract refuses what is not a time or a whole number of hours up to a week.
    expect(await refused({ from: "yesterday" })).toMatch(/^API_REQUEST_INVALID .*"from"/);
    expect(await refused({ hours: 169 })).toMatch(/^API_REQUEST_INVALID .*"hours"/);
    expect(await refused({ hours: 2, extra: 1 })).toMatch(/^API_REQUEST_INVALID/);
    // The window's own rules, with words.
    expect(await refused({ from: "2026-11-01T00:00:00Z", to: "2026-12-02T00:00:00Z" })).toBe(
      "USAGE A shift view covers at most 168 hours (a week); ask for a shorter window.",
    );
    expect(await refused({ from: "2026-12-02T09:00:00Z", to: "2026-12-02T08:00:00Z" })).toMatch(
      /^USAGE The shift's start must be before its end/,
    );
    expect(await refused({ from: "2026-12-02T08:00:00Z", hours: 3 })).toMatch(/^USAGE .*not both/);
  });

  it("keeps the log well-formed: a cut never splits a surrogate pair, lone surrogates are refused", async () => {
    service.refusals.flush(); // a fresh interval: each refusal below is written
    const before = s.ctx.store.head()!.seq;
    // 63 letters then an emoji: cutting at 64 UTF-16 units would keep half of the pair.
    const r = await service.call(`${"a".repeat(63)}\u{1F600}`, {}, tokens.officer);
    expect(r.reply).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    const login = await service.call("auth.login", { name: "\ud800", passphrase: "x\udc00" }, null);
    expect(login.reply).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    expect(!login.reply.ok && login.reply.error.message).toContain("not well-formed");
    const wo = await service.call(
      "workOrders.create",
      { profile: "default", quantity: 1, pattern: "a\udfffb" },
      tokens.officer,
    );
    expect(wo.reply).toMatchObject({ ok: false, error: { code: "API_REQUEST_INVALID" } });
    // The last guard, at the log itself: whatever a caller passes is stored as it was hashed.
    s.ctx.store.appendEvent({
      actor: "x\ud800",
      action: "test.text",
      subject: "\udc00",
      outcome: "refused",
      message: "m\ud83d",
      details: { "k\ud800": ["\udfff"] },
    });
    const added = [...s.ctx.store.events()].filter((e) => e.seq > before);
    expect(added.map((e) => e.subject)).toContain("a".repeat(63));
    for (const e of added) expect(JSON.stringify(e)).not.toMatch(/\\ud[89a-f]/i);
    expect(added.at(-1)).toMatchObject({ actor: "x\uFFFD", subject: "\uFFFD" });
    expect(verifyChain(s.ctx.store.events(), s.ctx.chainHash).ok).toBe(true);
  });

  it("shows targets with their queues and last sync", async () => {
    await s.sync.addTarget("plant-a", {
      region: "eu-west-1",
      caMode: "SNI_ONLY",
      deviceRegistration: "without-ca",
    });
    s.ctx.store.appendEvent({
      actor: "sync-1",
      action: "sync.run",
      subject: "plant-a",
      outcome: "refused",
      message: "1 certificate refused",
      details: {},
    });
    const r = await service.call("targets.list", {}, tokens.auditor);
    expect(r.reply).toMatchObject({
      ok: true,
      result: [
        {
          name: "plant-a",
          region: "eu-west-1",
          caMode: "SNI_ONLY",
          deviceRegistration: "without-ca",
          pending: 0,
          failed: 0,
          lastSync: { outcome: "refused", message: "1 certificate refused", via: "sync" },
        },
      ],
    });
    // A later round trip by bundle is the last sync: its receipt names the bundle and the counts.
    s.ctx.store.appendEvent({
      actor: "officer-1",
      action: "bundle.receipt",
      subject: "plant-a",
      outcome: "ok",
      details: { bundle: "b-0001", receipt: "r-0001", done: 3, failed: 1 },
    });
    const after = await service.call("targets.list", {}, tokens.auditor);
    expect(after.reply).toMatchObject({
      ok: true,
      result: [
        {
          name: "plant-a",
          lastSync: {
            outcome: "failed",
            message: "Bundle b-0001: 3 registered, 1 failed (receipt imported).",
            via: "bundle",
          },
        },
      ],
    });
  });

  it("backs the station up from the kiosk into the configured folder, as the officer", async () => {
    // The manifest is signed by the audit key: only inside a signing session.
    const closed = await service.call("station.backup", {}, tokens.officer);
    expect(closed.reply).toMatchObject({ ok: false, error: { code: "SIGNING_SESSION_REQUIRED" } });
    expect(readdirSync(backupDir)).toEqual([]);
    const opened = await service.call("signing.open", { pin: "246810" }, tokens.officer);
    expect(opened.reply.ok).toBe(true);
    const r = await service.call("station.backup", {}, tokens.officer);
    expect((await service.call("signing.close", {}, tokens.officer)).reply.ok).toBe(true);
    expect(r.reply.ok, JSON.stringify(r.reply)).toBe(true);
    const b = (r.reply as { result: { out: string; id: string; head: { seq: number } } }).result;
    expect(readdirSync(backupDir)).toEqual([b.out.slice(backupDir.length + 1)]);
    expect(b.out).toMatch(/linesign-backup-.+-\d{8}T\d{6}\.tar$/);
    // The file is a whole backup: its manifest's signature and every file check out.
    const staged = await stageRestore(b.out, join(mkdtempSync(join(tmpdir(), "ls-")), "home"));
    try {
      expect(staged.manifest.head!.seq).toBe(b.head.seq);
    } finally {
      discardRestore(staged);
    }
    // Recorded as the officer's act; operators and auditors cannot make one.
    const snap = [...s.ctx.store.events()].findLast((e) => e.action === "backup.snapshot")!;
    expect(snap).toMatchObject({ actor: "officer-1", outcome: "ok", subject: b.out });
    expect(snap.details).toEqual({ backup: b.id });
    expect(snap.seq).toBe(b.head.seq);
    for (const role of ["operator", "auditor"] as const) {
      const no = await service.call("station.backup", {}, tokens[role]);
      expect(no.reply).toMatchObject({ ok: false, error: { code: "ROLE_FORBIDDEN" } });
    }
    expect(readdirSync(backupDir)).toHaveLength(1);
  });

  describe("the officer's CA and export-folder acts", () => {
    const OFFICER_ACTS = [
      ["cas.activate", { label: "dev-ica" }],
      ["cas.deactivate", { label: "dev-ica", stopProfiles: true }],
      ["cas.rotate", { profile: "default", to: "dev-root" }],
      ["cas.publishCrl", { ca: "dev-ica" }],
      ["exports.list", {}],
      ["targets.exportBundle", { target: "kiosk-t" }],
      ["targets.importReceipt", { name: "x.json" }],
    ] as const;
    type Answer = { ok: boolean; result?: unknown; error?: { code: string; message: string } };
    const ask = async (channel: string, args: unknown, role: Role = "officer"): Promise<Answer> =>
      (await service.call(channel, args, tokens[role])).reply as Answer;
    const refusedCode = (r: Answer) => (r.ok ? "(ok)" : r.error!.code);
    const res = <T>(r: Answer): T => {
      expect(r.ok, JSON.stringify(r)).toBe(true);
      return r.result as T;
    };
    const lastOf = (action: string) =>
      [...s.ctx.store.events()].findLast((e) => e.action === action)!;

    it("are the officer's alone: operators and auditors are refused before anything happens", async () => {
      const before = s.ctx.store.head()!.seq;
      for (const role of ["operator", "auditor"] as const)
        for (const [channel, args] of OFFICER_ACTS)
          expect(refusedCode(await ask(channel, args, role)), `${role} ${channel}`).toBe(
            "ROLE_FORBIDDEN",
          );
      // Each refusal is in the log as api.refused (once per source and reason in an interval,
      // so the first role test may have recorded it), and nothing else was recorded.
      const after = [...s.ctx.store.events()].filter((e) => e.seq > before);
      expect(after.filter((e) => e.action !== "api.refused")).toEqual([]);
      const refused = s.ctx.store.queryEvents({ action: "api.refused" });
      for (const role of ["operator", "auditor"] as const)
        for (const [channel] of OFFICER_ACTS)
          expect(
            refused.some(
              (e) =>
                e.actor === `${role}-1` && e.subject === channel && e.code === "ROLE_FORBIDDEN",
            ),
            `${role} ${channel}`,
          ).toBe(true);
      expect(readdirSync(exportDir)).toEqual([]);
      expect(s.ctx.store.getCa("dev-ica")!.status).toBe("active");
    });

    it("shows which profiles use each CA and which are roots; deactivates, rotates, activates and publishes a CRL as the CLI does", async () => {
      const list = await ask("cas.list", {}, "auditor");
      expect(list.ok).toBe(true);
      const cas = res<unknown>(list) as {
        label: string;
        root: boolean;
        usedBy: string[];
      }[];
      expect(cas.find((c) => c.label === "dev-root")).toMatchObject({ root: true, usedBy: [] });
      expect(cas.find((c) => c.label === "dev-ica")).toMatchObject({
        root: false,
        usedBy: ["default"],
      });

      // Deactivating a CA a profile issues under is refused, naming the profile, and recorded.
      const inUse = await ask("cas.deactivate", { label: "dev-ica" });
      expect(refusedCode(inUse)).toBe("CA_IN_USE");
      expect(inUse.error?.message).toContain('"default"');
      expect(lastOf("ca.deactivate")).toMatchObject({
        actor: "officer-1",
        subject: "dev-ica",
        outcome: "refused",
        code: "CA_IN_USE",
      });
      // A root never signs devices: rotating a profile to one is refused.
      expect(refusedCode(await ask("cas.rotate", { profile: "default", to: "dev-root" }))).toBe(
        "CA_NOT_FOR_DEVICES",
      );
      // An unknown profile is refused and recorded, as from the command line.
      expect(refusedCode(await ask("cas.rotate", { profile: "no-such", to: "ica-2" }))).toBe(
        "PROFILE_UNKNOWN",
      );
      expect(lastOf("ca.rotate")).toMatchObject({
        actor: "officer-1",
        subject: "no-such",
        outcome: "refused",
        code: "PROFILE_UNKNOWN",
      });

      // A CRL is signed in the token: only inside a signing session. Nothing is written or numbered.
      const closed = await ask("cas.publishCrl", { ca: "dev-ica" });
      expect(refusedCode(closed)).toBe("SIGNING_SESSION_REQUIRED");
      expect(readdirSync(exportDir)).toEqual([]);
      expect(s.ctx.store.lastCrl("dev-ica")).toBeNull();
      expect((await ask("signing.open", { pin: "246810" })).ok).toBe(true);
      try {
        // A second intermediate under the root, and the profile moved to it.
        await s.ca.create({
          label: "ica-2",
          keyType: "ec-p256",
          subject: "CN=Kiosk rotation ICA,O=Linesign test",
          signing: { mode: "root", rootLabel: "dev-root" },
        });
        const rotated = await ask("cas.rotate", { profile: "default", to: "ica-2" });
        expect(rotated).toEqual({
          ok: true,
          result: { profile: "default", from: "dev-ica", to: "ica-2", stillUsing: [] },
        });
        expect(lastOf("ca.rotate")).toMatchObject({
          actor: "officer-1",
          subject: "default",
          outcome: "ok",
        });
        expect(JSON.parse(readFileSync(s.home.configPath, "utf8")).profiles.default.ca).toBe(
          "ica-2",
        );
        // The running service issues under the new CA from its next device on, and says so.
        const issued = await s.issuance.issue({
          csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "kiosk-rot-1"]] }),
          origin: "t",
        });
        expect(issued.issuance.caLabel).toBe("ica-2");
        await s.issuance.confirm(issued.issuance.id, issued.issuance.fingerprint);
        const status = await ask("station.status", {});
        expect(res<{ profiles: unknown }>(status).profiles).toEqual([
          { name: "default", ca: "ica-2" },
        ]);

        // Now dev-ica issues for nobody: it is deactivated, then activated again, as the CLI records.
        const off = await ask("cas.deactivate", { label: "dev-ica" });
        expect(off).toMatchObject({ ok: true, result: { label: "dev-ica", status: "inactive" } });
        expect(lastOf("ca.deactivate")).toMatchObject({ actor: "officer-1", outcome: "ok" });
        expect(lastOf("ca.deactivate").details).toMatchObject({ from: "active", to: "inactive" });
        const on = await ask("cas.activate", { label: "dev-ica" });
        expect(on).toMatchObject({ ok: true, result: { status: "active", usedBy: [] } });
        expect(refusedCode(await ask("cas.activate", { label: "dev-ica" }))).toBe("CA_STATE");

        // The medium taken out: its mount point is left, an empty folder on the system's disk,
        // where a CRL would never leave the station. Refused before signing, no number used.
        unmount(exportDir);
        expect(existsSync(exportDir)).toBe(true);
        const gone = await ask("cas.publishCrl", { ca: "ica-2" });
        expect(refusedCode(gone)).toBe("EXPORT_DIR_UNAVAILABLE");
        expect(gone.error?.message).toContain(exportDir);
        expect(s.ctx.store.lastCrl("ica-2")).toBeNull();
        expect(lastOf("ca.crl")).toMatchObject({
          outcome: "refused",
          code: "EXPORT_DIR_UNAVAILABLE",
        });
        expect(gone.error?.message).toContain("nothing is mounted there");
        expect(readdirSync(exportDir)).toEqual([]);
        // The mount point gone as well: refused the same way.
        rmdirSync(exportDir);
        expect(refusedCode(await ask("cas.publishCrl", { ca: "ica-2" }))).toBe(
          "EXPORT_DIR_UNAVAILABLE",
        );
        expect(s.ctx.store.lastCrl("ica-2")).toBeNull();
        // The medium put back.
        mkdirSync(exportDir);
        mountTmpfs(exportDir, "8m");

        // Published: the file is in the export folder, the screen is told where, the log has it.
        const crl = await ask("cas.publishCrl", { ca: "ica-2" });
        expect(crl.ok, JSON.stringify(crl)).toBe(true);
        const r = (crl as { result: { out: string; number: number; entries: number } }).result;
        expect(r).toMatchObject({ out: join(exportDir, "crl-ica-2-1.pem"), number: 1, entries: 0 });
        expect(readdirSync(exportDir)).toEqual(["crl-ica-2-1.pem"]);
        const parsed = new x509.X509Crl(readFileSync(r.out, "utf8"));
        const issuer = new x509.X509Certificate(Buffer.from(s.ctx.store.getCa("ica-2")!.certDer!));
        expect(parsed.issuer).toBe(issuer.subject);
        expect(await parsed.verify({ publicKey: issuer.publicKey })).toBe(true);
        expect(lastOf("ca.crl")).toMatchObject({
          actor: "officer-1",
          subject: "ica-2",
          outcome: "ok",
        });
        expect(lastOf("ca.crl").details).toMatchObject({ number: 1, entries: 0 });

        // Whoever brings the medium may plant a link where the write's temp file would go: the
        // link is never written through, and the file it points at is left as it was.
        const victim = join(mkdtempSync(join(tmpdir(), "linesign-victim-")), "victim.txt");
        writeFileSync(victim, "untouched");
        const planted = join(exportDir, `.crl-ica-2-2.pem.${process.pid}.tmp`);
        symlinkSync(victim, planted);
        const second = await ask("cas.publishCrl", { ca: "ica-2" });
        expect(second.ok, JSON.stringify(second)).toBe(true);
        expect(readFileSync(victim, "utf8")).toBe("untouched");
        const out2 = join(exportDir, "crl-ica-2-2.pem");
        expect(lstatSync(out2).isFile()).toBe(true);
        expect(readFileSync(out2, "utf8")).toContain("-----BEGIN X509 CRL-----");
        expect(statSync(out2).mode & 0o777).toBe(0o644);
        rmSync(planted);

        // Three asked at once (two screens, a double click) are three CRLs, each its own number.
        const three = await Promise.all(
          [1, 2, 3].map(() => ask("cas.publishCrl", { ca: "ica-2" })),
        );
        expect(three.map((c) => c.ok)).toEqual([true, true, true]);
        const numbers = three.map((c) => res<{ number: number }>(c).number).sort();
        expect(numbers).toEqual([3, 4, 5]);
        expect(
          s.ctx.store
            .crls()
            .filter((c) => c.caLabel === "ica-2")
            .map((c) => c.number),
        ).toEqual([1, 2, 3, 4, 5]);
        for (const n of numbers)
          expect(readFileSync(join(exportDir, `crl-ica-2-${n}.pem`), "utf8")).toContain(
            "-----BEGIN X509 CRL-----",
          );
      } finally {
        await ask("signing.close", {});
      }
    });

    it("exports a bundle to the export folder and imports its signed receipt by name only", async () => {
      await s.sync.addTarget("kiosk-t", {
        region: "eu-west-1",
        caMode: "SNI_ONLY",
        deviceRegistration: "with-ca",
      });
      // The bundle is signed by the audit key: only inside a signing session.
      expect(refusedCode(await ask("targets.exportBundle", { target: "kiosk-t" }))).toBe(
        "SIGNING_SESSION_REQUIRED",
      );
      expect((await ask("signing.open", { pin: "246810" })).ok).toBe(true);
      const x = await ask("targets.exportBundle", { target: "kiosk-t" });
      await ask("signing.close", {});
      expect(x.ok, JSON.stringify(x)).toBe(true);
      const b = (x as { result: { out: string; bundle: string; devices: number } }).result;
      expect(b.out).toBe(join(exportDir, `bundle-kiosk-t-${b.bundle}.json`));
      expect(b.devices).toBe(1);
      expect(lastOf("bundle.export")).toMatchObject({ actor: "officer-1", outcome: "ok" });
      const listed = await ask("exports.list", {});
      expect(listed).toMatchObject({ ok: true, result: { dir: exportDir, configured: true } });
      expect(res<{ files: { name: string }[] }>(listed).files.map((f) => f.name)).toContain(
        `bundle-kiosk-t-${b.bundle}.json`,
      );

      // The online side's receipt, signed by an enrolled uploader, comes back on the medium.
      const uploader = await createUploaderIdentity("kiosk-uploader");
      await enrollUploader(s.ctx, "kiosk-uploader", uploader.certPem);
      const receipt = receiptFor(readFileSync(b.out, "utf8"), uploader, {
        region: "eu-west-1",
        account: "123456789012",
      });
      const name = `bundle-kiosk-t-${b.bundle}.json.receipt.json`;
      writeFileSync(join(exportDir, name), receipt);

      // Only a plain name of a plain file in the folder: no path, no link, nothing oversized.
      const outside = mkdtempSync(join(tmpdir(), "linesign-outside-"));
      writeFileSync(join(outside, "r.json"), receipt);
      symlinkSync(join(outside, "r.json"), join(exportDir, "link.json"));
      writeFileSync(join(exportDir, "huge.json"), "");
      truncateSync(join(exportDir, "huge.json"), 64 * 1024 * 1024 + 1);
      writeFileSync(join(exportDir, "unsigned.json"), JSON.stringify({ receipt: "{}" }));
      // A FIFO would hang a plain open until someone writes to it.
      expect(spawnSync("mkfifo", [join(exportDir, "pipe.json")]).status).toBe(0);
      for (const [bad, why] of [
        [`../${outside.split("/").pop()}/r.json`, "not the name of a file in the export folder"],
        [join(outside, "r.json"), "not the name of a file in the export folder"],
        ["link.json", "is a link"],
        ["huge.json", "larger than 64 MiB"],
        ["absent.json", "is not there"],
        ["pipe.json", "is not a plain file"],
      ] as const) {
        const r = await ask("targets.importReceipt", { name: bad });
        expect(refusedCode(r), bad).toBe("EXPORT_FILE_REFUSED");
        expect(r.error?.message, bad).toContain(why);
        expect(lastOf("bundle.receipt")).toMatchObject({
          actor: "officer-1",
          outcome: "refused",
          code: "EXPORT_FILE_REFUSED",
        });
      }
      // The links and the oversized file are not offered.
      const offered = res<{ files: { name: string }[] }>(await ask("exports.list", {})).files.map(
        (f) => f.name,
      );
      expect(offered).not.toContain("link.json");
      expect(offered).not.toContain("pipe.json");
      // The receipt's own checks, as import-receipt runs them.
      const unsigned = await ask("targets.importReceipt", { name: "unsigned.json" });
      expect(refusedCode(unsigned)).toBe("RECEIPT_INVALID");
      expect(unsigned.error?.message).toContain("not signed by an uploader");
      expect(s.ctx.store.uploads("kiosk-t").filter((u) => u.state === "done")).toHaveLength(0);

      const ok = await ask("targets.importReceipt", { name });
      expect(ok).toMatchObject({
        ok: true,
        result: {
          file: join(exportDir, name),
          bundleId: b.bundle,
          done: 1,
          failed: 0,
          uploader: "kiosk-uploader",
        },
      });
      expect(lastOf("bundle.receipt")).toMatchObject({
        actor: "officer-1",
        subject: "kiosk-t",
        outcome: "ok",
      });
      expect(s.ctx.store.uploads("kiosk-t").filter((u) => u.state === "done")).toHaveLength(1);
      // Imported once: a replay is refused by the receipt's own check.
      expect(refusedCode(await ask("targets.importReceipt", { name }))).toBe("RECEIPT_INVALID");
      // The target's last sync is this round trip.
      const t = res<{ name: string; lastSync: { via: string } | null }[]>(
        await ask("targets.list", {}),
      ).find((x) => x.name === "kiosk-t");
      expect(t?.lastSync?.via).toBe("bundle");
    });
  });

  it("answers only the fields the contract declares", async () => {
    const r = await service.call(
      "auth.login",
      { name: "auditor-1", passphrase: PASS.auditor },
      null,
    );
    // The login token goes to the transport, never into the body the page sees.
    expect(JSON.stringify(r.reply)).not.toContain(r.loginToken!);
    const log = await service.call("audit.log", { limit: 3 }, tokens.auditor);
    expect(log.reply.ok).toBe(true);
    for (const e of (log.reply as { result: Record<string, unknown>[] }).result)
      expect(Object.keys(e).sort()).toEqual(
        ["action", "actor", "code", "message", "outcome", "seq", "subject", "ts"].sort(),
      );
  });

  it("ends a login after its idle time, and an officer's logout ends the signing session", async () => {
    const opened = await service.call("signing.open", { pin: "246810" }, tokens.officer);
    expect(opened.reply).toMatchObject({ ok: true, result: { open: true, officer: "officer-1" } });
    clock += 61_000;
    const late = await service.call("line.watch", { after: -1, waitMs: 0 }, tokens.operator);
    expect(late.reply).toMatchObject({ ok: false, error: { code: "AUTH_REQUIRED" } });
    expect(
      s.ctx.store.queryEvents({ action: "user.logout", actor: "operator-1" }).at(-1),
    ).toMatchObject({
      details: { via: "kiosk", reason: "idle" },
    });
    const officer = await login("officer");
    // The officer's earlier login lapsed too; signing out of a new one ends the session they opened.
    const out = await service.call("auth.logout", {}, officer);
    expect(out.reply.ok).toBe(true);
    expect(s.signing.view().open).toBe(false);
    expect(s.ctx.store.queryEvents({ action: "signing.close" }).at(-1)).toMatchObject({
      details: { reason: "logout" },
    });
  });

  it("only a person's acts keep a sign-in and a signing session alive, not the page's polls", async () => {
    const officer = await login("officer");
    const opened = await service.call("signing.open", { pin: "246810" }, officer);
    expect(opened.reply.ok).toBe(true);
    const usedAt = s.signing.view().lastUsedAt;
    // The Line screen polls every 10 s for 70 s: no act of the person.
    for (let i = 0; i < 7; i++) {
      clock += 10_000;
      const w = await service.call("line.watch", { after: -1, waitMs: 0 }, officer);
      if (i < 5) expect(w.reply.ok, `poll ${i}`).toBe(true);
      await service.call("station.status", {}, officer);
    }
    expect(s.signing.view().lastUsedAt).toBe(usedAt);
    const late = await service.call("workOrders.list", {}, officer);
    expect(late.reply).toMatchObject({ ok: false, error: { code: "AUTH_REQUIRED" } });
    // The officer's sign-in ended idle (and with it, the session they opened).
    expect(
      s.ctx.store.queryEvents({ action: "user.logout", actor: "officer-1" }).at(-1),
    ).toMatchObject({
      details: { reason: "idle" },
    });
    await s.signing.close("closed");
  });

  it("disabling or resetting a user ends their existing sign-ins at once", async () => {
    await s.users.add("temp-op", "operator", "temp-op-pass");
    await s.users.add("temp-op2", "operator", "temp-op2-pass");
    const a = (
      await service.call("auth.login", { name: "temp-op", passphrase: "temp-op-pass" }, null)
    ).loginToken!;
    const b = (
      await service.call("auth.login", { name: "temp-op2", passphrase: "temp-op2-pass" }, null)
    ).loginToken!;
    expect((await service.call("auth.whoami", {}, a)).reply).toMatchObject({
      ok: true,
      result: { name: "temp-op" },
    });
    await s.users.disable("temp-op");
    await s.users.reset("temp-op2", "another-pass-1");
    expect((await service.call("line.watch", { after: -1, waitMs: 0 }, a)).reply).toMatchObject({
      ok: false,
      error: { code: "AUTH_REQUIRED" },
    });
    expect((await service.call("auth.whoami", {}, b)).reply).toEqual({ ok: true, result: null });
    const ends = s.ctx.store
      .queryEvents({ action: "user.logout" })
      .filter((e) => e.actor.startsWith("temp-op"))
      .map((e) => [e.actor, e.details.reason]);
    expect(ends).toEqual([
      ["temp-op", "disabled"],
      ["temp-op2", "reset"],
    ]);
  });

  it("a hand-over signs the officer out but leaves their signing session to the line", async () => {
    const officer = await login("officer");
    await service.call("signing.open", { pin: "246810" }, officer);
    const r = await service.call("auth.handover", {}, officer);
    expect(r.reply).toEqual({ ok: true, result: { done: true } });
    expect((await service.call("auth.whoami", {}, officer)).reply).toEqual({
      ok: true,
      result: null,
    });
    expect(s.signing.view()).toMatchObject({ open: true, officer: "officer-1" });
    const operator = await login("operator");
    const watch = await service.call("line.watch", { after: -1, waitMs: 0 }, operator);
    expect(watch.reply).toMatchObject({ ok: true, result: { signing: { open: true } } });
    // Closing it takes an officer.
    expect((await service.call("signing.close", {}, operator)).reply).toMatchObject({
      ok: false,
      error: { code: "ROLE_FORBIDDEN" },
    });
    const back = await login("officer");
    expect((await service.call("signing.close", {}, back)).reply).toMatchObject({
      ok: true,
      result: { open: false },
    });
  });

  describe("transports", () => {
    let lb: LoopbackListening;
    let closeUnix: () => Promise<void>;
    let socket: string;
    beforeAll(async () => {
      socket = join(s.home.dir, "run", "station.sock");
      closeUnix = (await listenUnix(service, socket)).close;
      lb = await listenLoopback(service, { port: 0, uiDir: null });
    });
    afterAll(async () => {
      await lb.close();
      await closeUnix();
    });

    const post = (
      o: { socketPath?: string; port?: number; headers?: Record<string, string> },
      body: string,
    ) =>
      new Promise<{ status: number; body: string; login?: string }>((resolve, reject) => {
        const req = request(
          {
            ...(o.socketPath ? { socketPath: o.socketPath } : { host: "127.0.0.1", port: o.port }),
            path: "/api/call",
            method: "POST",
            // A fresh connection each time: a kept-alive one may be closed by the server as it is reused.
            agent: false,
            headers: { "content-type": "application/json", ...o.headers },
          },
          (res) => {
            let b = "";
            res.setEncoding("utf8").on("data", (d: string) => (b += d));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                body: b,
                login: res.headers[LOGIN_HEADER] as string | undefined,
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(body);
      });

    it("the socket is this user's alone, answers calls, and a second service cannot take it", async () => {
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      expect(statSync(join(s.home.dir, "run")).mode & 0o777).toBe(0o700);
      const r = await post(
        { socketPath: socket },
        JSON.stringify({
          channel: "auth.login",
          args: { name: "auditor-1", passphrase: PASS.auditor },
        }),
      );
      expect(r.status).toBe(200);
      expect(r.login).toMatch(/^[\w-]{40,}$/);
      const who = await post(
        { socketPath: socket, headers: { [LOGIN_HEADER]: r.login! } },
        JSON.stringify({ channel: "auth.whoami", args: {} }),
      );
      expect(JSON.parse(who.body)).toEqual({
        ok: true,
        result: { name: "auditor-1", role: "auditor" },
      });
      await expect(listenUnix(service, socket)).rejects.toThrow(/already running/);
      await expect(listenUnix(service, `/tmp/${"x".repeat(120)}.sock`)).rejects.toThrow(
        /too long for a Unix socket/,
      );
    });

    it("a user disabled or reset on the command line loses the kiosk at once, and so does their signing session", async () => {
      const call = async (channel: string, args: unknown, login?: string) =>
        JSON.parse(
          (
            await post(
              { socketPath: socket, headers: login ? { [LOGIN_HEADER]: login } : {} },
              JSON.stringify({ channel, args }),
            )
          ).body,
        ) as { ok: boolean; result: { version: number; signing: { open: boolean } } };
      const signIn = async (name: string, passphrase: string) =>
        (
          await post(
            { socketPath: socket },
            JSON.stringify({ channel: "auth.login", args: { name, passphrase } }),
          )
        ).login!;
      await s.users.add("temp-op3", "operator", "temp-op3-pass");
      const officer = await signIn("officer-1", PASS.officer);
      const operator = await signIn("operator-1", PASS.operator);
      await signIn("temp-op3", "temp-op3-pass");
      expect(await call("signing.open", { pin: "246810" }, officer)).toMatchObject({ ok: true });
      // Handed over: the session stays with the line, and the officer makes no more calls.
      expect(await call("auth.handover", {}, officer)).toMatchObject({ ok: true });
      const before = await call("line.watch", { after: -1, waitMs: 0 }, operator);
      expect(before.result.signing).toMatchObject({ open: true, officer: "officer-1" });
      // The command line is another process, on the same database.
      const env = cleanEnv({ SOFTHSM2_CONF: process.env.SOFTHSM2_CONF, LINESIGN_HOME: s.home.dir });
      // Run beside the service, which goes on answering and looking.
      const off = await linesignAsync(["--json", "user", "disable", "--name", "temp-op3"], env);
      expect(off.code, off.stdout).toBe(0);
      const reset = await linesignAsync(["--json", "user", "reset", "--name", "officer-1"], {
        ...env,
        LINESIGN_NEW_PASSPHRASE: PASS.officer,
      });
      expect(reset.code, reset.stdout).toBe(0);
      // The operator's watch waits for the board to change: the session ends without a call of the
      // officer, and the disabled operator's sign-in without a call of theirs.
      const after = await call(
        "line.watch",
        { after: before.result.version, waitMs: 10_000 },
        operator,
      );
      expect(after.result.signing).toMatchObject({ open: false });
      expect(s.ctx.store.queryEvents({ action: "signing.close" }).at(-1)).toMatchObject({
        actor: "officer-1",
        details: { reason: "reset" },
      });
      expect(
        s.ctx.store
          .queryEvents({ action: "user.logout" })
          .filter((e) => e.actor === "temp-op3")
          .map((e) => e.details.reason),
      ).toEqual(["disabled"]);
      expect(await call("auth.whoami", {}, operator)).toMatchObject({
        ok: true,
        result: { name: "operator-1" },
      });
    });

    it("loopback needs the secret, this Host and this Origin; bodies are JSON and small", async () => {
      const auth = { authorization: `Bearer ${lb.secret}` };
      const ok = await post(
        { port: lb.port, headers: auth },
        JSON.stringify({ channel: "auth.whoami", args: {} }),
      );
      expect(ok.status).toBe(200);
      const before = s.ctx.store.queryEvents({ action: "api.refused" }).length;
      expect((await post({ port: lb.port }, "{}")).status).toBe(401);
      expect(
        (await post({ port: lb.port, headers: { authorization: "Bearer wrong" } }, "{}")).status,
      ).toBe(401);
      expect(
        (await post({ port: lb.port, headers: { ...auth, host: "evil.example" } }, "{}")).status,
      ).toBe(421);
      expect(
        (await post({ port: lb.port, headers: { ...auth, origin: "http://evil.example" } }, "{}"))
          .status,
      ).toBe(403);
      expect((await post({ port: lb.port, headers: auth }, "{not json")).status).toBe(400);
      expect((await post({ port: lb.port, headers: auth }, "x".repeat(70_000))).status).toBe(413);
      expect(
        (await post({ port: lb.port, headers: { ...auth, "content-type": "text/plain" } }, "{}"))
          .status,
      ).toBe(415);
      const refused = s.ctx.store.queryEvents({ action: "api.refused" }).slice(before);
      // The second call without the secret is counted into the interval's summary, not written.
      expect(refused.map((e) => e.message)).toEqual([
        "A call without the service's secret.",
        "A call from another origin.",
        "The request is not valid JSON.",
        "The request is over 64 KiB.",
        "The request is not JSON.",
      ]);
    });

    it("a flood of refused calls writes one entry per source and reason per interval, with the count", async () => {
      service.refusals.flush(); // a fresh interval
      const before = s.ctx.store.queryEvents({ action: "api.refused" }).length;
      // In waves of 50 at once: a listener keeps at most 64 connections open.
      const statuses: number[] = [];
      for (let wave = 0; wave < 10; wave++) {
        const calls = [];
        for (let i = 0; i < 40; i++) calls.push(post({ port: lb.port }, "{}"));
        for (let i = wave * 10; i < wave * 10 + 10; i++)
          calls.push(
            post({ socketPath: socket }, JSON.stringify({ channel: `no.such.${i}`, args: {} })),
          );
        statuses.push(...(await Promise.all(calls)).map((r) => r.status));
      }
      expect(statuses.filter((x) => x === 401)).toHaveLength(400);
      expect(statuses.filter((x) => x === 200)).toHaveLength(100);
      // While it lasts, one entry per source and reason: the first of each.
      expect(s.ctx.store.queryEvents({ action: "api.refused" }).length - before).toBe(2);
      // The interval ends: each source and reason gets one summary with its count.
      clock += 61_000;
      await post({ port: lb.port }, "{}");
      const after = s.ctx.store.queryEvents({ action: "api.refused" }).slice(before);
      const summaries = after.filter((e) => e.details.repeated !== undefined);
      expect(summaries.map((e) => [e.subject, e.details.repeated]).sort()).toEqual([
        ["(transport)", 399],
        ["no.such.0", 99],
      ]);
      expect(after.length).toBe(5);
    });

    it("past its cap of sources and reasons, an interval counts the rest under one entry", async () => {
      const log = new RefusalLog(s.ctx, {
        intervalMs: 1000,
        maxKeys: 4,
        now: () => clock,
        timer: false,
      });
      const before = s.ctx.store.queryEvents({ action: "api.refused" }).length;
      for (let i = 0; i < 1000; i++)
        log.record({
          source: `port-${i}`,
          reason: "X",
          entry: {
            actor: "kiosk",
            action: "api.refused",
            subject: `s${i}`,
            outcome: "refused",
            code: "API_REQUEST_INVALID",
            message: "m",
            details: {},
          },
        });
      log.flush();
      const written = s.ctx.store.queryEvents({ action: "api.refused" }).slice(before);
      expect(written).toHaveLength(5);
      expect(written.at(-1)).toMatchObject({ subject: "(many)", details: { repeated: 996 } });
    });
  });
});
