import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { verifyChain } from "../../../src/domain/event-log.js";
import { csrPem, deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { openssl } from "../../helpers/cli.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";
import { csrInfo, expectCanonicalCertificate } from "../../helpers/der.js";
import { stationCount } from "../../helpers/db-rows.js";

const corpusDir = fileURLToPath(new URL("../../../fixtures/csr-corpus/", import.meta.url));
const manifest = JSON.parse(readFileSync(join(corpusDir, "manifest.json"), "utf8")) as {
  file: string;
  reason: string;
  what: string;
}[];

let es: EngineStation;
let s: Station;

async function rejected(p: Promise<unknown>): Promise<LinesignError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}

const csrFor = (id: string, key = deviceKey("ec-p256")) => makeCsr({ key, subject: [["CN", id]] });
const count = (table: string): number => stationCount(es.home, table);

beforeAll(async () => {
  es = await engineStation({
    strict: {
      ca: "dev-ica",
      validityDays: 30,
      allowReissue: false,
      subject: { fixed: { O: "Example Devices", C: "DE" } },
    },
    forever: { ca: "dev-ica", validityDays: 36500 },
    rsa: {
      ca: "dev-ica",
      validityDays: 365,
      keys: { ec: [], rsaMinBits: 2048 },
      deviceIdRule: "^[a-z0-9-]{1,63}$",
      san: [{ type: "dns", template: "{deviceId}.devices.example" }],
    },
  });
  s = es.open();
});

afterAll(async () => {
  await s?.close();
});

