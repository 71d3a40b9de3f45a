/**
 * AWS IoT sync end to end: the real `linesign` CLI and the real SDK against
 * the emulator in fixtures/ (a real HTTP server), accounts told apart by
 * AWS profiles. Assertions are on the emulator's state and request log, the
 * station's rows and its event log.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DescribeCACertificateCommand,
  IoTClient,
  ListCertificatesByCACommand,
} from "@aws-sdk/client-iot";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IotEmulator } from "../../fixtures/aws-iot-emulator.js";
import { deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../helpers/engine.js";
import { cleanEnv, linesignAsync } from "../helpers/cli.js";

const A = "111111111111";
const B = "222222222222";
const C = "333333333333";
const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));

describe("AWS IoT sync", () => {
  let emu: IotEmulator;
  let es: EngineStation;
  let env: NodeJS.ProcessEnv;
  let dir: string;

  const run = (args: string[]) => linesignAsync(["--json", ...args], env);
  const jsonLines = (out: string) =>
    out
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const summaryOf = (out: string) => jsonLines(out).find((l) => l.event === "summary")!;
  const addTarget = async (name: string, profile: string, region: string, extra: string[]) => {
    const r = await run([
      "target",
      "add",
      "--name",
      name,
      "--region",
      region,
      "--endpoint",
      emu.url,
      "--profile",
      profile,
      ...extra,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  };
  const sdk = (key: string, region: string) =>
    new IoTClient({
      region,
      endpoint: emu.url,
      credentials: { accessKeyId: key, secretAccessKey: "s" },
    });
  const uploads = () => {
    const db = new Database(join(es.home, "station.db"), { readonly: true });
    try {
      return db
        .prepare(
          "SELECT u.*, i.serial, i.ca_label AS caLabel, i.fingerprint FROM uploads u JOIN issuances i ON i.id = u.issuance_id",
        )
        .all() as {
        target: string;
        state: string;
        aws_certificate_id: string | null;
        last_error: string | null;
        serial: string;
        caLabel: string;
        fingerprint: string;
      }[];
    } finally {
      db.close();
    }
  };

  /** Issues, delivers and confirms `n` device certificates under `profile` in-process. */
  async function issue(profile: string, n: number, prefix: string): Promise<void> {
    const s = es.open();
    try {
      for (let i = 0; i < n; i++) {
        const id = `${prefix}-${i}`;
        const out = await s.issuance.issue({
          csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] }),
          profile,
          origin: "test",
        });
        await s.issuance.markDelivered(out.issuance.id);
        await s.issuance.confirm(out.issuance.id, out.issuance.fingerprint);
      }
    } finally {
      await s.close();
    }
  }

  beforeAll(async () => {
    emu = new IotEmulator({
      accounts: [
        { accessKeyId: "AKIAACCOUNTA", accountId: A },
        { accessKeyId: "AKIAACCOUNTB", accountId: B },
        { accessKeyId: "AKIAACCOUNTC", accountId: C },
      ],
    });
    await emu.start();
    es = await engineStation({
      a: { ca: "dev-ica", allowReissue: true },
      b: { ca: "line-b", allowReissue: true },
    });
    const s = es.open();
    await s.ca.create({
      label: "line-b",
      keyType: "ec-p256",
      subject: "CN=Line B Issuing CA",
      signing: { mode: "root", rootLabel: "dev-root" },
    });
    await s.close();
    dir = mkdtempSync(join(tmpdir(), "linesign-aws-"));
    writeFileSync(
      join(dir, "credentials"),
      "[acct-a]\naws_access_key_id = AKIAACCOUNTA\naws_secret_access_key = secret-a\n\n[acct-b]\naws_access_key_id = AKIAACCOUNTB\naws_secret_access_key = secret-b\n\n[acct-c]\naws_access_key_id = AKIAACCOUNTC\naws_secret_access_key = secret-c\n",
    );
    writeFileSync(join(dir, "config"), "");
    env = cleanEnv({
      SOFTHSM2_CONF: es.hsm.conf,
      LINESIGN_HOME: es.home,
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "credentials"),
      AWS_CONFIG_FILE: join(dir, "config"),
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
    });
    delete env.AWS_ACCESS_KEY_ID;
    delete env.AWS_SECRET_ACCESS_KEY;
    delete env.AWS_PROFILE;
  });
  afterAll(async () => {
    await emu.close();
  });

  it("first seed article: two CAs, the second inactive; its devices refused clearly; CA one deactivated keeps its devices", async () => {
    await issue("a", 3, "one");
    await issue("b", 2, "two");
    // The second CA is inactive when it is registered.
    expect((await run(["ca", "deactivate", "--label", "line-b"])).code).toBe(0);
    await addTarget("seed1", "acct-a", "us-east-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const dry = await run(["sync", "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(emu.requests).toHaveLength(0); // the plan calls nothing
    const r = await run(["sync", "--target", "seed1"]);
    expect(r.code).toBe(1); // the inactive CA's devices failed for good
    const st = emu.state(A, "us-east-1");
    const byLabel = (subject: string) => st.cas.find((c) => c.subject.includes(subject))!;
    expect(byLabel("CN=Linesign Development Issuing CA") ?? st.cas[0]).toBeDefined();
    expect(st.cas.map((c) => [c.status, c.mode]).sort()).toEqual([
      ["ACTIVE", "DEFAULT"],
      ["INACTIVE", "DEFAULT"],
    ]);
    expect(st.certs).toHaveLength(3);
    const refused = uploads().filter((u) => u.caLabel === "line-b");
    expect(refused).toHaveLength(2);
    for (const u of refused) {
      expect(u.state).toBe("failed");
      expect(u.last_error).toContain('CA "line-b"');
      expect(u.last_error).toContain(`account ${A}`);
      expect(u.last_error).toContain("us-east-1");
      expect(u.last_error).toContain("linesign ca activate --label line-b");
    }
    // CA one deactivated at the station: INACTIVE at AWS, its devices stay ACTIVE.
    expect((await run(["ca", "deactivate", "--label", "dev-ica"])).code).toBe(0);
    const again = await run(["sync", "--target", "seed1"]);
    expect(
      jsonLines(again.stdout).some((l) => l.kind === "ca-status" && l.outcome === "updated"),
    ).toBe(true);
    const one = emu
      .state(A, "us-east-1")
      .cas.find(
        (c) =>
          c.status === "INACTIVE" && emu.state(A, "us-east-1").certs.some((x) => x.caId === c.id),
      )!;
    expect(one).toBeDefined();
    const listed = await sdk("AKIAACCOUNTA", "us-east-1").send(
      new ListCertificatesByCACommand({ caCertificateId: one.id, pageSize: 2 }),
    );
    expect(listed.certificates).toHaveLength(2);
    expect(listed.nextMarker).toBeDefined();
    const rest = await sdk("AKIAACCOUNTA", "us-east-1").send(
      new ListCertificatesByCACommand({
        caCertificateId: one.id,
        pageSize: 2,
        marker: listed.nextMarker,
      }),
    );
    expect(
      [...listed.certificates!, ...rest.certificates!].every((c) => c.status === "ACTIVE"),
    ).toBe(true);
    expect(rest.certificates).toHaveLength(1);
    expect((await run(["ca", "activate", "--label", "dev-ica"])).code).toBe(0);
    expect((await run(["ca", "activate", "--label", "line-b"])).code).toBe(0);
    const events = es.open();
    const actions = [...events.ctx.store.events()].map((e) => e.action);
    await events.close();
    expect(actions.filter((a) => a === "sync.run").length).toBeGreaterThanOrEqual(2);
    expect(actions).toContain("sync.ca-register");
  });

  it("second seed article: one CA in two accounts of a region, DEFAULT and SNI_ONLY; a second DEFAULT is refused", async () => {
    await addTarget("eu-a", "acct-a", "eu-west-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--auto-registration",
      "true",
      "--max-rps",
      "100",
    ]);
    await addTarget("eu-b", "acct-b", "eu-west-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--auto-registration",
      "true",
      "--max-rps",
      "100",
    ]);
    expect((await run(["sync", "--target", "eu-a", "--target", "eu-b"])).code).toBe(0);
    for (const [key, account, mode] of [
      ["AKIAACCOUNTA", A, "DEFAULT"],
      ["AKIAACCOUNTB", B, "SNI_ONLY"],
    ] as const) {
      const ca = emu.state(account, "eu-west-1").cas[0]!;
      const d = await sdk(key, "eu-west-1").send(
        new DescribeCACertificateCommand({ certificateId: ca.id }),
      );
      expect(d.certificateDescription).toMatchObject({
        certificateMode: mode,
        status: "ACTIVE",
        autoRegistrationStatus: "ENABLE",
      });
    }
    // A third account wants it in DEFAULT too: refused (one account per region).
    await addTarget("eu-c-default", "acct-c", "eu-west-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const r = await run(["sync", "--target", "eu-c-default"]);
    expect(r.code).toBe(1);
    const ca = jsonLines(r.stdout).find((l) => l.kind === "ca")!;
    expect(ca).toMatchObject({ outcome: "failed", code: "CertificateConflictException" });
    // And account B, which holds it as SNI_ONLY, cannot hold it as DEFAULT as well.
    await addTarget("eu-b-default", "acct-b", "eu-west-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const mode = await run(["sync", "--target", "eu-b-default"]);
    expect(mode.code).toBe(1);
    expect(jsonLines(mode.stdout).find((l) => l.kind === "ca")).toMatchObject({
      outcome: "failed",
      code: "CertificateModeMismatch",
    });
    expect(String(ca.message)).toContain("another account");
  });

  it("without a CA into two accounts; and just-in-time registration uploads only the CA", async () => {
    await addTarget("noca-a", "acct-a", "ap-south-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "without-ca",
      "--max-rps",
      "100",
    ]);
    await addTarget("noca-b", "acct-b", "ap-south-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "without-ca",
      "--max-rps",
      "100",
    ]);
    expect((await run(["sync", "--target", "noca-a", "--target", "noca-b"])).code).toBe(0);
    for (const account of [A, B]) {
      const st = emu.state(account, "ap-south-1");
      expect(st.cas).toHaveLength(0);
      expect(st.certs.length).toBe(5);
      expect(st.certs.every((c) => c.mode === "SNI_ONLY" && c.caId === null)).toBe(true);
    }
    const template = join(dir, "jitp.json");
    writeFileSync(template, JSON.stringify({ Resources: { thing: { Type: "AWS::IoT::Thing" } } }));
    await addTarget("jitr", "acct-b", "us-west-2", [
      "--jitp-template",
      template,
      "--jitp-role-arn",
      "arn:aws:iam::222222222222:role/JITPRole",
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "jitr",
      "--max-rps",
      "100",
    ]);
    const r = await run(["sync", "--target", "jitr"]);
    expect(r.code, r.stdout).toBe(0);
    const st = emu.state(B, "us-west-2");
    expect(st.certs).toHaveLength(0);
    expect(st.cas.every((c) => c.status === "ACTIVE" && c.autoRegistration === "ENABLE")).toBe(
      true,
    );
    const s = summaryOf(r.stdout) as {
      targets: { devices: { leftToJitr: number }; notes: string[] }[];
    };
    expect(s.targets[0]!.devices.leftToJitr).toBe(5);
    expect(s.targets[0]!.notes.join(" ")).toContain("present its CA certificate in its TLS chain");
  });

  it("with 20% injected faults registers every certificate exactly once; SIGKILL mid-sync loses and duplicates nothing", async () => {
    await issue("a", 40, "bulk");
    await addTarget("faulty", "acct-a", "sa-east-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "200",
    ]);
    emu.faults = { rate: 0.2 };
    emu.rps = 120; // below the target's ceiling: AWS throttles, the job backs off and retries
    const first = emu.requests.length;
    // Killed while requests are on their way.
    const child = spawn(process.execPath, [BIN, "--json", "sync", "--target", "faulty"], {
      env,
      stdio: "ignore",
    });
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (emu.requests.length - first >= 12) {
          clearInterval(t);
          resolve();
        }
      }, 5);
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    for (let i = 0; i < 5; i++) {
      const r = await run(["sync", "--target", "faulty"]);
      if (r.code === 0) break;
    }
    emu.faults = { rate: 0 };
    emu.rps = Infinity;
    const st = emu.state(A, "sa-east-1");
    const rows = uploads().filter((u) => u.target === "faulty");
    expect(rows.length).toBe(45);
    expect(rows.every((u) => u.state === "done")).toBe(true);
    expect(st.certs).toHaveLength(45);
    // Done only with an answer: every id the station holds is one AWS has, for that certificate.
    const ids = new Map(st.certs.map((c) => [c.id, c.pem]));
    for (const u of rows) expect(ids.has(u.aws_certificate_id!)).toBe(true);
    // Exactly once: no certificate was created by two successful registrations.
    const created = emu.requests.filter(
      (q) =>
        q.account === A &&
        q.region === "sa-east-1" &&
        q.path === "/certificate/register" &&
        q.status === 200,
    );
    expect(created.length).toBe(45);
  });

  it("never sends faster than the target's --max-rps", async () => {
    await addTarget("slow", "acct-b", "ca-central-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "20",
    ]);
    const from = emu.requests.length;
    expect((await run(["sync", "--target", "slow"])).code).toBe(0);
    const window = emu.requests
      .slice(from)
      .filter((q) => q.account === B && q.region === "ca-central-1");
    expect(window.length).toBeGreaterThanOrEqual(46);
    expect(emu.maxInWindow(B, 1000, from, "ca-central-1")).toBeLessThanOrEqual(20);
    // and it is not far below: the pacer keeps close to the ceiling.
    expect(emu.maxInWindow(B, 1000, from, "ca-central-1")).toBeGreaterThanOrEqual(15);
  });

  it("offline bundle: registers on an online machine; refuses tampering, a wrong trust certificate and a replayed receipt", async () => {
    await addTarget("offline", "acct-a", "eu-central-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const cert = join(dir, "station.pem");
    expect((await run(["station-cert", "--out", cert])).code).toBe(0);
    const bundle = join(dir, "bundle.json");
    // DEFAULT mode needs the online account's registration code, carried to the station.
    const noCode = await run(["export", "--target", "offline", "--out", bundle]);
    expect(noCode.code).toBe(2);
    expect(noCode.json.error!.message).toContain("get-registration-code");
    const code = (
      await sdk("AKIAACCOUNTA", "eu-central-1").send(
        new (await import("@aws-sdk/client-iot")).GetRegistrationCodeCommand({}),
      )
    ).registrationCode!;
    const exported = await run([
      "export",
      "--target",
      "offline",
      "--out",
      bundle,
      "--registration-code",
      code,
    ]);
    expect(exported.code, exported.stdout).toBe(0);
    const online = cleanEnv({
      AWS_SHARED_CREDENTIALS_FILE: env.AWS_SHARED_CREDENTIALS_FILE,
      AWS_CONFIG_FILE: env.AWS_CONFIG_FILE,
    });
    const upload = (file: string, trust = cert) =>
      linesignAsync(["--json", "upload", file, "--trust", trust], online);

    const text = readFileSync(bundle, "utf8");
    const file = JSON.parse(text) as { manifest: string; signature: string };
    const tampered = (name: string, f: typeof file) => {
      const p = join(dir, name);
      writeFileSync(p, JSON.stringify(f));
      return p;
    };
    const m = JSON.parse(file.manifest) as { devices: { pem: string }[]; station: string };
    const variants = {
      manifest: tampered("t1.json", {
        ...file,
        manifest: file.manifest.replace('"station":"', '"station":"x'),
      }),
      certificate: tampered("t2.json", {
        ...file,
        manifest: JSON.stringify({
          ...m,
          devices: m.devices.map((d, i) => (i === 0 ? { ...d, pem: d.pem.replace(/A/, "B") } : d)),
        }),
      }),
    };
    for (const [what, p] of Object.entries(variants)) {
      const r = await upload(p);
      expect(r.code, what).toBe(1);
      expect(r.json.error?.code ?? jsonLines(r.stdout).at(-1)?.error, what).toBeDefined();
      expect(r.stdout, what).toContain("BUNDLE_INVALID");
      expect(r.stdout, what).toContain("signature does not verify");
    }
    const other = join(dir, "other.pem");
    const otherStation = await engineStation();
    const os2 = otherStation.open();
    const { stationCertificate } = await import("../../src/app/sync/bundle.js");
    writeFileSync(other, await stationCertificate(os2.ctx, os2.checkpointer));
    await os2.close();
    process.env.SOFTHSM2_CONF = es.hsm.conf;
    const wrong = await upload(bundle, other);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain("BUNDLE_INVALID");
    expect(emu.state(A, "eu-central-1").certs).toHaveLength(0); // nothing was uploaded

    const ok = await upload(bundle);
    expect(ok.code, ok.stdout).toBe(0);
    const st = emu.state(A, "eu-central-1");
    expect(st.cas.length).toBeGreaterThanOrEqual(1);
    expect(st.cas.every((c) => c.mode === "DEFAULT" && c.status === "ACTIVE")).toBe(true);
    expect(st.certs).toHaveLength(45);
    const receipt = `${bundle}.receipt.json`;
    const imported = await run(["import-receipt", receipt]);
    expect(imported.code, imported.stdout).toBe(0);
    expect(imported.json).toMatchObject({ done: 45, failed: 0, cas: st.cas.length });
    expect(uploads().filter((u) => u.target === "offline" && u.state === "done")).toHaveLength(45);
    const replay = await run(["import-receipt", receipt]);
    expect(replay.code).toBe(1);
    expect(replay.json.error).toMatchObject({ code: "RECEIPT_INVALID" });
    expect(replay.json.error!.message).toContain("imported already");
    expect((await run(["audit", "verify"])).json.ok).toBe(true);
  });
  it("needs SigV4; a target whose credentials AWS refuses stops at once with a clear note", async () => {
    await issue("a", 1, "stolen");
    const raw = await fetch(`${emu.url}/registrationcode`);
    expect(raw.status).toBe(401);
    expect(raw.headers.get("x-amzn-errortype")).toBe("UnauthorizedException");
    writeFileSync(
      join(dir, "credentials"),
      readFileSync(join(dir, "credentials"), "utf8") +
        "\n[acct-stolen]\naws_access_key_id = AKIAUNKNOWN\naws_secret_access_key = x\n",
    );
    await addTarget("stolen", "acct-stolen", "us-east-2", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const from = emu.requests.length;
    const r = await run(["sync", "--target", "stolen"]);
    expect(r.code).toBe(1);
    const s = summaryOf(r.stdout) as { targets: { notes: string[] }[] };
    expect(s.targets[0]!.notes.join(" ")).toContain("refused the credentials");
    expect(emu.requests.length - from).toBe(1); // nothing more was sent
  });
  it("recognises what AWS already holds after the station forgot it, and revokes what was revoked here", async () => {
    // The station forgets the target (a new database, a restored backup): AWS still has everything.
    expect((await run(["target", "remove", "--name", "slow"])).code).toBe(0);
    await addTarget("slow", "acct-b", "ca-central-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const before = emu.state(B, "ca-central-1");
    const r = await run(["sync", "--target", "slow"]);
    expect(r.code, r.stdout).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.find((l) => l.kind === "ca")).toMatchObject({ outcome: "already-registered" });
    const devices = lines.filter((l) => l.kind === "device");
    const fresh = devices.filter((l) => l.outcome === "registered").length; // issued since
    expect(devices.filter((l) => l.outcome === "already-registered")).toHaveLength(
      before.certs.length,
    );
    expect(devices).toHaveLength(before.certs.length + fresh);
    expect(emu.state(B, "ca-central-1").certs).toHaveLength(before.certs.length + fresh);
    // A certificate revoked at the station is revoked at every target where it was registered.
    const serial = uploads().find((u) => u.target === "slow")!.serial;
    const revoked = await run(["revoke", "--serial", serial, "--reason", "keyCompromise"]);
    expect(revoked.code, revoked.stdout).toBe(0);
    const victim = { serial };
    const rev = await run(["sync", "--target", "slow"]);
    expect(rev.code, rev.stdout).toBe(0);
    expect(jsonLines(rev.stdout).find((l) => l.kind === "revocation")).toMatchObject({
      outcome: "revoked",
      ref: victim.serial,
    });
    expect(
      emu
        .state(B, "ca-central-1")
        .certs.find(
          (c) =>
            c.id ===
            uploads().find((u) => u.serial === victim.serial && u.target === "slow")!
              .aws_certificate_id,
        )!.status,
    ).toBe("REVOKED");
    expect(uploads().find((u) => u.serial === victim.serial && u.target === "slow")!.state).toBe(
      "revoked",
    );
  });
});
