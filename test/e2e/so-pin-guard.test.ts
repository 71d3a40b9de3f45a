/**
 * The station's limit on SO PINs, through the CLI on a real SoftHSM token
 * (which never locks its SO PIN itself): after pkcs11.maxSoPinAttempts wrong
 * SO PINs, by any command that presents one, the station presents none, not
 * even the right one, until an officer lifts the stop (recorded).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";

const SO_PIN = "13572468";
let s: TestStation;

beforeAll(() => {
  s = devStation();
}, 120_000);

describe("the SO PIN guard", () => {
  it("stops presenting SO PINs after three wrong ones, before the token would, until an officer lifts it", () => {
    const wrong = { LINESIGN_SO_PIN: "99999999" };
    const a = s.run(["token", "unlock", "--json"], wrong);
    expect(a.json.error!.code).toBe("HSM_PIN_INCORRECT");
    // Changing the SO PIN presents it too, and counts.
    const b = s.run(["token", "pin", "--so", "--json"], {
      ...wrong,
      LINESIGN_NEW_SO_PIN: "24682468",
    });
    expect(b.json.error!.code).toBe("HSM_PIN_INCORRECT");
    const c = s.run(["token", "unlock", "--json"], wrong);
    expect(c.json.error!.code).toBe("HSM_PIN_INCORRECT");
    expect(s.events().filter((e) => e.action === "token.so-pin-locked")).toHaveLength(1);

    // Now not even the right SO PIN reaches the token.
    const right = { LINESIGN_SO_PIN: SO_PIN };
    const refused = s.run(["token", "unlock", "--json"], right);
    expect(refused.code).toBe(1);
    expect(refused.json.error!.code).toBe("HSM_PIN_LOCKED");
    expect(refused.json.error!.message).toContain("stopped presenting SO PINs");
    expect(refused.json.error!.message).toContain("--clear-so-guard");
    // The user PIN is guarded apart: signing goes on.
    expect(s.run(["audit", "verify", "--json"]).code).toBe(0);

    const lift = s.run(["token", "unlock", "--clear-so-guard", "--json"]);
    expect(lift.code, lift.stdout).toBe(0);
    expect(lift.json.cleared).toEqual({ failures: 3 });
    expect(s.events().at(-1)).toMatchObject({ action: "token.so-guard-clear", outcome: "ok" });
    const ok = s.run(["token", "unlock", "--json"], right);
    expect(ok.code, ok.stdout).toBe(0);
    // Nothing left to lift.
    expect(s.run(["token", "unlock", "--clear-so-guard", "--json"]).json.error!.code).toBe("USAGE");
  }, 180_000);
});
