/**
 * The serial line end to end: `linesign line run` on socat pty pairs, the
 * device simulator on the far ends, a real SoftHSM token and a real WAL
 * database. Assertions are on what the devices stored, the rows, the log and
 * the bytes counted on the wire.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openssl } from "../helpers/cli.js";
import { devStation, type TestStation } from "../helpers/station.js";
import {
  derToPem,
  exportChain,
  ptyPair,
  runSim,
  setLineConfig,
  startLine,
  startSim,
  type PtyPair,
} from "../helpers/serial.js";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function issuances(st: TestStation) {
  const db = new Database(join(st.home, "station.db"), { readonly: true });
  try {
    return db
      .prepare(
        "SELECT id, serial, device_id AS deviceId, fingerprint, state, origin, key_type AS keyType, device_model AS model, device_firmware AS firmware FROM issuances ORDER BY id",
      )
      .all() as {
      id: number;
      serial: string;
      deviceId: string;
      fingerprint: string;
      state: string;
      origin: string;
      keyType: string;
      model: string | null;
      firmware: string | null;
    }[];
  } finally {
    db.close();
  }
}

function rejections(st: TestStation): { reason: string; deviceId: string | null }[] {
  const db = new Database(join(st.home, "station.db"), { readonly: true });
  try {
    return db.prepare("SELECT reason, device_id AS deviceId FROM rejections ORDER BY id").all() as {
      reason: string;
      deviceId: string | null;
    }[];
  } finally {
    db.close();
  }
}

describe("serial line", () => {
  let st: TestStation;
  let chain: ReturnType<typeof exportChain>;
  let dir: string;
  const pairs: PtyPair[] = [];

  beforeAll(() => {
    st = devStation();
    chain = exportChain(st);
    dir = mkdtempSync(join(tmpdir(), "linesign-pty-"));
  });
  afterAll(async () => {
    await Promise.all(pairs.map((p) => p.kill()));
  });

  const pair = async (name: string) => {
    const p = await ptyPair(dir, name);
    pairs.push(p);
    return p;
  };

  it("provisions EC and RSA devices on two ports at once; openssl verifies what they stored", async () => {
    const [a, b] = [await pair("ec"), await pair("rsa")];
    const line = startLine(st, [a.station, b.station]);
    const store = join(dir, "store-gang");
    const [simA, simB] = await Promise.all([
      runSim([
        "--port",
        a.device,
        "--device-id",
        "gang-ec",
        "--key",
        "ec-p256",
        "--count",
        "2",
        // Its first STORED is repeated once more after the second greeting arrived: that repeat,
        // and the station's answer to it, belong to the first exchange, not the second.
        "--fault",
        "late-repeat",
        "--root",
        chain.chain,
        "--store",
        store,
      ]),
      runSim([
        "--port",
        b.device,
        "--device-id",
        "gang-rsa",
        "--key",
        "rsa-2048",
        "--count",
        "2",
        "--root",
        chain.chain,
        "--store",
        store,
      ]),
    ]);
    expect(simA.code, simA.stderr).toBe(0);
    expect(simB.code, simB.stderr).toBe(0);
    line.proc.kill("SIGINT"); // every device is done: stop the line
    expect((await line.exited).code, line.stderr()).toBe(0);
    const summary = line.lines.all.find((e) => e.event === "summary")!;
    expect(summary).toMatchObject({ devices: 4, confirmed: 4, failed: 0 });

    const rows = issuances(st);
    for (const r of [...simA.results, ...simB.results]) {
      expect(r.ok).toBe(true);
      const der = new Uint8Array(readFileSync(r.stored!));
      const row = rows.find((x) => x.fingerprint === sha256(der))!;
      expect(row).toMatchObject({ deviceId: r.deviceId, state: "CONFIRMED", serial: r.serial });
      // What the device reported when it identified, kept for its Thing at AWS.
      expect(row).toMatchObject({ model: "SIM-1", firmware: "1.0.0" });
      expect(row.origin).toMatch(/^serial:.*\/(ec|rsa)-station$/);
      expect(row.keyType).toBe(r.deviceId.startsWith("gang-ec") ? "ec-p256" : "rsa-2048");
      const leaf = join(dir, `${r.deviceId}.pem`);
      writeFileSync(leaf, derToPem(der));
      const v = openssl([
        "verify",
        "-CAfile",
        chain.root,
        "-untrusted",
        chain.ca,
        "-purpose",
        "sslclient",
        leaf,
      ]);
      expect(v.out).toContain(": OK");
      expect(v.code).toBe(0);
      // Bytes on the wire: every byte from the greeting the device answered to DONE, both
      // directions, as the device counted them itself. Only a repeat the device sent while DONE
      // was on its way reaches the station after the exchange ended, and is not counted there;
      // a late repeat of the previous exchange is in neither count.
      const confirmed = line.lines.all.find(
        (e) => e.event === "device.confirmed" && e.deviceId === r.deviceId,
      )!;
      const seen = r.txBytes + r.rxBytes;
      expect(confirmed.wireBytes as number).toBeLessThanOrEqual(seen);
      expect(seen - (confirmed.wireBytes as number)).toBeLessThanOrEqual(r.resentBytes);
      if (r.resentBytes === 0) expect(confirmed.wireBytes).toBe(seen);
    }
    const sessions = st.events().filter((e) => e.action === "line.session");
    expect(sessions.filter((e) => e.outcome === "ok")).toHaveLength(4);
    expect(st.events().some((e) => e.action === "line.stop")).toBe(true);
    expect(st.run(["audit", "verify", "--json"]).json.ok).toBe(true);
  });

  it("times a device's cycle over the same bytes as its wire time, so its parts never add up to more than the whole", async () => {
    // At 9600 baud the greeting alone is 45 ms on the line: a cycle that began once the whole
    // greeting was in would come out shorter than the wire time and the station's turnarounds.
    // No repeats on either side: the certificate takes 1.6 s on this line, and a repeat
    // crossing an answer would put bytes of both directions on the line at once.
    setLineConfig(st, {
      timeouts: { retryMs: 20000, retries: 3, helloMs: 1000, csrMs: 60000, storedMs: 60000 },
    });
    const p = await pair("cycle");
    const sim = startSim([
      "--port",
      p.device,
      "--device-id",
      "cycle-9600",
      "--count",
      "2",
      "--baud",
      "9600",
      "--retry-ms",
      "20000",
      "--root",
      chain.chain,
      "--store",
      join(dir, "store-cycle"),
    ]);
    // Waiting for the greeting before the station sends it, as a device on the fixture does.
    await sim.lines.waitFor((e) => e.event === "ready", "the simulator's ready line");
    const line = startLine(st, [p.station], ["--count", "2", "--baud", "9600"]);
    const { code } = await sim.exited;
    expect(code, sim.stderr()).toBe(0);
    expect((await line.exited).code, line.stderr()).toBe(0);
    const done = sim.lines.all.filter((e) => e.event === "device.done") as {
      ok: boolean;
      cycleMs: number;
      wireMs: number;
      stationMs: number;
      resentBytes: number;
      turnaroundsMs: number[];
    }[];
    // The second device's greeting follows the first one's DONE on the line, as on a fixture.
    expect(done).toHaveLength(2);
    for (const r of done) {
      expect(r.ok).toBe(true);
      expect(r.resentBytes).toBe(0);
      // The station answered IDENTIFY, CSR and STORED: three turnarounds, together its time.
      expect(r.turnaroundsMs).toHaveLength(3);
      expect(r.turnaroundsMs.reduce((a, b) => a + b, 0)).toBeCloseTo(r.stationMs, 0);
      // What is left of the cycle is the device's own: never negative (0.1 ms roundings aside).
      expect(r.cycleMs - r.wireMs - r.stationMs).toBeGreaterThanOrEqual(-0.3);
    }
  });

  it("ends every fault with a plain reason, a log entry, and the port ready for the next device", async () => {
    setLineConfig(st, {
      timeouts: { retryMs: 300, retries: 3, helloMs: 200, csrMs: 3000, storedMs: 3000 },
    });
    const cases: { fault: string; count?: number; code: string | null; stage?: string }[] = [
      { fault: "garbage", code: null },
      { fault: "corrupt", code: null },
      { fault: "oversize", code: "SERIAL_FRAME_TOO_LARGE" },
      { fault: "bad-signature", code: "CSR_SIGNATURE_INVALID" },
      { fault: "forbidden-key", code: "KEY_TYPE_NOT_ALLOWED" },
      { fault: "reused-key", count: 2, code: "KEY_REUSED" },
      { fault: "disconnect", code: "SERIAL_TIMEOUT", stage: "identified" },
      { fault: "no-ack", code: "SERIAL_TIMEOUT", stage: "injecting" },
      { fault: "wrong-hash", code: "CONFIRMATION_MISMATCH" },
      { fault: "slow", code: "SERIAL_TIMEOUT", stage: "identified" },
    ];
    const ports = await Promise.all(cases.map((c) => pair(`f-${c.fault}`)));
    // Stopped with Ctrl-C once every device has finished (a count would also stop on stray restarts).
    const line = startLine(
      st,
      ports.map((p) => p.station),
    );
    const store = join(dir, "store-faults");
    const common = [
      "--baud",
      "921600",
      "--retry-ms",
      "300",
      "--answer-ms",
      "6000",
      "--root",
      chain.chain,
      "--store",
      store,
    ];
    await Promise.all(
      cases.map(async (c, i) => {
        const port = ports[i]!;
        const faulty = await runSim([
          "--port",
          port.device,
          "--device-id",
          `fault-${c.fault}`,
          "--fault",
          c.fault,
          "--count",
          String(c.count ?? 1),
          "--slow-ms",
          "8000",
          ...common,
        ]);
        // The next device on the same port is provisioned normally.
        const next = await runSim([
          "--port",
          port.device,
          "--device-id",
          `after-${c.fault}`,
          ...common,
        ]);
        expect(next.code, `${c.fault}: ${next.stderr} ${JSON.stringify(next.results)}`).toBe(0);
        return faulty;
      }),
    );
    line.proc.kill("SIGINT");
    const { code } = await line.exited;
    expect(code).toBe(1); // some devices failed
    const events = line.lines.all;
    const log = st.events().filter((e) => e.action === "line.session");
    for (const [i, c] of cases.entries()) {
      const port = ports[i]!.station;
      const failed = events.filter((e) => e.event === "device.failed" && e.port === port);
      const confirmed = events.filter((e) => e.event === "device.confirmed" && e.port === port);
      if (c.code === null) {
        expect(failed, c.fault).toEqual([]);
        expect(
          confirmed.map((e) => e.deviceId),
          c.fault,
        ).toEqual([`fault-${c.fault}`, `after-${c.fault}`]);
      } else {
        expect(
          failed.map((e) => e.code),
          c.fault,
        ).toEqual([c.code]);
        const f = failed[0]!;
        // Plain words for the operator: a sentence that says what to do, not a stack or a code alone.
        expect(String(f.message).length, c.fault).toBeGreaterThan(30);
        expect(f.message, c.fault).not.toMatch(/Error:|at .*\.js|undefined/);
        if (c.stage) expect(f.stage, c.fault).toBe(c.stage);
        expect(confirmed.at(-1)?.deviceId, c.fault).toBe(`after-${c.fault}`);
        const entry = log.find((e) => e.code === c.code && JSON.parse(e.details).port === port);
        expect(entry, c.fault).toBeDefined();
        expect(entry!.message).toBe(f.message);
      }
    }
    // What the faults left in the database.
    const rows = issuances(st);
    expect(rows.find((r) => r.deviceId === "fault-no-ack")!.state).toBe("DELIVERED");
    expect(rows.find((r) => r.deviceId === "fault-wrong-hash")!.state).toBe("DELIVERY_FAILED");
    expect(rows.find((r) => r.deviceId === "fault-corrupt")!.state).toBe("CONFIRMED");
    const reasons = rejections(st).map((r) => `${r.deviceId}:${r.reason}`);
    expect(reasons).toEqual(
      expect.arrayContaining([
        "fault-bad-signature:CSR_SIGNATURE_INVALID",
        "fault-forbidden-key:KEY_TYPE_NOT_ALLOWED",
        "fault-reused-key-0002:KEY_REUSED",
      ]),
    );
    // The corrupted frame was noticed and recovered from.
    const corrupt = log.find((e) => e.subject === "fault-corrupt")!;
    expect(JSON.parse(corrupt.details).badFrames).toBeGreaterThanOrEqual(1);
    expect(st.run(["audit", "verify", "--json"]).json.ok).toBe(true);
  }, 180_000);

  it("answers every IDENTIFY and records every refusal the protocol names, each port ready for the next device", async () => {
    setLineConfig(st, {
      timeouts: { retryMs: 300, retries: 3, helloMs: 200, csrMs: 3000, storedMs: 3000 },
    });
    const cases: {
      name: string;
      fault?: string;
      id?: string;
      code: string | null;
      deviceCode?: string;
      stage?: string;
    }[] = [
      { name: "version", fault: "version", code: "SERIAL_VERSION_UNSUPPORTED", stage: "idle" },
      {
        name: "no-id",
        fault: "identify-no-id",
        code: "DEVICE_ID_MISSING",
        deviceCode: "DEVICE_ID_MISSING",
      },
      { name: "twice", fault: "identify-twice", code: "SERIAL_PROTOCOL", deviceCode: "PROTOCOL" },
      {
        name: "empty-id",
        fault: "identify-empty-id",
        code: "DEVICE_ID_MISSING",
        deviceCode: "DEVICE_ID_MISSING",
      },
      { name: "lost-identify", fault: "lost-identify", code: null },
      // A CSR frame of exactly 16,384 bytes (padded with a field the station skips) is taken.
      { name: "frame-max", fault: "frame-max", code: null },
      {
        name: "frame-over",
        fault: "frame-over",
        code: "SERIAL_FRAME_TOO_LARGE",
        deviceCode: "FRAME_TOO_LARGE",
      },
      {
        name: "key-type",
        fault: "wrong-key-type",
        code: "KEY_TYPE_MISMATCH",
        deviceCode: "KEY_TYPE_MISMATCH",
      },
      {
        name: "bad-id",
        id: "bad id!",
        code: "DEVICE_ID_INVALID",
        deviceCode: "DEVICE_ID_INVALID",
        stage: "identified",
      },
    ];
    const ports = await Promise.all(cases.map((c) => pair(`r-${c.name}`)));
    const line = startLine(
      st,
      ports.map((p) => p.station),
    );
    // The devices wait long for the station: on a loaded machine nine signings can queue.
    const common = ["--baud", "921600", "--retry-ms", "300", "--answer-ms", "20000"];
    const common2 = ["--root", chain.chain, "--store", join(dir, "store-rules")];
    const results = await Promise.all(
      cases.map(async (c, i) => {
        const port = ports[i]!;
        const id = c.id ?? `rule-${c.name}`;
        const faulty = await runSim([
          "--port",
          port.device,
          "--device-id",
          id,
          ...(c.fault ? ["--fault", c.fault] : []),
          ...common,
          ...common2,
        ]);
        const next = await runSim([
          "--port",
          port.device,
          "--device-id",
          `after-${c.name}`,
          ...common,
          ...common2,
        ]);
        expect(next.code, `${c.name}: ${next.stderr} ${JSON.stringify(next.results)}`).toBe(0);
        return faulty;
      }),
    );
    line.proc.kill("SIGINT");
    expect((await line.exited).code).toBe(1);
    const events = line.lines.all;
    const log = st.events().filter((e) => e.action === "line.session");
    for (const [i, c] of cases.entries()) {
      const port = ports[i]!.station;
      const sim = results[i]!.results[0]!;
      const failed = events.filter((e) => e.event === "device.failed" && e.port === port);
      const confirmed = events.filter((e) => e.event === "device.confirmed" && e.port === port);
      expect(confirmed.at(-1)?.deviceId, c.name).toBe(`after-${c.name}`);
      if (c.code === null) {
        expect(sim.ok, `${c.name}: ${JSON.stringify(sim)}`).toBe(true);
        expect(failed, c.name).toEqual([]);
        continue;
      }
      expect(sim.ok, c.name).toBe(false);
      // What the device was told, when the station tells it.
      if (c.deviceCode) expect(sim.code, c.name).toBe(c.deviceCode);
      expect(
        failed.map((e) => e.code),
        c.name,
      ).toEqual([c.code]);
      if (c.stage) expect(failed[0]!.stage, c.name).toBe(c.stage);
      const entry = log.filter((e) => e.code === c.code && JSON.parse(e.details).port === port);
      expect(entry, c.name).toHaveLength(1);
      expect(entry[0]!.message, c.name).toBe(failed[0]!.message);
      expect(String(failed[0]!.message).length, c.name).toBeGreaterThan(30);
    }
    // The summary counts them as devices that failed.
    const summary = events.find((e) => e.event === "summary")!;
    expect((summary.byCode as Record<string, number>).SERIAL_VERSION_UNSUPPORTED).toBe(1);
    // A device with an id the profile refuses is never asked to make a key.
    expect(events.some((e) => e.event === "device.csr-requested" && e.deviceId === "bad id!")).toBe(
      false,
    );
    // The request for another key type than asked for is refused and recorded; nothing is issued.
    const rows = issuances(st);
    expect(rows.some((r) => r.deviceId === "rule-key-type")).toBe(false);
    expect(rejections(st).map((r) => `${r.deviceId}:${r.reason}`)).toContain(
      "rule-key-type:KEY_TYPE_MISMATCH",
    );
    // The device that lost its IDENTIFY on the line identified again and got through.
    expect(rows.find((r) => r.deviceId === "rule-lost-identify")!.state).toBe("CONFIRMED");
    // Both sides of the frame limit over a pty: 16,384 bytes taken, 16,385 refused.
    const at = (name: string) => results[cases.findIndex((c) => c.name === name)]!.results[0]!;
    expect(at("frame-max").txBytes).toBeGreaterThan(16_384);
    expect(rows.find((r) => r.deviceId === "rule-frame-max")!.state).toBe("CONFIRMED");
    expect(rows.some((r) => r.deviceId === "rule-frame-over")).toBe(false);
    expect(st.run(["audit", "verify", "--json"]).json.ok).toBe(true);
  }, 180_000);

  it("aborts the exchange when the port disappears, and re-arms when it returns", async () => {
    const a = await ptyPair(dir, "unplug");
    const line = startLine(st, [a.station]);
    const common = [
      "--baud",
      "921600",
      "--root",
      chain.chain,
      "--store",
      join(dir, "store-unplug"),
    ];
    const stuck = startSim([
      "--port",
      a.device,
      "--device-id",
      "unplugged",
      "--fault",
      "slow",
      "--slow-ms",
      "60000",
      ...common,
    ]);
    await line.lines.waitFor((e) => e.event === "device.csr-requested", "the request");
    await a.kill(); // the cable is pulled
    const failed = await line.lines.waitFor((e) => e.event === "device.failed", "the abort");
    expect(failed).toMatchObject({
      code: "SERIAL_PORT_LOST",
      deviceId: "unplugged",
      stage: "identified",
    });
    await line.lines.waitFor((e) => e.event === "port.lost", "port.lost");
    stuck.proc.kill("SIGKILL");
    const back = await ptyPair(dir, "unplug"); // the same names come back
    pairs.push(back);
    const opens = () => line.lines.all.filter((e) => e.event === "port.open").length;
    await line.lines.waitFor(() => opens() === 2, "the port re-armed");
    const next = await runSim(["--port", back.device, "--device-id", "replugged", ...common]);
    expect(next.code, next.stderr).toBe(0);
    line.proc.kill("SIGINT");
    expect((await line.exited).code).toBe(1);
    expect(line.lines.all.find((e) => e.event === "summary")).toMatchObject({
      confirmed: 1,
      failed: 1,
    });
    const lost = st
      .events()
      .find((e) => e.action === "line.session" && e.code === "SERIAL_PORT_LOST");
    expect(lost?.subject).toBe("unplugged");
  });

  it("on Ctrl-C takes no new device, finishes the one in flight, and prints a summary", async () => {
    setLineConfig(st, {
      timeouts: { retryMs: 150, retries: 3, helloMs: 200, csrMs: 5000, storedMs: 5000 },
    });
    const a = await pair("sigint");
    const line = startLine(st, [a.station]);
    // The device takes a while to make its request: Ctrl-C arrives while it is in flight.
    const sim = startSim([
      "--port",
      a.device,
      "--device-id",
      "inflight",
      "--count",
      "2",
      "--fault",
      "slow",
      "--slow-ms",
      "700",
      "--answer-ms",
      "20000",
      "--baud",
      "921600",
      "--root",
      chain.chain,
      "--store",
      join(dir, "store-sigint"),
    ]);
    await line.lines.waitFor((e) => e.event === "device.csr-requested", "the request");
    line.proc.kill("SIGINT");
    const { code } = await line.exited;
    expect(code, line.stderr()).toBe(0);
    expect(line.lines.all.find((e) => e.event === "device.confirmed")).toMatchObject({
      deviceId: "inflight-0001",
    });
    expect(line.lines.all.find((e) => e.event === "summary")).toMatchObject({
      devices: 1,
      confirmed: 1,
      failed: 0,
    });
    // The second device was never taken: it is still waiting for a greeting.
    expect(sim.proc.exitCode).toBeNull();
    sim.proc.kill("SIGKILL");
    expect(line.lines.all.filter((e) => e.event === "device.identified")).toHaveLength(1);
    expect(issuances(st).some((r) => r.deviceId === "inflight-0002")).toBe(false);
  });

  it("provisions against the named work order and refuses devices beyond its quantity", async () => {
    const created = st.run([
      "work-order",
      "create",
      "--id",
      "lot-7",
      "--profile",
      "default",
      "--quantity",
      "2",
      "--pattern",
      "lot7-.*",
      "--json",
    ]);
    expect(created.code, created.stdout).toBe(0);
    const a = await pair("wo");
    // Two work orders are open now: the line must be told which.
    const ambiguous = st.run(["line", "run", "--port", a.station, "--json"]);
    expect(ambiguous.json.error).toMatchObject({ code: "WORK_ORDER_REQUIRED" });
    const line = startLine(st, [a.station], ["--work-order", "lot-7", "--count", "3"]);
    const sim = await runSim([
      "--port",
      a.device,
      "--device-id",
      "lot7",
      "--count",
      "3",
      "--baud",
      "921600",
      "--root",
      chain.chain,
      "--store",
      join(dir, "store-wo"),
    ]);
    expect(sim.results.map((r) => r.ok)).toEqual([true, true, false]);
    await line.exited;
    const failed = line.lines.all.find((e) => e.event === "device.failed")!;
    expect(failed).toMatchObject({ code: "WORK_ORDER_EXHAUSTED", deviceId: "lot7-0003" });
    expect(String(failed.message)).toContain("open a new work order");
    expect(issuances(st).filter((r) => r.deviceId.startsWith("lot7-"))).toHaveLength(2);
    expect(st.run(["work-order", "close", "--id", "lot-7"]).code).toBe(0);
  });

  it("says clearly that port discovery is unavailable, and how to name ports", () => {
    const r = st.run(["line", "ports", "--json"]);
    if (r.json.ok) {
      expect(Array.isArray(r.json.ports)).toBe(true);
    } else {
      expect(r.code).toBe(1);
      expect(r.json.error).toMatchObject({ code: "PORT_DISCOVERY_UNAVAILABLE" });
      expect(r.json.error!.message).toContain("--port");
    }
  });

  it("refuses a line without ports, and a missing port is waited for with its name", async () => {
    const r = st.run(["line", "run", "--json"]);
    expect(r.code).toBe(2);
    expect(r.json.error!.message).toContain("--port");
    const missing = join(dir, "no-such-port");
    const line = startLine(st, [missing], ["--count", "1"]);
    const w = await line.lines.waitFor((e) => e.event === "port.waiting", "port.waiting");
    expect(w).toMatchObject({ code: "SERIAL_PORT_NOT_FOUND" });
    expect(String(w.message)).toContain(missing);
    line.proc.kill("SIGINT");
    const { code } = await line.exited;
    expect(code).toBe(0);
    expect(line.lines.all.find((e) => e.event === "summary")).toMatchObject({ devices: 0 });
  });
});
