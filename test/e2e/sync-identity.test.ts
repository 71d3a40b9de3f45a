/**
 * The device's whole identity at AWS, end to end: the real `linesign` CLI and
 * the real SDK against the emulator in fixtures/ (a real HTTP server). One
 * station shared by the cases; each target is in a region of its own, so each
 * case reads only its own part of the emulator. Assertions are on the
 * emulator's state and request log, the station's rows and its event log.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreatePolicyCommand, CreateThingCommand, IoTClient } from "@aws-sdk/client-iot";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IotEmulator } from "../../fixtures/aws-iot-emulator.js";
import { deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../helpers/engine.js";
import { cleanEnv, linesignAsync } from "../helpers/cli.js";

const A = "111111111111";
const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));
const NO_NATIVE = fileURLToPath(new URL("../helpers/no-native.mjs", import.meta.url));
const POLICY = JSON.stringify({
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: "iot:Connect", Resource: "*" }],
});

describe("AWS IoT sync: Things, policies and groups", { timeout: 300_000 }, () => {
  let emu: IotEmulator;
  let es: EngineStation;
  let env: NodeJS.ProcessEnv;
  let dir: string;
  const serials: string[] = [];

  const run = (args: string[], e = env) => linesignAsync(["--json", ...args], e);
  const lines = (out: string) =>
    out
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const addTarget = async (name: string, region: string, extra: string[]) => {
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
      "acct-a",
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      // One request at a time (concurrency follows the ceiling): the order of steps is fixed.
      "--max-rps",
      "20",
      ...extra,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  };
  const sdk = (region: string) =>
    new IoTClient({
      region,
      endpoint: emu.url,
      credentials: { accessKeyId: "AKIAACCOUNTA", secretAccessKey: "secret-a" },
    });
  const db = <T>(f: (d: Database.Database) => T): T => {
    const d = new Database(join(es.home, "station.db"), { readonly: true });
    try {
      return f(d);
    } finally {
      d.close();
    }
  };
  /** The identity steps recorded at a target, per serial. */
  const steps = (target: string) =>
    db(
      (d) =>
        d
          .prepare(
            "SELECT i.serial, s.step, s.name, s.state, s.last_error AS error FROM identity_steps s JOIN issuances i ON i.id = s.issuance_id WHERE s.target = ? ORDER BY s.rowid",
          )
          .all(target) as {
          serial: string;
          step: string;
          name: string;
          state: string;
          error: string | null;
        }[],
    );
  const events = (action: string) =>
    db(
      (d) =>
        d.prepare("SELECT subject, details FROM events WHERE action = ?").all(action) as {
          subject: string;
          details: string;
        }[],
    );
  const ops = (region: string, from = 0) => {
    const n: Record<string, number> = {};
    for (const q of emu.requests.slice(from))
      if (q.region === region && q.op) n[q.op] = (n[q.op] ?? 0) + 1;
    return n;
  };

  /** Issues, delivers and confirms devices as the line does: with the model and firmware they reported. */
  async function issue(n: number, prefix: string, model = "SENS-2", firmware = "4.1.0") {
    const s = es.open();
    try {
      for (let i = 0; i < n; i++) {
        const out = await s.issuance.issue({
          csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `${prefix}-${i}`]] }),
          profile: "a",
          origin: "test",
          device: { model, firmware },
        });
        await s.issuance.markDelivered(out.issuance.id);
        await s.issuance.confirm(out.issuance.id, out.issuance.fingerprint);
        serials.push(out.issuance.serial);
      }
    } finally {
      await s.close();
    }
  }

  beforeAll(async () => {
    emu = new IotEmulator({
      accounts: [{ accessKeyId: "AKIAACCOUNTA", secretAccessKey: "secret-a", accountId: A }],
    });
    await emu.start();
    es = await engineStation({ a: { ca: "dev-ica", allowReissue: true } });
    dir = mkdtempSync(join(tmpdir(), "linesign-identity-"));
    writeFileSync(
      join(dir, "credentials"),
      "[acct-a]\naws_access_key_id = AKIAACCOUNTA\naws_secret_access_key = secret-a\n",
    );
    writeFileSync(join(dir, "config"), "");
    writeFileSync(join(dir, "policy.json"), POLICY);
    env = cleanEnv({
      SOFTHSM2_CONF: es.hsm.conf,
      LINESIGN_HOME: es.home,
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "credentials"),
      AWS_CONFIG_FILE: join(dir, "config"),
      AWS_ENDPOINT_URL_STS: emu.url,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    });
    for (const k of [
      "AWS_ENDPOINT_URL_IOT",
      "AWS_ENDPOINT_URL",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_PROFILE",
    ])
      delete env[k];
    await issue(3, "sens");
  });
  afterAll(async () => {
    await emu.close();
  });

  it("makes each Thing, attachment and group membership once across a sync killed between two steps and a second sync", async () => {
    const region = "eu-west-3";
    emu.seed(A, region, { thingType: "sensor", thingGroup: "line-1" });
    emu.seed(A, region, { thingGroup: "fleet" });
    await addTarget("things", region, [
      "--thing-name",
      "{model}_{deviceId}",
      "--thing-type",
      "sensor",
      "--thing-group",
      "line-1",
      "--thing-group",
      "fleet",
      "--policy",
      "sensor-policy",
      "--policy-document",
      join(dir, "policy.json"),
    ]);
    // The first AttachPolicy is carried out at AWS and left unanswered: the sync is killed there,
    // after the Thing and its principal were recorded, before it saw the policy attached.
    const held = emu.hold("AttachPolicy");
    const child = spawn(process.execPath, [BIN, "--json", "sync", "--target", "things"], {
      env,
      stdio: "ignore",
    });
    const exited = new Promise((r) => child.on("exit", r));
    await held;
    child.kill("SIGKILL");
    await exited;
    const first = serials[0]!;
    expect(steps("things").map((s) => [s.serial, s.step, s.state])).toEqual([
      [first, "thing", "done"],
      [first, "principal", "done"],
    ]);
    const killed = ops(region);
    expect(killed).toMatchObject({
      CreateThing: 1,
      AttachThingPrincipal: 1,
      CreatePolicy: 1,
      AttachPolicy: 1,
    });
    expect(killed.AddThingToThingGroup).toBeUndefined();

    const again = await run(["sync", "--target", "things"]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const st = emu.state(A, region);
    expect(st.things.map((t) => t.name).sort()).toEqual(
      ["SENS-2_sens-0", "SENS-2_sens-1", "SENS-2_sens-2"].sort(),
    );
    for (const t of st.things) {
      expect(t).toMatchObject({
        thingTypeName: "sensor",
        attributes: { model: "SENS-2", firmware: "4.1.0" },
        groups: ["line-1", "fleet"],
      });
      expect(t.principals).toHaveLength(1);
      expect(st.attached[t.principals[0]!]).toEqual(["sensor-policy"]);
    }
    expect(st.policies).toEqual([{ name: "sensor-policy", document: POLICY }]);
    // Across both runs: each Thing created once, each certificate attached once; only the
    // policy attachment whose answer was lost went again (AWS holds it once).
    expect(ops(region)).toMatchObject({
      CreateThing: 3,
      AttachThingPrincipal: 3,
      CreatePolicy: 1,
      AttachPolicy: 4,
      AddThingToThingGroup: 6,
    });
    expect(steps("things").filter((s) => s.step === "complete")).toHaveLength(3);
    // A third run has nothing left to do.
    const from = emu.requests.length;
    expect((await run(["sync", "--target", "things"])).code).toBe(0);
    expect(ops(region, from)).toEqual({});
  });

  it("reports per device, with what to do, a policy that does not exist, a group missing and a Thing that exists with other attributes; goes on once they are fixed", async () => {
    const region = "ca-central-1";
    // sens-1's Thing exists there already, made by someone else with another model.
    await sdk(region).send(
      new CreateThingCommand({
        thingName: "sens-1",
        attributePayload: { attributes: { model: "OTHER" } },
      }),
    );
    await addTarget("refusals", region, [
      "--thing-name",
      "{deviceId}",
      "--policy",
      "absent-policy",
    ]);
    const r = await run(["sync", "--target", "refusals"]);
    expect(r.code).toBe(1);
    const failed = lines(r.stdout).filter((l) => l.kind === "identity" && l.outcome === "failed");
    expect(failed).toHaveLength(3);
    const bySerial = new Map(failed.map((l) => [l.ref, String(l.message)]));
    expect(bySerial.get(serials[1]!)).toMatch(
      /Thing sens-1 exists at target "refusals".*other attributes \(there: model=OTHER.*this device: firmware=4\.1\.0, model=SENS-2.*update it there/,
    );
    for (const s of [serials[0]!, serials[2]!])
      expect(bySerial.get(s)).toMatch(
        /policy absent-policy does not exist at target "refusals".*aws iot create-policy --policy-name absent-policy/,
      );
    // One AttachPolicy told the station the policy is missing; the next device was not sent.
    expect(ops(region).AttachPolicy).toBe(1);
    expect(
      events("sync.identity").filter((e) => JSON.parse(e.details).target === "refusals"),
    ).toHaveLength(3);
    // Groups: a missing one, at a target of its own.
    const region2 = "ap-south-1";
    await addTarget("groups", region2, [
      "--thing-name",
      "g-{deviceId}",
      "--thing-group",
      "nowhere",
    ]);
    const g = await run(["sync", "--target", "groups"]);
    expect(g.code).toBe(1);
    const gFailed = lines(g.stdout).filter((l) => l.kind === "identity" && l.outcome === "failed");
    expect(gFailed).toHaveLength(3);
    expect(String(gFailed[0]!.message)).toContain(
      'thing group nowhere does not exist at target "groups"',
    );
    expect(String(gFailed[0]!.message)).toContain("aws iot create-thing-group");
    // Fixed at AWS: the policy made there, then sync again; the Thing in the way stays refused.
    await sdk(region).send(
      new CreatePolicyCommand({ policyName: "absent-policy", policyDocument: POLICY }),
    );
    const fixed = await run(["sync", "--target", "refusals"]);
    expect(fixed.code).toBe(1);
    const st = emu.state(A, region);
    expect(st.things.find((t) => t.name === "sens-1")!.attributes).toEqual({ model: "OTHER" });
    const attached = Object.values(st.attached).map((p) => p.join());
    expect(attached).toEqual(["absent-policy", "absent-policy"]);
    expect(
      steps("refusals")
        .filter((s) => s.step === "complete")
        .map((s) => s.serial)
        .sort(),
    ).toEqual([serials[0]!, serials[2]!].sort());
  });

  it("detaches a revoked certificate from its Thing and its policy, leaves the Thing, and logs it", async () => {
    const region = "eu-west-3"; // the "things" target of the first case
    const serial = serials[2]!;
    expect((await run(["revoke", "--serial", serial, "--reason", "keyCompromise"])).code).toBe(0);
    const from = emu.requests.length;
    const r = await run(["sync", "--target", "things"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(ops(region, from)).toEqual({
      UpdateCertificate: 1,
      DetachThingPrincipal: 1,
      DetachPolicy: 1,
    });
    const st = emu.state(A, region);
    const thing = st.things.find((t) => t.name === "SENS-2_sens-2")!;
    expect(thing.principals).toEqual([]);
    expect(thing.groups).toEqual(["line-1", "fleet"]);
    expect(st.certs.find((c) => c.status === "REVOKED")).toBeDefined();
    expect(Object.values(st.attached).filter((p) => p.length > 0)).toHaveLength(2);
    expect(
      steps("things")
        .filter((s) => s.serial === serial && s.state === "detached")
        .map((s) => s.step)
        .sort(),
    ).toEqual(["policy", "principal"]);
    const logged = events("sync.identity-detach").map((e) => JSON.parse(e.details));
    expect(logged).toEqual([
      expect.objectContaining({
        target: "things",
        serial,
        thingLeft: "SENS-2_sens-2",
        detachedFrom: ["Thing SENS-2_sens-2", "policy sensor-policy"],
      }),
    ]);
  });

  it("does the same through an offline bundle: export, upload on an online machine, import-receipt; revoked ones detached in the next round", async () => {
    const region = "sa-east-1";
    emu.seed(A, region, { thingGroup: "fleet" });
    await addTarget("offline", region, [
      "--thing-name",
      "{deviceId}",
      "--thing-group",
      "fleet",
      "--policy",
      "offline-policy",
      "--policy-document",
      join(dir, "policy.json"),
    ]);
    const cert = join(dir, "station.pem");
    expect((await run(["station-cert", "--out", cert])).code).toBe(0);
    const online = cleanEnv({
      AWS_ACCESS_KEY_ID: "AKIAACCOUNTA",
      AWS_SECRET_ACCESS_KEY: "secret-a",
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "no-such-credentials"),
      AWS_CONFIG_FILE: join(dir, "no-such-config"),
      AWS_ENDPOINT_URL_STS: emu.url,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      LINESIGN_UPLOADER_HOME: mkdtempSync(join(tmpdir(), "linesign-uploader-")),
      NODE_OPTIONS: `--import=${NO_NATIVE}`,
    });
    delete online.AWS_PROFILE;
    const made = await run(["uploader", "init", "--name", "identity-up"], online);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    expect(
      (await run(["uploader", "enroll", "--name", "identity-up", "--cert", String(made.json.cert)]))
        .code,
    ).toBe(0);
    // A bundle file that cannot be written is refused before the bundle is signed and recorded.
    const nowhere = join(dir, "no-such-folder", "identity-0.json");
    const refused = await run(["export", "--target", "offline", "--out", nowhere]);
    expect(refused.code).toBe(1);
    expect(refused.json.error).toMatchObject({ code: "FILE_WRITE_FAILED" });
    expect(refused.json.error!.message).toContain(nowhere);
    expect(events("bundle.export")).toEqual([]);
    const round = async (n: number) => {
      const bundle = join(dir, `identity-${n}.json`);
      const ex = await run(["export", "--target", "offline", "--out", bundle]);
      expect(ex.code, ex.stdout).toBe(0);
      const up = await run(["upload", bundle, "--trust", cert], online);
      expect(up.code, up.stdout + up.stderr).toBe(0);
      const imported = await run(["import-receipt", `${bundle}.receipt.json`]);
      expect(imported.code, imported.stdout).toBe(0);
    };
    await round(1);
    const st = emu.state(A, region);
    // sens-2 was revoked before it ever reached this target: the other two get their identity.
    expect(st.things.map((t) => t.name).sort()).toEqual(["sens-0", "sens-1"]);
    for (const t of st.things) {
      expect(t.groups).toEqual(["fleet"]);
      expect(st.attached[t.principals[0]!]).toEqual(["offline-policy"]);
    }
    expect(steps("offline").filter((s) => s.step === "complete")).toHaveLength(2);
    // Round 2: sens-1 revoked at the station; the bundle revokes it and detaches it there.
    expect((await run(["revoke", "--serial", serials[1]!, "--reason", "superseded"])).code).toBe(0);
    const from = emu.requests.length;
    await round(2);
    expect(ops(region, from)).toMatchObject({
      UpdateCertificate: 1,
      DetachThingPrincipal: 1,
      DetachPolicy: 1,
    });
    expect(ops(region, from).CreateThing).toBeUndefined();
    expect(ops(region, from).CreatePolicy).toBeUndefined();
    const after = emu.state(A, region);
    expect(after.things.find((t) => t.name === "sens-1")!.principals).toEqual([]);
    expect(
      steps("offline")
        .filter((s) => s.serial === serials[1]! && s.state === "detached")
        .map((s) => s.step)
        .sort(),
    ).toEqual(["policy", "principal"]);
    expect(
      events("sync.identity-detach").some(
        (e) => JSON.parse(e.details).target === "offline" && e.subject === "sens-1",
      ),
    ).toBe(true);
  });
});
