/**
 * The sync part of `linesign bench`: N queued device certificates registered
 * with the AWS IoT emulator (fixtures/, a real HTTP server) through the real
 * SDK at a ceiling of 200 requests per second. Reports the achieved rate
 * against the ceiling and the busiest second seen by the emulator.
 */
import type { Station } from "../compose.js";

export interface SyncBenchResult {
  certificates: number;
  maxRps: number;
  /** Device registrations per second, first to last request at the emulator. */
  achievedRps: number;
  /** achievedRps / maxRps (target at least 0.95). */
  ofCeiling: number;
  /** Most requests the emulator saw in any one second (never above maxRps). */
  busiestSecond: number;
  requests: number;
}

interface Emulator {
  url: string;
  start(): Promise<string>;
  close(): Promise<void>;
  requests: { at: number; path: string; status: number }[];
  maxInWindow(account: string, windowMs?: number): number;
}

interface CsrFactory {
  deviceKey(t: string): unknown;
  makeCsr(o: { key: unknown; subject: [string, string][] }): Uint8Array;
}

export async function benchSync(
  s: Station,
  count: number,
  log: (t: string) => void,
): Promise<SyncBenchResult> {
  const { IotEmulator } = (await import(
    new URL("../../fixtures/aws-iot-emulator.js", import.meta.url).href
  )) as { IotEmulator: new (o: unknown) => Emulator };
  const factory = (await import(
    new URL("../../fixtures/csr-factory.js", import.meta.url).href
  )) as CsrFactory;
  const maxRps = 200;
  log(`bench: queueing ${count} delivered device certificates for the sync`);
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const i = next++;
        const out = await s.issuance.issue({
          csr: factory.makeCsr({
            key: factory.deviceKey("ec-p256"),
            subject: [["CN", `sync-${i}`]],
          }),
          profile: "bench-ec-p256",
          origin: "bench:sync",
        });
        await s.issuance.markDelivered(out.issuance.id);
      }
    }),
  );
  const emu = new IotEmulator({
    accounts: [{ accessKeyId: "AKIABENCH", secretAccessKey: "bench", accountId: "123456789012" }],
  });
  await emu.start();
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, key: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = "AKIABENCH";
  process.env.AWS_SECRET_ACCESS_KEY = "bench";
  try {
    await s.sync.addTarget("bench", {
      region: "us-east-1",
      endpoint: emu.url,
      caMode: "SNI_ONLY",
      deviceRegistration: "with-ca",
      maxRps,
    });
    log(`bench: registering them with the emulator at --max-rps ${maxRps}`);
    await s.sync.sync({ targets: ["bench"] });
    const reg = emu.requests.filter((r) => r.path === "/certificate/register" && r.status === 200);
    const span = (reg.at(-1)!.at - reg[0]!.at) / 1000;
    const achieved = (reg.length - 1) / span;
    return {
      certificates: reg.length,
      maxRps,
      achievedRps: Number(achieved.toFixed(1)),
      ofCeiling: Number((achieved / maxRps).toFixed(3)),
      busiestSecond: emu.maxInWindow("123456789012", 1000),
      requests: emu.requests.length,
    };
  } finally {
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.key;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.key === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    await emu.close();
  }
}
