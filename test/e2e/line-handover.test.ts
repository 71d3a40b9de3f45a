/**
 * A device that goes away after its certificate's commit recorded the hand-over,
 * before CERTIFICATE went out: the head write of that commit is held at the
 * token (a PKCS#11 proxy over SoftHSM2 holds the audit key's signature of the
 * signed head, on libuv's thread, so the station's event loop runs on and sees
 * the cable pulled), then let go. The certificate never left: it must not stay
 * DELIVERED (uploadable, listed as handed over), and the log says why.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { emptyStation, type TestStation } from "../helpers/station.js";
import { ptyPair, startLine, startSim, type Proc, type PtyPair } from "../helpers/serial.js";
import { buildSignProxy } from "../helpers/sign-proxy.js";
import { stationRows } from "../helpers/db-rows.js";

const procs: Proc[] = [];
const pairs: PtyPair[] = [];

afterAll(async () => {
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
  await Promise.all(pairs.map((p) => p.kill().catch(() => undefined)));
});

const rows = <T>(st: TestStation, sql: string): T[] => stationRows<T>(st.home, sql);

describe("a device gone between its certificate's commit and CERTIFICATE", () => {
  it("leaves the certificate not handed over (ISSUED), with the taking back in the log", async () => {
    const proxy = buildSignProxy();
    const base = emptyStation();
    const st: TestStation = {
      ...base,
      env: { ...base.env, LINESIGN_PKCS11_MODULE: proxy.module },
      run: (args, extra = {}) => base.run(args, { LINESIGN_PKCS11_MODULE: proxy.module, ...extra }),
    };
    // Every head move signs the head with the audit key: the moment to hold.
    const init = st.run(["init", "--dev", "--head-store", "signed-head", "--json"]);
    expect(init.code, init.stdout + init.stderr).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "linesign-handover-"));
    const pair = await ptyPair(dir, "h0");
    pairs.push(pair);
    const line = startLine(st, [pair.station]);
    procs.push(line);
    await line.lines.waitFor((e) => e.event === "port.open", "the port open");
    // The audit key's first signature after the CA's: the head of the certificate's commit.
    proxy.answer("hold dev-ica linesign-audit");
    const sim = startSim(["--port", pair.device, "--device-id", "gone-1", "--count", "1"]);
    procs.push(sim);
    // The certificate is signed and committed; the commit's head is being written.
    await proxy.held();
    proxy.answer("pass");
    await pair.kill();
    await line.lines.waitFor(
      (e) => e.event === "device.failed" && e.code === "SERIAL_PORT_LOST",
      "the port lost",
    );
    await proxy.release();
    await line.lines.waitFor((e) => e.event === "port.lost", "the port waiting to return");
    line.proc.kill("SIGINT");
    await line.exited;
    expect(line.lines.all.find((e) => e.event === "summary")).toMatchObject({ confirmed: 0 });
    expect(line.stderr()).not.toMatch(/INTERNAL/);
    // Nothing went out after the commit: no CERTIFICATE to a device that was not there.
    expect(line.lines.all.filter((e) => e.event === "device.injecting")).toEqual([]);
    const [rec] = rows<{ id: number; state: string }>(
      st,
      "SELECT id, state FROM issuances WHERE device_id = 'gone-1'",
    );
    expect(rec?.state).toBe("ISSUED");
    const entries = rows<{ action: string; details: string }>(
      st,
      "SELECT action, details FROM events ORDER BY seq",
    )
      .map((e) => ({ action: e.action, details: JSON.parse(e.details) as Record<string, unknown> }))
      .filter((e) => e.details.issuance === rec!.id);
    expect(entries.map((e) => [e.action, e.details.to ?? null])).toEqual([
      ["issuance.issue", null],
      ["issuance.deliver", "DELIVERED"],
      ["issuance.withhold", "ISSUED"],
    ]);
    expect(String(entries[2]!.details.reason)).toMatch(/went away before its certificate was sent/);
  });
});
