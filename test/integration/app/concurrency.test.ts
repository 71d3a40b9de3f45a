import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { verifyChain } from "../../../src/domain/event-log.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";

const corpusDir = fileURLToPath(new URL("../../../fixtures/csr-corpus/", import.meta.url));
const manifest = JSON.parse(readFileSync(join(corpusDir, "manifest.json"), "utf8")) as {
  file: string;
  reason: string;
}[];

let es: EngineStation;
let s: Station;
const csrFor = (id: string, key = deviceKey("ec-p256")) => makeCsr({ key, subject: [["CN", id]] });
const code = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => "ok",
    (e: unknown) => (e instanceof LinesignError ? e.code : `not a LinesignError: ${String(e)}`),
  );

beforeAll(async () => {
  es = await engineStation({ strict: { ca: "dev-ica", allowReissue: false } });
  s = es.open();
});
afterAll(async () => s?.close());

describe("ports issuing at once (worker pool and group commit)", () => {
  it("commits many concurrent issuances in shared transactions, each recorded, chain intact", async () => {
    const before = { ...s.issuance.committer.stats };
    const results = await Promise.all(
      Array.from({ length: 48 }, (_, i) =>
        s.issuance.issue({ csr: csrFor(`conc-${i}`), origin: `serial:/dev/tty${i % 16}` }),
      ),
    );
    const after = s.issuance.committer.stats;
    expect(new Set(results.map((r) => r.issuance.serial)).size).toBe(48);
    expect(after.items - before.items).toBe(48);
    expect(after.batches - before.batches).toBeLessThan(48); // grouped
    for (const r of results)
      expect(s.ctx.store.getIssuance(r.issuance.id)!.fingerprint).toBe(r.issuance.fingerprint);
    expect(verifyChain(s.ctx.store.events(), s.ctx.chainHash).ok).toBe(true);
  });

  it("lets exactly one of two ports racing for the same device win", async () => {
    const codes = await Promise.all([
      code(
        s.issuance.issue({
          csr: csrFor("race-dev"),
          profile: "strict",
          origin: "serial:/dev/ttyA",
        }),
      ),
      code(
        s.issuance.issue({
          csr: csrFor("race-dev"),
          profile: "strict",
          origin: "serial:/dev/ttyB",
        }),
      ),
    ]);
    expect(codes.sort()).toEqual(["DEVICE_ALREADY_ISSUED", "ok"]);
    expect(s.ctx.store.queryIssuances({ deviceId: "race-dev" })).toHaveLength(1);
  });

  it("lets exactly one of two devices racing with the same key win", async () => {
    const key = deviceKey("ec-p256");
    const codes = await Promise.all([
      code(s.issuance.issue({ csr: csrFor("clone-a", key), origin: "serial:/dev/ttyA" })),
      code(s.issuance.issue({ csr: csrFor("clone-b", key), origin: "serial:/dev/ttyB" })),
    ]);
    expect(codes.sort()).toEqual(["KEY_REUSED", "ok"]);
  });
});

describe("the same answers without worker threads", () => {
  it("refuses every corpus entry with the same reason when issuance.workers is 0", async () => {
    await s.close();
    const path = join(es.home, "station.json");
    const cfg = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    cfg.issuance = { workers: 0 };
    writeFileSync(path, JSON.stringify(cfg));
    s = es.open();
    expect(s.config.issuance.workers).toBe(0);
    for (const { file, reason } of manifest) {
      expect(
        await code(
          s.issuance.issue({
            csr: new Uint8Array(readFileSync(join(corpusDir, file))),
            origin: file,
          }),
        ),
        file,
      ).toBe(reason === "ISSUED" ? "ok" : reason);
    }
    expect(await code(s.issuance.issue({ csr: csrFor("inline-ok"), origin: "t" }))).toBe("ok");
  });
});

describe("the upload queue and CA validity", () => {
  it("queues every issued certificate for every target until that target has it", async () => {
    const a = await s.issuance.issue({ csr: csrFor("queue-a"), origin: "t" });
    const b = await s.issuance.issue({ csr: csrFor("queue-b"), origin: "t" });
    const ids = (target: string) => s.ctx.store.queuedForUpload(target, 100_000).map((i) => i.id);
    expect(ids("eu-account")).toEqual(expect.arrayContaining([a.issuance.id, b.issuance.id]));
    const upload = {
      target: "eu-account",
      awsCertificateId: "c0ffee",
      awsArn: "arn:aws:iot:eu-west-1:111122223333:cert/c0ffee",
      attempts: 1,
      lastError: null,
      updatedAt: new Date().toISOString(),
    };
    s.ctx.store.recordUpload({ ...upload, issuanceId: a.issuance.id, state: "failed" });
    expect(ids("eu-account")).toContain(a.issuance.id); // failed stays queued
    s.ctx.store.recordUpload({ ...upload, issuanceId: a.issuance.id, state: "done" });
    expect(ids("eu-account")).not.toContain(a.issuance.id);
    expect(ids("eu-account")).toContain(b.issuance.id);
    expect(ids("us-account")).toEqual(expect.arrayContaining([a.issuance.id, b.issuance.id])); // other targets unaffected
  });

  it("refuses with CA_EXPIRED once the CA's validity has ended", async () => {
    const realClock = s.ctx.clock;
    s.ctx.clock = { now: () => new Date(Date.parse(s.ca.get("dev-ica").notAfter!) + 1000) };
    try {
      expect(await code(s.issuance.issue({ csr: csrFor("too-late"), origin: "t" }))).toBe(
        "CA_EXPIRED",
      );
    } finally {
      s.ctx.clock = realClock;
    }
  });
});
