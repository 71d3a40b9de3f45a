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
const NO_NATIVE = fileURLToPath(new URL("../helpers/no-native.mjs", import.meta.url));

// Every step is a separate CLI process (and the station opens its token each time): generous.
describe("AWS IoT sync", { timeout: 600_000 }, () => {
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
  const SECRETS: Record<string, string> = {
    AKIAACCOUNTA: "secret-a",
    AKIAACCOUNTB: "secret-b",
    AKIAACCOUNTC: "secret-c",
  };
  const sdk = (key: string, region: string) =>
    new IoTClient({
      region,
      endpoint: emu.url,
      credentials: { accessKeyId: key, secretAccessKey: SECRETS[key]! },
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

  /**
   * An online machine: environment credentials only (no AWS profiles, no station home), its
   * own uploader folder, and the station's native modules made unloadable.
   */
  const onlineEnv = (key = "AKIAACCOUNTA"): NodeJS.ProcessEnv => {
    const identity = mkdtempSync(join(tmpdir(), "linesign-uploader-"));
    const e = cleanEnv({
      AWS_ACCESS_KEY_ID: key,
      AWS_SECRET_ACCESS_KEY: SECRETS[key]!,
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "no-such-credentials"),
      AWS_CONFIG_FILE: join(dir, "no-such-config"),
      AWS_ENDPOINT_URL_STS: emu.url,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      LINESIGN_UPLOADER_HOME: identity,
      NODE_OPTIONS: `--import=${NO_NATIVE}`,
    });
    delete e.AWS_PROFILE;
    return e;
  };
  /** `uploader init` on the online machine, `uploader enroll` by the officer at the station. */
  const enrollUploader = async (online: NodeJS.ProcessEnv, name = `up-${++uploaders}`) => {
    const made = await linesignAsync(["--json", "uploader", "init", "--name", name], online);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    const enrolled = await run([
      "uploader",
      "enroll",
      "--name",
      name,
      "--cert",
      String(made.json.cert),
    ]);
    expect(enrolled.code, enrolled.stdout).toBe(0);
    return String(made.json.cert);
  };
  let uploaders = 0;

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
        { accessKeyId: "AKIAACCOUNTA", secretAccessKey: "secret-a", accountId: A },
        { accessKeyId: "AKIAACCOUNTB", secretAccessKey: "secret-b", accountId: B },
        { accessKeyId: "AKIAACCOUNTC", secretAccessKey: "secret-c", accountId: C },
        { accessKeyId: "AKIAEXPIRED", secretAccessKey: "secret-x", accountId: A, expired: true },
        {
          accessKeyId: "AKIANARROW",
          secretAccessKey: "secret-n",
          accountId: A,
          denied: ["RegisterCertificateWithoutCA", "DescribeCACertificate"],
        },
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
      // STS (the dry run's GetCallerIdentity) answers on the emulator too.
      AWS_ENDPOINT_URL_STS: emu.url,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    });
    delete env.AWS_ENDPOINT_URL_IOT;
    delete env.AWS_ENDPOINT_URL;
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
    // Profile "b" still names it: the officer stops it anyway (see "ca deactivate --stop-profiles").
    expect((await run(["ca", "deactivate", "--label", "line-b", "--stop-profiles"])).code).toBe(0);
    await addTarget("seed1", "acct-a", "us-east-1", [
      "--ca-mode",
      "DEFAULT",
      "--device-registration",
      "with-ca",
      "--max-rps",
      "100",
    ]);
    const dry = await run(["sync", "--dry-run"]);
    // The plan: per target its account (STS), profile, region and endpoint; line-b's devices
    // are flagged, since the plan registers their CA INACTIVE.
    expect(dry.code, dry.stdout).toBe(1);
    const plan = summaryOf(dry.stdout) as {
      targets: {
        account: string;
        region: string;
        where: { endpoint: string; endpointSource: string; profile: string };
        willFail: number;
      }[];
    };
    expect(plan.targets[0]).toMatchObject({
      account: A,
      region: "us-east-1",
      where: { endpoint: emu.url, endpointSource: "the target's --endpoint", profile: "acct-a" },
      willFail: 2,
    });
    const flagged = jsonLines(dry.stdout).filter((l) => l.event === "item" && l.willFail);
    expect(flagged).toHaveLength(2);
    expect(String(flagged[0]!.willFail)).toContain('CA "line-b" will be INACTIVE');
    // Only read-only calls: who am I, and is each CA there yet.
    expect(emu.requests.map((q) => q.op ?? q.path).sort()).toEqual([
      "DescribeCACertificate",
      "DescribeCACertificate",
      "sts:GetCallerIdentity",
    ]);
    expect(emu.state(A, "us-east-1").cas).toHaveLength(0);
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
    expect((await run(["ca", "deactivate", "--label", "dev-ica", "--stop-profiles"])).code).toBe(0);
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
    // AWS does not document this answer: judged by class and message, with the way out.
    expect(ca).toMatchObject({ outcome: "failed" });
    expect(String(ca.message)).toContain("--ca-mode SNI_ONLY");
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
    // and it is not throttled to a trickle: each token is free again a second after its answer,
    // so a loaded machine's round trips lower the rate (the bench reports the share achieved).
    expect(emu.maxInWindow(B, 1000, from, "ca-central-1")).toBeGreaterThanOrEqual(10);
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
    const online = onlineEnv();
    // The online machine really has no native module: the station itself cannot start there.
    const noStation = await linesignAsync(["--json", "status"], online);
    expect(noStation.code).not.toBe(0);
    expect(noStation.stdout + noStation.stderr).toContain("is not loadable on this machine");
    expect(noStation.json.error?.code).toBe("DRIVERS_UNAVAILABLE");
    await enrollUploader(online);
    const upload = (file: string, trust = cert) =>
      linesignAsync(["--json", "upload", file, "--trust", trust], online);
    // --verify-only checks everything and sends nothing.
    const before = emu.requests.length;
    const checked = await linesignAsync(
      ["--json", "upload", bundle, "--trust", cert, "--verify-only"],
      online,
    );
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect(checked.json).toMatchObject({ verified: true, devices: 45 });
    expect(emu.requests.length).toBe(before);
    expect(exported.json.verificationExpiry).toEqual(checked.json.verificationExpiry);
    expect(Date.parse(String(exported.json.verificationExpiry))).toBeGreaterThan(Date.now());

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
    expect(raw.status).toBe(403);
    expect(raw.headers.get("x-amzn-errortype")).toBe("MissingAuthenticationTokenException");
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

  it("every kind of credential or authorisation failure stops the target after one request", async () => {
    writeFileSync(
      join(dir, "credentials"),
      readFileSync(join(dir, "credentials"), "utf8") +
        "\n[acct-nobody]\naws_access_key_id = AKIANOBODY\naws_secret_access_key = x\n" +
        "\n[acct-wrong]\naws_access_key_id = AKIAACCOUNTA\naws_secret_access_key = not-the-secret\n" +
        "\n[acct-expired]\naws_access_key_id = AKIAEXPIRED\naws_secret_access_key = secret-x\n" +
        "\n[acct-narrow]\naws_access_key_id = AKIANARROW\naws_secret_access_key = secret-n\n",
    );
    const cases = [
      ["acct-nobody", "without-ca", "UnrecognizedClientException"],
      ["acct-wrong", "without-ca", "InvalidSignatureException"],
      ["acct-expired", "without-ca", "ExpiredTokenException"],
      ["acct-narrow", "without-ca", "AccessDeniedException"],
      ["acct-narrow", "with-ca", "AccessDeniedException"],
    ] as const;
    for (const [profile, how, error] of cases) {
      const name = `cred-${profile}-${how}`;
      await addTarget(name, profile, "eu-south-1", [
        "--ca-mode",
        "SNI_ONLY",
        "--device-registration",
        how,
        "--max-rps",
        "200",
      ]);
      const from = emu.requests.length;
      const r = await run(["sync", "--target", name]);
      expect(r.code, name).toBe(1);
      const sent = emu.requests.slice(from);
      expect(sent, name).toHaveLength(1);
      expect(sent[0]!.error, name).toBe(error);
      const s = summaryOf(r.stdout) as {
        targets: { credentialsRefused: boolean; notes: string[] }[];
      };
      expect(s.targets[0]!.credentialsRefused, name).toBe(true);
      expect(s.targets[0]!.notes.join(" "), name).toContain("nothing more was sent");
      // Nothing recorded as failed: the queue waits for working credentials.
      expect(
        uploads().filter((u) => u.target === name),
        name,
      ).toHaveLength(0);
    }
  });

  it("registers a certificate revoked before it ever reached a jitr target as REVOKED there", async () => {
    await issue("a", 2, "jrev");
    await addTarget("jitr-rev", "acct-c", "us-west-1", [
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "jitr",
      "--max-rps",
      "200",
    ]);
    const s = es.open();
    const serial = [...s.ctx.store.queryIssuances({ deviceId: "jrev-1" })][0]!.serial;
    await s.close();
    // Revoked before the target's first sync (never uploaded there, never left to JITR).
    expect((await run(["revoke", "--serial", serial, "--reason", "keyCompromise"])).code).toBe(0);
    const r = await run(["sync", "--target", "jitr-rev"]);
    expect(r.code, r.stdout).toBe(0);
    // Every revoked certificate the target never saw is there now, REVOKED; nothing else is.
    const st = emu.state(C, "us-west-1");
    expect(st.certs.length).toBeGreaterThanOrEqual(1);
    expect(st.certs.every((c) => c.status === "REVOKED")).toBe(true);
    const row = uploads().find((u) => u.target === "jitr-rev" && u.serial === serial)!;
    expect(row.state).toBe("revoked");
    expect(st.certs.map((c) => c.id)).toContain(row.aws_certificate_id);
    // One left to JITR, and revoked later: registered REVOKED at the next sync too.
    const s2 = es.open();
    const other = [...s2.ctx.store.queryIssuances({ deviceId: "jrev-0" })][0]!.serial;
    await s2.close();
    expect(uploads().find((u) => u.target === "jitr-rev" && u.serial === other)!.state).toBe(
      "left-to-jitr",
    );
    expect((await run(["revoke", "--serial", other, "--reason", "superseded"])).code).toBe(0);
    expect((await run(["sync", "--target", "jitr-rev"])).code).toBe(0);
    const after = emu.state(C, "us-west-1").certs;
    expect(after).toHaveLength(st.certs.length + 1);
    expect(after.every((c) => c.status === "REVOKED")).toBe(true);
    expect(uploads().find((u) => u.target === "jitr-rev" && u.serial === other)!.state).toBe(
      "revoked",
    );
  });

  it("the dry run says where requests go: the target, AWS_ENDPOINT_URL_IOT, a profile's endpoint_url; no credentials fails it", async () => {
    writeFileSync(
      join(dir, "credentials"),
      readFileSync(join(dir, "credentials"), "utf8") +
        "\n[acct-ep]\naws_access_key_id = AKIAACCOUNTB\naws_secret_access_key = secret-b\n",
    );
    writeFileSync(join(dir, "config"), `[profile acct-ep]\nendpoint_url = ${emu.url}\n`);
    const plain = async (name: string, profile: string) => {
      const r = await run([
        "target",
        "add",
        "--name",
        name,
        "--region",
        "me-south-1",
        "--profile",
        profile,
        "--ca-mode",
        "SNI_ONLY",
        "--device-registration",
        "without-ca",
      ]);
      expect(r.code, r.stdout).toBe(0);
    };
    await plain("by-profile", "acct-ep");
    const dry = await run(["sync", "--target", "by-profile", "--dry-run"]);
    expect(dry.code, dry.stdout).toBe(0);
    type Plan = {
      targets: {
        account: string | null;
        credentialsRefused: boolean;
        where: { endpoint: string; endpointSource: string; profile: string };
        notes: string[];
      }[];
    };
    expect((summaryOf(dry.stdout) as Plan).targets[0]).toMatchObject({
      account: B,
      where: {
        endpoint: emu.url,
        endpointSource: "profile acct-ep's endpoint_url",
        profile: "acct-ep",
      },
    });
    // And the sync itself goes there.
    expect((await run(["sync", "--target", "by-profile"])).code).toBe(0);
    expect(emu.state(B, "me-south-1").certs.length).toBeGreaterThan(0);
    // The environment's AWS_ENDPOINT_URL_IOT is shown, not silent.
    await plain("by-env", "acct-a");
    const viaEnv = await linesignAsync(["--json", "sync", "--target", "by-env", "--dry-run"], {
      ...env,
      AWS_ENDPOINT_URL_IOT: emu.url,
    });
    expect((summaryOf(viaEnv.stdout) as Plan).targets[0]!.where).toMatchObject({
      endpoint: emu.url,
      endpointSource: "the environment's AWS_ENDPOINT_URL_IOT",
    });
    // No credentials at all: the plan fails, naming why.
    await plain("by-nothing", "no-such-profile");
    const none = await run(["sync", "--target", "by-nothing", "--dry-run"]);
    expect(none.code).toBe(1);
    const t = (summaryOf(none.stdout) as Plan).targets[0]!;
    expect(t.credentialsRefused).toBe(true);
    expect(t.notes.join(" ")).toContain("refused the credentials");
  });

  it("offline bundles over three rounds, DEFAULT and SNI_ONLY: new devices each round, a CA deactivated between rounds, a partial failure uploaded again, forged receipts refused", async () => {
    const { signReceipt, ReceiptFileSchema } = await import("../../src/app/sync/bundle-format.js");
    const { uploadOfflineBundle, loadUploader } = await import("../../src/compose-online.js");
    const cert = join(dir, "station.pem");
    expect((await run(["station-cert", "--out", cert])).code).toBe(0);
    const online = { DEFAULT: onlineEnv("AKIAACCOUNTB"), SNI_ONLY: onlineEnv("AKIAACCOUNTC") };
    await enrollUploader(online.DEFAULT);
    await enrollUploader(online.SNI_ONLY);
    const account = { DEFAULT: B, SNI_ONLY: C } as const;
    for (const mode of ["DEFAULT", "SNI_ONLY"] as const)
      await addTarget(`rounds-${mode}`, mode === "DEFAULT" ? "acct-b" : "acct-c", "eu-north-1", [
        "--ca-mode",
        mode,
        "--device-registration",
        "with-ca",
        "--max-rps",
        "200",
      ]);
    const code = (
      await sdk("AKIAACCOUNTB", "eu-north-1").send(
        new (await import("@aws-sdk/client-iot")).GetRegistrationCodeCommand({}),
      )
    ).registrationCode!;
    const devCaStatus = (mode: "DEFAULT" | "SNI_ONLY") => {
      const st = emu.state(account[mode], "eu-north-1");
      return st.cas.find((c) => c.subject.includes("Development Issuing"))!.status;
    };
    const stationCa = (mode: string) => {
      const s = es.open();
      try {
        return s.ctx.store.caRegistration("dev-ica", `rounds-${mode}`);
      } finally {
        void s.close();
      }
    };
    const round = async (mode: "DEFAULT" | "SNI_ONLY", n: number) => {
      const bundle = join(dir, `round-${mode}-${n}.json`);
      const exported = await run([
        "export",
        "--target",
        `rounds-${mode}`,
        "--out",
        bundle,
        ...(mode === "DEFAULT" ? ["--registration-code", code] : []),
      ]);
      expect(exported.code, exported.stdout).toBe(0);
      const up = await linesignAsync(["--json", "upload", bundle, "--trust", cert], online[mode]);
      return { bundle, exported, up, receipt: `${bundle}.receipt.json` };
    };
    const pending = (mode: string) =>
      uploads().filter((u) => u.target === `rounds-${mode}` && u.state === "done").length;

    // Round 1: everything so far.
    await issue("a", 2, "round1");
    for (const mode of ["DEFAULT", "SNI_ONLY"] as const) {
      const r = await round(mode, 1);
      expect(r.up.code, r.up.stdout + r.up.stderr).toBe(0);
      const imported = await run(["import-receipt", r.receipt]);
      expect(imported.code, imported.stdout).toBe(0);
      expect(devCaStatus(mode)).toBe("ACTIVE");
      if (mode === "DEFAULT") {
        // An expired verification certificate is refused before anything is sent, with the fix.
        const from = emu.requests.length;
        await expect(
          uploadOfflineBundle(
            readFileSync(r.bundle),
            readFileSync(cert, "utf8"),
            loadUploader(online.DEFAULT.LINESIGN_UPLOADER_HOME!),
            { now: new Date(Date.parse(String(r.exported.json.verificationExpiry)) + 1000) },
          ),
        ).rejects.toThrow(/expired at .*export --target rounds-DEFAULT --registration-code/);
        expect(emu.requests.length).toBe(from);
      }
    }
    const afterOne = { DEFAULT: pending("DEFAULT"), SNI_ONLY: pending("SNI_ONLY") };

    // Round 2: new devices, then dev-ica deactivated at the station before the export.
    await issue("a", 2, "round2");
    expect((await run(["ca", "deactivate", "--label", "dev-ica", "--stop-profiles"])).code).toBe(0);
    for (const mode of ["DEFAULT", "SNI_ONLY"] as const) {
      const codeBefore = emu.requests.filter((q) => q.op === "GetRegistrationCode").length;
      const r = await round(mode, 2);
      expect(r.up.code, r.up.stdout + r.up.stderr).toBe(0);
      // The CA travelled with its registration: no second registration, no code asked.
      expect(emu.requests.filter((q) => q.op === "GetRegistrationCode").length).toBe(codeBefore);
      expect((await run(["import-receipt", r.receipt])).code).toBe(0);
      expect(devCaStatus(mode)).toBe("INACTIVE");
      expect(stationCa(mode)!.remoteStatus).toBe("INACTIVE");
      expect(pending(mode)).toBe(afterOne[mode] + 2);
    }

    // Round 3: active again; behind the station's back the SNI_ONLY account deactivates it,
    // so that upload fails part-way; uploaded again once fixed, the second receipt completes it.
    expect((await run(["ca", "activate", "--label", "dev-ica"])).code).toBe(0);
    await issue("a", 2, "round3");
    const d3 = await round("DEFAULT", 3);
    expect(d3.up.code, d3.up.stdout).toBe(0);
    expect((await run(["import-receipt", d3.receipt])).code).toBe(0);
    expect(devCaStatus("DEFAULT")).toBe("ACTIVE");
    expect(pending("DEFAULT")).toBe(afterOne.DEFAULT + 4);

    const sniCa = emu
      .state(C, "eu-north-1")
      .cas.find((c) => c.subject.includes("Development Issuing"))!;
    const bundle3 = join(dir, "round-SNI_ONLY-3.json");
    expect((await run(["export", "--target", "rounds-SNI_ONLY", "--out", bundle3])).code).toBe(0);
    // The station's record says INACTIVE from round 2, so the upload activates it first; the
    // account then turns it off again mid-way, which a fresh bundle after this one sees.
    const first = await linesignAsync(
      ["--json", "upload", bundle3, "--trust", cert],
      online.SNI_ONLY,
    );
    expect(first.code).toBe(0);
    await sdk("AKIAACCOUNTC", "eu-north-1").send(
      new (await import("@aws-sdk/client-iot")).UpdateCACertificateCommand({
        certificateId: sniCa.id,
        newStatus: "INACTIVE",
      }),
    );
    await issue("a", 1, "round3b");
    const bundle4 = join(dir, "round-SNI_ONLY-4.json");
    expect((await run(["import-receipt", `${bundle3}.receipt.json`])).code).toBe(0);
    expect((await run(["export", "--target", "rounds-SNI_ONLY", "--out", bundle4])).code).toBe(0);
    const partial = await linesignAsync(
      ["--json", "upload", bundle4, "--trust", cert],
      online.SNI_ONLY,
    );
    expect(partial.code).toBe(1);
    const failedReceipt = readFileSync(`${bundle4}.receipt.json`, "utf8");
    const bodyOf = (t: string) =>
      JSON.parse(ReceiptFileSchema.parse(JSON.parse(t)).receipt) as {
        id: string;
        devices: {
          serial: string;
          sha256: string;
          state: string;
          certificateId: string | null;
          arn: string | null;
          error: string | null;
        }[];
      };
    expect(bodyOf(failedReceipt).devices.map((x) => x.state)).toEqual(["failed"]);

    // Forged receipts: unsigned, signed by an uploader not enrolled, edited after signing,
    // signed by the enrolled uploader but naming an id or an account AWS could not have given.
    const forge = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const body = bodyOf(failedReceipt);
    const asDone = (id: string, arn: string) => ({
      ...body,
      id: crypto.randomUUID(),
      devices: body.devices.map((x) => ({
        ...x,
        state: "done",
        certificateId: id,
        arn,
        error: null,
      })),
    });
    const sha = body.devices[0]!.sha256;
    const enrolledKey = loadUploader(online.SNI_ONLY.LINESIGN_UPLOADER_HOME!);
    const stranger = onlineEnv("AKIAACCOUNTC");
    expect(
      (await linesignAsync(["--json", "uploader", "init", "--name", "stranger"], stranger)).code,
    ).toBe(0);
    const strangerKey = loadUploader(stranger.LINESIGN_UPLOADER_HOME!);
    const good = asDone(sha, `arn:aws:iot:eu-north-1:${C}:cert/${sha}`);
    const signedBy = (b: unknown, k: typeof enrolledKey) =>
      JSON.stringify(signReceipt(b as Parameters<typeof signReceipt>[0], k));
    const orig = JSON.parse(failedReceipt) as {
      receipt: string;
      signature: string;
      uploader: string;
    };
    const forged = {
      unsigned: [
        JSON.stringify({ format: "linesign-receipt/1", ...good }),
        "not signed by an uploader",
      ],
      stranger: [signedBy(good, strangerKey), "does not trust"],
      edited: [
        JSON.stringify({
          ...orig,
          receipt: JSON.stringify({ ...JSON.parse(orig.receipt), devices: good.devices }),
        }),
        "signature does not verify",
      ],
      inventedId: [
        signedBy(
          asDone("ab".repeat(32), `arn:aws:iot:eu-north-1:${C}:cert/${"ab".repeat(32)}`),
          enrolledKey,
        ),
        "an id AWS cannot have given it",
      ],
      otherAccount: [
        signedBy(asDone(sha, `arn:aws:iot:eu-north-1:${A}:cert/${sha}`), enrolledKey),
        "more than one AWS account",
      ],
    } as const;
    for (const [what, [text, why]] of Object.entries(forged)) {
      const r = await run(["import-receipt", forge(`forged-${what}.json`, text)]);
      expect(r.code, what).toBe(1);
      expect(r.json.error, what).toMatchObject({ code: "RECEIPT_INVALID" });
      expect(r.json.error!.message, what).toContain(why);
    }
    // The honest partial receipt imports: the device stays queued, failed.
    const importedFailed = await run(["import-receipt", `${bundle4}.receipt.json`]);
    expect(importedFailed.json).toMatchObject({ done: 0, failed: 1 });
    // Fixed at AWS, the same bundle uploaded again: the second receipt completes it.
    await sdk("AKIAACCOUNTC", "eu-north-1").send(
      new (await import("@aws-sdk/client-iot")).UpdateCACertificateCommand({
        certificateId: sniCa.id,
        newStatus: "ACTIVE",
      }),
    );
    const again = await linesignAsync(
      ["--json", "upload", bundle4, "--trust", cert],
      online.SNI_ONLY,
    );
    expect(again.code, again.stdout).toBe(0);
    const second = await run(["import-receipt", `${bundle4}.receipt.json`]);
    expect(second.code, second.stdout).toBe(0);
    expect(second.json).toMatchObject({ done: 1, failed: 0 });
    const replay = await run(["import-receipt", `${bundle4}.receipt.json`]);
    expect(replay.json.error!.message).toContain("imported already");
    const queue = (await run(["target", "list"])).json.targets as {
      name: string;
      queue: { pending: number };
    }[];
    expect(queue.find((t) => t.name === "rounds-SNI_ONLY")!.queue.pending).toBe(0);
    // Each certificate exactly once at AWS.
    for (const mode of ["DEFAULT", "SNI_ONLY"] as const) {
      const ids = emu.state(account[mode], "eu-north-1").certs.map((c) => c.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(pending(mode));
    }
    expect((await run(["audit", "verify"])).json.ok).toBe(true);
  });
});
