/**
 * The sync's rate ceiling as the receiver counts it: the real CLI and SDK
 * against the emulator (in this process), which stalls now and then as a
 * receiver under load does and then takes its backlog at once. A count, not a
 * time: no window of one second at the emulator holds more than --max-rps.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { IotEmulator } from "../../fixtures/aws-iot-emulator.js";
import { deviceKey, makeCsr } from "../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../helpers/engine.js";
import { cleanEnv, linesignAsync } from "../helpers/cli.js";

const ACCOUNT = "444444444444";
const CERTS = 160;
const MAX_RPS = 100;
let emu: IotEmulator;
let es: EngineStation;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  emu = new IotEmulator({
    accounts: [{ accessKeyId: "AKIAPACING", secretAccessKey: "pacing-secret", accountId: ACCOUNT }],
    faults: { rate: 0, stall: { every: 37, ms: 400 } },
  });
  await emu.start();
  es = await engineStation({ paced: { ca: "dev-ica", allowReissue: true } });
  const s = es.open();
  try {
    for (let i = 0; i < CERTS; i++) {
      const out = await s.issuance.issue({
        csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `paced-${i}`]] }),
        profile: "paced",
        origin: "test",
      });
      await s.issuance.markDelivered(out.issuance.id);
    }
  } finally {
    await s.close();
  }
  env = cleanEnv({
    SOFTHSM2_CONF: es.hsm.conf,
    LINESIGN_HOME: es.home,
    AWS_ACCESS_KEY_ID: "AKIAPACING",
    AWS_SECRET_ACCESS_KEY: "pacing-secret",
  });
}, 300_000);

afterAll(async () => {
  await emu.close();
});

it("never lets more than --max-rps requests arrive in any second, even at a receiver that stalls", async () => {
  const add = await linesignAsync(
    [
      "--json",
      "target",
      "add",
      "--name",
      "paced",
      "--region",
      "eu-west-1",
      "--endpoint",
      emu.url,
      "--ca-mode",
      "SNI_ONLY",
      "--device-registration",
      "with-ca",
      "--max-rps",
      String(MAX_RPS),
    ],
    env,
  );
  expect(add.code, add.stdout + add.stderr).toBe(0);
  const r = await linesignAsync(["--json", "sync", "--target", "paced"], env);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const registered = emu.requests.filter(
    (q) => q.path === "/certificate/register" && q.status === 200,
  );
  expect(registered).toHaveLength(CERTS);
  // The emulator did stall, with requests waiting on it.
  expect(emu.requests.length).toBeGreaterThan(CERTS);
  expect(emu.maxInWindow(ACCOUNT, 1000)).toBeLessThanOrEqual(MAX_RPS);
}, 300_000);
