/**
 * The issuance path's commits are synced to disk off the event loop
 * (StationStore.commitDeferred, durable). The disk's sync is the one part
 * replaced here (StationOptions.diskSync), to hold it or fail it as a failing
 * disk does; the database, its log file and the token are real. Nothing may
 * leave, and the token's head may not name an entry, before the disk has it.
 */
import { fdatasync, mkdtempSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Station } from "../../../src/compose.js";
import { SqliteStationStore, type DiskSync } from "../../../src/adapters/db/station-store.js";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import { LinesignError } from "../../../src/domain/errors.js";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";
import { IotEmulator } from "../../../fixtures/aws-iot-emulator.js";
import { stationRows } from "../../helpers/db-rows.js";

const csrFor = (id: string, key = deviceKey("ec-p256")) => makeCsr({ key, subject: [["CN", id]] });

const rows = <T>(es: EngineStation, sql: string): T[] => stationRows<T>(es.home, sql);

const open: Station[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => undefined);
});

/** A disk sync that, once held, waits until released; `called` resolves at its first call held. */
function heldSync(): { sync: DiskSync; hold(): Promise<void>; release(): void } {
  const waiting: (() => void)[] = [];
  let held: (() => void) | null = null;
  return {
    sync: (fd, done) => {
      if (!held) return fdatasync(fd, done);
      waiting.push(() => fdatasync(fd, done));
      held();
    },
    hold: () => new Promise<void>((r) => (held = r)),
    release() {
      held = null;
      for (const w of waiting.splice(0)) w();
    },
  };
}

