import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { refusalCode as code } from "../../helpers/refusal.js";
import type { Station } from "../../../src/compose.js";
import type { SigningSessionView } from "../../../src/app/signing-session.js";
import { engineStation, type EngineStation } from "../../helpers/engine.js";

const PIN = "246810"; // the development token's user PIN (README)
const officer = { name: "dev-officer", role: "officer" as const };
const csr = (id: string) => makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", id]] });

describe("signing sessions (station service)", () => {
  let es: EngineStation;
  let s: Station;
  beforeAll(async () => {
    es = await engineStation();
    // A short idle timeout so the test sees one end.
    const path = join(es.home, "station.json");
    const cfg = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    cfg.sessions = { signingIdleSeconds: 1, loginIdleSeconds: 60 };
    writeFileSync(path, JSON.stringify(cfg));
    s = es.open(undefined, { mode: "service", officer: undefined });
  });
  afterAll(async () => {
    await s.close();
  });

  it("refuses to issue outside a session, and records the refusal", async () => {
    expect(s.signing.view()).toMatchObject({ open: false, officer: null });
    expect(await code(s.issuance.issue({ csr: csr("no-session-1"), origin: "t" }))).toBe(
      "SIGNING_SESSION_REQUIRED",
    );
    const rej = s.ctx.store.queryRejections({}).at(-1);
    expect(rej).toMatchObject({ reason: "SIGNING_SESSION_REQUIRED", deviceId: "no-session-1" });
    // Nor can the line start.
    expect(() => s.line({ ports: ["/dev/null"] })).toThrow(/No signing session is open/);
  });

  it("only an officer opens one, and a wrong PIN is refused and counted", async () => {
    const before = s.ctx.store.head()!.seq;
    expect(await code(s.signing.open({ name: "op", role: "operator" }, PIN))).toBe(
      "ROLE_FORBIDDEN",
    );
    const wrong = await s.signing.open(officer, "918273").catch((e: Error) => e);
    expect(wrong).toMatchObject({ code: "HSM_PIN_INCORRECT" });
    // The refusal names the token, never the PIN tried.
    expect((wrong as Error).message).not.toContain("918273");
    expect(JSON.stringify(s.ctx.store.queryEvents({}))).not.toContain("918273");
    expect(s.signing.view().open).toBe(false);
    expect(s.ctx.store.pinGuard(s.ctx.tokenLabel).failures).toBe(1);
    const events = s.ctx.store
      .queryEvents({ action: "signing.open" })
      .filter((e) => e.seq > before);
    expect(events.map((e) => [e.outcome, e.code])).toEqual([
      ["refused", "ROLE_FORBIDDEN"],
      ["refused", "HSM_PIN_INCORRECT"],
    ]);
  });

  it("issues inside a session; a second one is refused; logout ends it and logs the token out", async () => {
    const view = await s.signing.open(officer, PIN);
    expect(view).toMatchObject({ open: true, officer: "dev-officer", kind: "kiosk" });
    expect(s.ctx.store.pinGuard(s.ctx.tokenLabel).failures).toBe(0);
    expect(await code(s.signing.open(officer, PIN))).toBe("SIGNING_SESSION_OPEN");
    const issued = await s.asActor("op-anna", () =>
      s.issuance.issue({ csr: csr("in-session-1"), origin: "t" }),
    );
    expect(issued.issuance.operator).toBe("op-anna");
    expect(s.signing.view().uses).toBe(1);
    await s.signing.loggedOut("someone-else");
    expect(s.signing.view().open).toBe(true);
    await s.signing.loggedOut("dev-officer");
    expect(s.signing.view().open).toBe(false);
    const close = s.ctx.store.queryEvents({ action: "signing.close" }).at(-1);
    expect(close).toMatchObject({ actor: "dev-officer", details: { reason: "logout", uses: 1 } });
    // The session's end checkpointed the log while the token was still logged in.
    const cp = s.ctx.store.checkpoints().at(-1)!;
    expect(cp.seq).toBe(close!.seq);
    // The PIN is gone with the session: the token is logged out and signing is refused again.
    expect(await code(s.issuance.issue({ csr: csr("after-logout"), origin: "t" }))).toBe(
      "SIGNING_SESSION_REQUIRED",
    );
  });

  it("ends after the idle timeout with neither signing nor officer activity", async () => {
    const ended = new Promise<SigningSessionView>((resolve) =>
      s.signing.onChange((v) => {
        if (!v.open) resolve(v);
      }),
    );
    await s.signing.open(officer, PIN);
    // The idle clock starts at the issuance's use of the session, which is after this moment
    // (and before the call returns, however long its commit takes on a loaded machine).
    const startedWaiting = Date.now();
    // A signer handed out in the earlier session logs in again with this session's PIN.
    await s.issuance.issue({ csr: csr("in-session-2"), origin: "t" });
    await ended;
    expect(Date.now() - startedWaiting).toBeGreaterThanOrEqual(900);
    expect(s.ctx.store.queryEvents({ action: "signing.close" }).at(-1)).toMatchObject({
      details: { reason: "idle", uses: 1 },
    });
    expect(await code(s.issuance.issue({ csr: csr("after-idle"), origin: "t" }))).toBe(
      "SIGNING_SESSION_REQUIRED",
    );
  });
});