describe("issuance engine on a real token", () => {
  it.each(manifest)(
    "answers $file ($what) with $reason, records it, and issues only when expected",
    async ({ file, reason }) => {
      const before = { issued: count("issuances"), rejected: count("rejections") };
      const input = new Uint8Array(readFileSync(join(corpusDir, file)));
      if (reason === "ISSUED") {
        const out = await s.issuance.issue({ csr: input, origin: `file:${file}` });
        expect(count("issuances")).toBe(before.issued + 1);
        expect(count("rejections")).toBe(before.rejected);
        const cert = expectCanonicalCertificate(out.issuance.certDer);
        // The certificate's key is the request's key, in the station's own encoding.
        const asked = csrInfo(input).certificationRequestInfo.subjectPKInfo;
        expect(Buffer.from(cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)).toEqual(
          Buffer.from(asked.subjectPublicKey),
        );
        const ev = [...s.ctx.store.events()].at(-1)!;
        expect(ev).toMatchObject({ action: "issuance.issue", outcome: "ok" });
        return;
      }
      const e = await rejected(s.issuance.issue({ csr: input, origin: `file:${file}` }));
      expect(e.code).toBe(reason);
      expect(count("issuances")).toBe(before.issued);
      expect(count("rejections")).toBe(before.rejected + 1);
      const row = s.audit.log({ status: "REJECTED" }).at(-1)!;
      expect(row).toMatchObject({ reason, origin: `file:${file}` });
      expect(row.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      const ev = [...s.ctx.store.events()].at(-1)!;
      expect(ev).toMatchObject({ action: "issuance.reject", code: reason, outcome: "refused" });
    },
  );

  it("holds at least 60 hostile requests, every layer and key encoding among them", () => {
    expect(manifest.length).toBeGreaterThanOrEqual(60);
    const reasons = new Set(manifest.map((m) => m.reason));
    for (const r of [
      "CSR_MALFORMED",
      "KEY_INVALID",
      "KEY_REUSED",
      "KEY_TYPE_NOT_ALLOWED",
      "ISSUED",
    ])
      expect(reasons).toContain(r);
  });

  it("issues an EC P-256 device certificate with exactly the profile's extensions, verifying with openssl", async () => {
    const out = await s.issuance.issue({
      csr: csrFor("ext-ec-1"),
      profile: "strict",
      origin: "test",
    });
    const cert = new x509.X509Certificate(out.issuance.certDer);
    expect(cert.subject).toBe("C=DE, O=Example Devices, CN=ext-ec-1");
    const exts = cert.extensions.map((e) => [e.type, e.critical]);
    expect(exts).toEqual([
      ["2.5.29.19", true], // basicConstraints
      ["2.5.29.15", true], // keyUsage
      ["2.5.29.37", false], // extendedKeyUsage
      ["2.5.29.14", false], // subjectKeyIdentifier
      ["2.5.29.35", false], // authorityKeyIdentifier
    ]);
    expect(cert.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
    expect(cert.getExtension(x509.KeyUsagesExtension)!.usages).toBe(
      x509.KeyUsageFlags.digitalSignature,
    );
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([
      "1.3.6.1.5.5.7.3.2",
    ]);
    expect(cert.serialNumber.length).toBeGreaterThanOrEqual(16);
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe(30 * 86_400_000 + 5 * 60_000);
    const dir = mkdtempSync(join(tmpdir(), "leaf-"));
    const files = {
      root: join(dir, "root.pem"),
      ica: join(dir, "ica.pem"),
      leaf: join(dir, "leaf.pem"),
    };
    writeFileSync(files.root, await s.ca.export("dev-root", false));
    writeFileSync(files.ica, await s.ca.export("dev-ica", false));
    writeFileSync(files.leaf, cert.toString("pem"));
    expect(
      openssl([
        "verify",
        "-CAfile",
        files.root,
        "-untrusted",
        files.ica,
        "-purpose",
        "sslclient",
        files.leaf,
      ]).out,
    ).toContain(": OK");
  });

  it("issues for an RSA device key: keyEncipherment added, DNS SAN from the template", async () => {
    const out = await s.issuance.issue({
      csr: csrFor("rsa-dev-1", deviceKey("rsa-2048")),
      profile: "rsa",
      origin: "test",
    });
    const cert = new x509.X509Certificate(out.issuance.certDer);
    expect(cert.getExtension(x509.KeyUsagesExtension)!.usages).toBe(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
    expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON()).toEqual([
      { type: "dns", value: "rsa-dev-1.devices.example" },
    ]);
    expect(out.issuance.keyType).toBe("rsa-2048");
    const dir = mkdtempSync(join(tmpdir(), "leaf-"));
    writeFileSync(join(dir, "chain.pem"), await s.ca.export("dev-ica", true));
    writeFileSync(join(dir, "leaf.pem"), cert.toString("pem"));
    expect(
      openssl(["verify", "-CAfile", join(dir, "chain.pem"), join(dir, "leaf.pem")]).out,
    ).toContain(": OK");
    // An EC key under the RSA-only profile is refused.
    expect(
      (
        await rejected(
          s.issuance.issue({ csr: csrFor("rsa-dev-2"), profile: "rsa", origin: "test" }),
        )
      ).code,
    ).toBe("KEY_TYPE_NOT_ALLOWED");
  });

  it("cuts validity at the CA's notAfter and records the cut", async () => {
    const out = await s.issuance.issue({
      csr: csrFor("long-lived-1"),
      profile: "forever",
      origin: "test",
    });
    expect(out.issuance.validityCut).toBe(true);
    expect(out.issuance.notAfter).toBe(s.ca.get("dev-ica").notAfter);
    const ev = [...s.ctx.store.events()].filter((e) => e.action === "issuance.issue").at(-1)!;
    expect(ev.details).toMatchObject({ validityCut: true, serial: out.issuance.serial });
  });

  it("refuses a key seen before, and answers the same device's same request with the same certificate", async () => {
    const key = deviceKey("ec-p256");
    const first = await s.issuance.issue({
      csr: csrFor("twin-a", key),
      profile: "strict",
      origin: "serial:/dev/ttyA",
    });
    const again = await s.issuance.issue({
      csr: csrFor("twin-a", key),
      profile: "strict",
      origin: "serial:/dev/ttyA",
    });
    expect(again.redelivery).toBe(true);
    expect(again.issuance.serial).toBe(first.issuance.serial);
    const e = await rejected(
      s.issuance.issue({
        csr: csrFor("twin-b", key),
        profile: "strict",
        origin: "serial:/dev/ttyB",
      }),
    );
    expect(e.code).toBe("KEY_REUSED");
    expect(e.message).toContain('"twin-a"');
    await s.issuance.confirm(first.issuance.id, first.issuance.fingerprint);
    // A confirmed device that never heard the station's DONE asks again: same certificate, state kept.
    const late = await s.issuance.issue({
      csr: csrFor("twin-a", key),
      profile: "strict",
      origin: "x",
    });
    expect(late.redelivery).toBe(true);
    expect(late.issuance.serial).toBe(first.issuance.serial);
    expect((await s.issuance.markDelivered(first.issuance.id)).state).toBe("CONFIRMED");
    expect((await s.issuance.confirm(first.issuance.id, first.issuance.fingerprint)).state).toBe(
      "CONFIRMED",
    );
    // Another device with that key is still refused.
    expect(
      (
        await rejected(
          s.issuance.issue({ csr: csrFor("twin-c", key), profile: "strict", origin: "x" }),
        )
      ).code,
    ).toBe("KEY_REUSED");
  });

  it("refuses a second certificate for a device unless the profile allows re-issue, then supersedes", async () => {
    await s.issuance.issue({ csr: csrFor("dev-twice"), profile: "strict", origin: "test" });
    const e = await rejected(
      s.issuance.issue({ csr: csrFor("dev-twice"), profile: "strict", origin: "test" }),
    );
    expect(e.code).toBe("DEVICE_ALREADY_ISSUED");
    const first = s.ctx.store.liveIssuanceForDevice("dev-twice")!;
    const second = await s.issuance.issue({
      csr: csrFor("dev-twice"),
      profile: "default",
      origin: "test",
    });
    expect(second.issuance.supersedes).toBe(first.id);
    expect(s.ctx.store.getIssuance(first.id)!.state).toBe("SUPERSEDED");
    expect(s.ctx.store.liveIssuanceForDevice("dev-twice")!.id).toBe(second.issuance.id);
  });

  it("checks the device id given against the CSR's CN", async () => {
    expect(
      (await rejected(s.issuance.issue({ csr: csrFor("cn-one"), deviceId: "cn-two", origin: "t" })))
        .code,
    ).toBe("DEVICE_ID_MISMATCH");
    const ok = await s.issuance.issue({
      csr: makeCsr({ key: deviceKey("ec-p256"), subject: [] }),
      deviceId: "no-cn-device",
      origin: "t",
    });
    expect(ok.issuance.deviceId).toBe("no-cn-device");
  });

  it("refuses when the profile's CA is inactive, and names the profile when unknown", async () => {
    await s.ca.deactivate("dev-ica", { stopProfiles: true });
    expect((await rejected(s.issuance.issue({ csr: csrFor("ca-off"), origin: "t" }))).code).toBe(
      "CA_INACTIVE",
    );
    await s.ca.activate("dev-ica");
    const e = await rejected(s.issuance.issue({ csr: csrFor("p"), profile: "nope", origin: "t" }));
    expect(e.code).toBe("PROFILE_UNKNOWN");
    expect(e.message).toContain("strict");
  });

  it("moves ISSUED -> DELIVERED -> CONFIRMED, and a wrong hash to DELIVERY_FAILED", async () => {
    const a = await s.issuance.issue({ csr: csrFor("flow-a"), origin: "t" });
    await s.issuance.markDelivered(a.issuance.id);
    expect((await s.issuance.confirm(a.issuance.id, a.issuance.fingerprint)).state).toBe(
      "CONFIRMED",
    );
    const b = await s.issuance.issue({ csr: csrFor("flow-b"), origin: "t" });
    await s.issuance.markDelivered(b.issuance.id);
    const e = await rejected(s.issuance.confirm(b.issuance.id, "00".repeat(32)));
    expect(e.code).toBe("CONFIRMATION_MISMATCH");
    expect(s.ctx.store.getIssuance(b.issuance.id)!.state).toBe("DELIVERY_FAILED");
    // Handing a confirmed certificate out again leaves it confirmed; failing it is refused.
    expect((await s.issuance.markDelivered(a.issuance.id)).state).toBe("CONFIRMED");
    expect((await rejected(s.issuance.markDeliveryFailed(a.issuance.id, "x"))).code).toBe(
      "ISSUANCE_STATE",
    );
  });

  it("records a certificate handed straight over DELIVERED in its own commit, after its issue entry; one whose device has gone stays ISSUED", async () => {
    const entries = (id: number) =>
      [...s.ctx.store.events()]
        .filter((e) => (e.details as { issuance?: unknown }).issuance === id)
        .map((e) => [e.action, (e.details as { to?: string }).to ?? null]);
    const batches = s.issuance.committer.stats.batches;
    let asked = 0;
    const a = await s.issuance.issue({
      csr: csrFor("hand-a"),
      origin: "serial:/dev/ttyH",
      handOver: () => (asked++, true),
    });
    // Asked once, inside the one durable transaction that holds both entries.
    expect(asked).toBe(1);
    expect(s.issuance.committer.stats.batches - batches).toBe(1);
    expect(a.delivered).toBe(true);
    expect(a.issuance.state).toBe("DELIVERED");
    expect(s.ctx.store.getIssuance(a.issuance.id)!.state).toBe("DELIVERED");
    expect(entries(a.issuance.id)).toEqual([
      ["issuance.issue", null],
      ["issuance.deliver", "DELIVERED"],
    ]);
    expect((await s.issuance.confirm(a.issuance.id, a.issuance.fingerprint)).state).toBe(
      "CONFIRMED",
    );
    // The device went away before the commit: recorded, not handed over.
    const kb = deviceKey("ec-p256");
    const b = await s.issuance.issue({
      csr: csrFor("hand-b", kb),
      origin: "serial:/dev/ttyH",
      handOver: () => false,
    });
    expect(b.delivered).toBe(false);
    expect(s.ctx.store.getIssuance(b.issuance.id)!.state).toBe("ISSUED");
    expect(entries(b.issuance.id)).toEqual([["issuance.issue", null]]);
    // The same request again is a redelivery: recorded apart, as before.
    const again = await s.issuance.issue({
      csr: csrFor("hand-b", kb),
      origin: "serial:/dev/ttyH",
      handOver: () => true,
    });
    expect(again).toMatchObject({ redelivery: true, delivered: false });
  });

  it("hands out nothing when the commit fails after signing (write-ahead)", async () => {
    let signed: Uint8Array | null = null;
    const broken = es.open({
      beforeCommit: (der) => {
        signed = der;
        throw new Error("disk full (injected)");
      },
    });
    const before = count("issuances");
    const e = await rejected(broken.issuance.issue({ csr: csrFor("wal-1"), origin: "t" }));
    expect(e.code).toBe("INTERNAL");
    expect(signed).not.toBeNull();
    expect(count("issuances")).toBe(before);
    expect(broken.audit.log({ deviceId: "wal-1" })).toEqual([
      expect.objectContaining({ status: "REJECTED", reason: "INTERNAL" }),
    ]);
    await broken.close();
  });

  it("keeps the chain intact through all of the above", () => {
    expect(verifyChain(s.ctx.store.events(), s.ctx.chainHash).ok).toBe(true);
  });

  it("refuses a subject string the decoder chokes on as CSR_MALFORMED, not as a station fault", async () => {
    // The CN re-tagged as a 9-byte UniversalString (whose characters are 4 bytes each).
    const der = makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", "prop-base"]] });
    const at = Buffer.from(der).indexOf(Buffer.from([0x0c, 0x09, ...Buffer.from("prop-base")]));
    expect(at).toBeGreaterThan(0);
    der[at] = 0x1c;
    expect((await rejected(s.issuance.issue({ csr: der, origin: "t" }))).code).toBe(
      "CSR_MALFORMED",
    );
  });

  it("never crashes on random bytes or mutated valid requests, and stays consistent (property test)", async () => {
    let seed = 0x5eed;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    // Several base requests (fresh keys): which bytes a mutation hits differs with each.
    const bases = Array.from({ length: 5 }, (_, i) => csrFor(`prop-base-${i}`));
    let issued = 0;
    const before = count("issuances");
    for (let i = 0; i < 1000; i++) {
      const base = bases[i % bases.length]!;
      let input: Uint8Array;
      if (i % 4 === 0) {
        input = new Uint8Array(rand(600));
        for (let j = 0; j < input.length; j++) input[j] = rand(256);
      } else {
        input = base.slice();
        for (let m = 0; m <= rand(4); m++) input[rand(input.length)] = rand(256);
        if (rand(5) === 0) input = input.subarray(0, rand(input.length));
      }
      try {
        const r = await s.issuance.issue({ csr: input, origin: "fuzz" });
        if (!r.redelivery) issued++; // a mutation may leave the request as it was
      } catch (e) {
        expect(e).toBeInstanceOf(LinesignError);
        expect((e as LinesignError).code).not.toBe("INTERNAL");
      }
    }
    expect(count("issuances")).toBe(before + issued);
    expect(verifyChain(s.ctx.store.events(), s.ctx.chainHash).ok).toBe(true);
  });
});

describe("write-ahead under SIGKILL between signing and commit", () => {
  it("leaves no certificate out and no record, and the log verifies", async () => {
    await s.close();
    const child = fileURLToPath(new URL("../../helpers/issue-and-die-child.mjs", import.meta.url));
    const csr = join(es.hsm.dir, "die.csr");
    writeFileSync(csr, csrPem(csrFor("killed-mid-issue")));
    const r = spawnSync(process.execPath, [child, es.home, csr], {
      env: { ...process.env },
      encoding: "utf8",
    });
    expect(r.signal).toBe("SIGKILL");
    expect(r.stdout).not.toContain("BEGIN CERTIFICATE");
    expect(r.stdout).toContain("signed, about to commit");
    s = es.open();
    expect(s.ctx.store.queryIssuances({ deviceId: "killed-mid-issue" })).toEqual([]);
    expect((await s.audit.verify()).ok).toBe(true);
  });
});

describe("truncation is visible against the token", () => {
  it("catches a cut tail and an older copy of the database", async () => {
    await s.issuance.issue({ csr: csrFor("before-copy"), origin: "t" });
    await s.checkpointer.checkpoint();
    await s.close();
    const old = mkdtempSync(join(tmpdir(), "old-db-"));
    cpSync(join(es.home, "station.db"), join(old, "station.db"));
    s = es.open();
    for (let i = 0; i < 3; i++)
      await s.issuance.issue({ csr: csrFor(`after-copy-${i}`), origin: "t" });
    await s.checkpointer.checkpoint();
    expect((await s.audit.verify()).ok).toBe(true);
    await s.close();

    // Cut the tail: the last entries and their checkpoints go; the chain that is left is intact.
    const db = new Database(join(es.home, "station.db"));
    db.exec("DROP TRIGGER events_no_delete");
    const head = (db.prepare("SELECT max(seq) AS m FROM events").get() as { m: number }).m;
    db.prepare("DELETE FROM events WHERE seq > ?").run(head - 6);
    db.prepare("DELETE FROM checkpoints WHERE seq > ?").run(head - 6);
    db.close();
    s = es.open();
    const cut = await s.audit.verify();
    expect(cut.ok).toBe(false);
    expect(cut.firstBad).toMatchObject({ kind: "truncated" });
    expect(cut.message).toContain("cut off");
    await s.close();

    // Put the older copy back.
    cpSync(join(old, "station.db"), join(es.home, "station.db"));
    s = es.open();
    const swapped = await s.audit.verify();
    expect(swapped.ok).toBe(false);
    expect(swapped.firstBad).toMatchObject({ kind: "truncated" });
  });
});