describe("commits synced off the event loop", () => {
  it("answers an issuance, and moves the token's head over it, only once the disk has its record", async () => {
    const es = await engineStation();
    const disk = heldSync();
    const s = es.open(undefined, { diskSync: disk.sync });
    open.push(s);
    await s.issuance.issue({ csr: csrFor("sync-0"), origin: "t" });
    const before = s.ctx.store.head()!.seq;
    const held = disk.hold();
    let answered = false;
    const issued = s.issuance
      .issue({ csr: csrFor("sync-1"), origin: "t", handOver: () => true })
      .then((r) => {
        answered = true;
        return r;
      });
    await held;
    // Committed (another reader sees it) and written to the log file, but not yet on disk.
    const recorded = rows<{ state: string }>(
      es,
      "SELECT state FROM issuances WHERE device_id='sync-1'",
    );
    expect(recorded.map((r) => r.state)).toEqual(["DELIVERED"]);
    const entry = rows<{ seq: number }>(
      es,
      "SELECT seq FROM events WHERE action='issuance.issue' AND subject='sync-1'",
    )[0]!.seq;
    expect(entry).toBeGreaterThan(before);
    // A checkpoint asked for now must not put the head over it either.
    const checkpoint = s.checkpointer.checkpoint();
    let checkpointed = false;
    void checkpoint.then(() => (checkpointed = true));
    const binding = await s.checkpointer.binding();
    expect(binding.tokenSeq ?? 0).toBeLessThan(entry);
    expect(answered).toBe(false);
    expect(checkpointed).toBe(false);

    disk.release();
    const r = await issued;
    expect(r.delivered).toBe(true);
    await checkpoint;
    const after = await s.checkpointer.binding();
    expect(after.state).toBe("bound");
    expect(after.tokenSeq!).toBeGreaterThanOrEqual(entry);
  });

  it("withholds what a failed disk sync may have lost, stops signing, and hands the same certificate over after a restart", async () => {
    const es = await engineStation();
    let failing = false;
    const sync: DiskSync = (fd, done) => {
      if (!failing) return fdatasync(fd, done);
      done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", errno: -5 }));
    };
    const s = es.open(undefined, { diskSync: sync });
    open.push(s);
    await s.issuance.issue({ csr: csrFor("eio-0"), origin: "t" });
    const headBefore = (await s.checkpointer.binding()).tokenSeq;
    failing = true;
    const csr = csrFor("eio-1");
    let err: unknown;
    try {
      await s.issuance.issue({ csr, origin: "t", handOver: () => true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LinesignError);
    const e = err as LinesignError;
    expect(e.code).toBe("DB_IO");
    expect(e.message).toContain(join(es.home, "station.db-wal"));
    expect(e.message).toMatch(/EIO/);
    expect(e.message).toMatch(/restart the station/);
    // Its record is kept, never handed over (the delivery recorded with it taken back).
    expect(
      rows<{ state: string }>(es, "SELECT state FROM issuances WHERE device_id='eio-1'").map(
        (r) => r.state,
      ),
    ).toEqual(["ISSUED"]);
    expect(rows(es, "SELECT * FROM rejections WHERE device_id='eio-1'")).toEqual([]);
    // The head did not move over what the disk may not have.
    expect((await s.checkpointer.binding()).tokenSeq).toBe(headBefore);
    // Nothing more is signed or recorded while the station runs on that disk.
    failing = false;
    let next: unknown;
    try {
      await s.issuance.issue({ csr: csrFor("eio-2"), origin: "t" });
    } catch (x) {
      next = x;
    }
    expect((next as LinesignError).code).toBe("DB_IO");
    expect(rows(es, "SELECT * FROM issuances WHERE device_id='eio-2'")).toEqual([]);
    await s.close().catch(() => undefined);
    open.splice(0);

    // Restarted (the disk answers again): the same request gets the same certificate.
    const s2 = es.open();
    open.push(s2);
    const again = await s2.issuance.issue({ csr, origin: "t" });
    expect(again.redelivery).toBe(true);
    expect(again.issuance.deviceId).toBe("eio-1");
    expect((await s2.audit.verify()).ok).toBe(true);
  });
});

describe("what the disk has, as other readers and the store's own callers see it", () => {
  it("lets another connection of the station move the token's head over a commit only once the disk has it", async () => {
    const es = await engineStation();
    const disk = heldSync();
    const s = es.open(undefined, { diskSync: disk.sync });
    open.push(s);
    await s.issuance.issue({ csr: csrFor("other-0"), origin: "t" });
    // The audit key exists: a checkpoint from here on writes nothing before the head.
    await s.checkpointer.checkpoint();
    // Another process of the station (a command, the kiosk's service) with the same home.
    const other = es.open(undefined, { diskSync: disk.sync });
    open.push(other);
    const held = disk.hold();
    const issued = s.issuance.issue({ csr: csrFor("other-1"), origin: "t", handOver: () => true });
    await held;
    const entry = rows<{ seq: number }>(
      es,
      "SELECT seq FROM events WHERE action='issuance.issue' AND subject='other-1'",
    )[0]!.seq;
    // The other connection sees the commit at once; its checkpoint must not name it before the disk has it.
    expect(other.ctx.store.head()!.seq).toBeGreaterThanOrEqual(entry);
    const otherHeld = disk.hold();
    const checkpoint = other.checkpointer.checkpoint();
    const first = await Promise.race([
      checkpoint.then(() => "checkpointed" as const),
      otherHeld.then(() => "waits for the disk" as const),
    ]);
    expect((await s.checkpointer.binding()).tokenSeq ?? 0).toBeLessThan(entry);
    expect(first).toBe("waits for the disk");
    disk.release();
    expect((await issued).delivered).toBe(true);
    await checkpoint;
    expect((await other.checkpointer.binding()).tokenSeq!).toBeGreaterThanOrEqual(entry);
  });

  it("uploads a certificate from another process's sync only once the disk has its record", async () => {
    const emu = new IotEmulator({
      accounts: [
        { accessKeyId: "AKIAWALREVIEW", secretAccessKey: "secret-w", accountId: "111122223333" },
      ],
    });
    await emu.start();
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        AWS_ACCESS_KEY_ID: "AKIAWALREVIEW",
        AWS_SECRET_ACCESS_KEY: "secret-w",
        AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials",
        AWS_CONFIG_FILE: "/nonexistent/config",
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      });
      delete process.env.AWS_PROFILE;
      const es = await engineStation();
      const disk = heldSync();
      const s = es.open(undefined, { diskSync: disk.sync });
      open.push(s);
      await s.sync.addTarget("plant", {
        region: "eu-west-1",
        endpoint: emu.url,
        caMode: "SNI_ONLY",
        deviceRegistration: "without-ca",
      });
      // `linesign sync` in another process, on the same home.
      const other = es.open(undefined, { diskSync: disk.sync });
      open.push(other);
      const held = disk.hold();
      const issued = s.issuance.issue({ csr: csrFor("up-1"), origin: "t", handOver: () => true });
      await held;
      const otherHeld = disk.hold();
      const run = other.sync.sync({ targets: ["plant"] });
      const first = await Promise.race([
        run.then(() => "uploaded" as const),
        otherHeld.then(() => "waits for the disk" as const),
      ]);
      // Nothing reached the target while the record may still be lost.
      expect(emu.state("111122223333", "eu-west-1").certs).toEqual([]);
      expect(first).toBe("waits for the disk");
      disk.release();
      expect((await issued).delivered).toBe(true);
      const r = await run;
      expect(r.targets[0]!.devices).toMatchObject({ failed: 0 });
      expect(emu.state("111122223333", "eu-west-1").certs).toHaveLength(1);
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
      await emu.close();
    }
  });

  it("trusts no disk sync that ran beside one that failed: the kernel reports the error to one of them", async () => {
    const es = await engineStation();
    const eio = () =>
      Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", errno: -5 });
    let armed = false;
    let first: ((err: NodeJS.ErrnoException | null) => void) | null = null;
    let firstCalled: () => void = () => undefined;
    const firstHeld = new Promise<void>((r) => (firstCalled = r));
    let second = false;
    const failFirst = () => {
      const f = first;
      first = null;
      f?.(eio());
    };
    // The first sync is held; one started beside it completes first (as the thread pool may order them),
    // and the held one then fails.
    const sync: DiskSync = (fd, done) => {
      if (!armed) return fdatasync(fd, done);
      if (!first && !second) {
        first = done;
        firstCalled();
        return;
      }
      second = true;
      fdatasync(fd, (err) => {
        done(err);
        setImmediate(failFirst);
      });
    };
    const s = es.open(undefined, { diskSync: sync });
    open.push(s);
    await s.issuance.issue({ csr: csrFor("twin-0"), origin: "t" });
    const headBefore = (await s.checkpointer.binding()).tokenSeq;
    armed = true;
    const a = s.issuance.issue({ csr: csrFor("twin-1"), origin: "t", handOver: () => true });
    await firstHeld;
    const b = s.issuance.issue({
      csr: csrFor("twin-2"),
      origin: "t",
      handOver: () => {
        // Inside twin-2's commit: with no second sync started beside the first, the first fails now.
        setImmediate(() => {
          if (!second) failFirst();
        });
        return true;
      },
    });
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => "delivered",
        (e: unknown) => (e as LinesignError).code,
      );
    expect(await outcome(a)).toBe("DB_IO");
    expect(await outcome(b)).toBe("DB_IO");
    expect(
      rows<{ device_id: string; state: string }>(
        es,
        "SELECT device_id, state FROM issuances WHERE device_id LIKE 'twin-%' ORDER BY device_id",
      ).map((r) => `${r.device_id}:${r.state}`),
    ).toEqual(["twin-0:ISSUED", "twin-1:ISSUED", "twin-2:ISSUED"]);
    expect((await s.checkpointer.binding()).tokenSeq).toBe(headBefore);
  });

  it("does not count a transaction that wrote nothing as a sync of the commits before it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "linesign-durable-"));
    let syncs = 0;
    const store = SqliteStationStore.open(join(dir, "station.db"), {
      create: true,
      hash: nodeChainHash,
      diskSync: (fd, done) => {
        syncs++;
        fdatasync(fd, done);
      },
    });
    try {
      const event = (action: string) => ({
        actor: "t",
        action,
        subject: null,
        outcome: "ok" as const,
      });
      store.commitDeferred(() => store.appendEvent(event("t.first")));
      await store.durable();
      const before = syncs;
      store.commitDeferred(() => store.appendEvent(event("t.deferred")));
      // Read in a transaction of its own: SQLite commits it without writing or syncing the log file.
      expect(store.transaction(() => store.head()!.seq)).toBe(2);
      await store.durable();
      expect(syncs).toBe(before + 1);
    } finally {
      store.close();
    }
  });
  it("commits FULL once the log file's path no longer names the file SQLite writes (deleted, replaced)", async () => {
    for (const how of ["deleted", "replaced"] as const) {
      const dir = mkdtempSync(join(tmpdir(), "linesign-wal-gone-"));
      const path = join(dir, "station.db");
      let syncs = 0;
      const store = SqliteStationStore.open(path, {
        create: true,
        hash: nodeChainHash,
        diskSync: (fd, done) => {
          syncs++;
          fdatasync(fd, done);
        },
      });
      try {
        const event = (action: string) => ({
          actor: "t",
          action,
          subject: null,
          outcome: "ok" as const,
        });
        store.commitDeferred(() => store.appendEvent(event("t.before")));
        await store.durable();
        expect(syncs, how).toBe(1);
        unlinkSync(`${path}-wal`);
        if (how === "replaced") writeFileSync(`${path}-wal`, "");
        // Our descriptor of the old file would sync a file SQLite may no longer write: it is let go.
        store.commitDeferred(() => store.appendEvent(event("t.after")));
        await store.durable();
        expect(syncs, how).toBe(1);
        expect(store.head()!.seq, how).toBe(2);
      } finally {
        store.close();
      }
    }
  });
});
