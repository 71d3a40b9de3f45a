/** A real SoftHSM2 token store in a temporary folder, selected by SOFTHSM2_CONF. */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LoginGuard } from "../../src/domain/ports.js";

export const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

export interface TempHsm {
  dir: string;
  conf: string;
}

/** Creates an empty token folder and a softhsm2.conf pointing at it. */
export function tempSoftHsm(prefix = "linesign-hsm-"): TempHsm {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, "tokens"));
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(
    conf,
    `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  return { dir, conf };
}

/**
 * Destroys the station's data objects on every token of the store (the log
 * head), as a fault injected through the token itself: a child process logs in
 * with the user PIN (given on its standard input, never its command line) and
 * destroys each CKO_DATA object whose CKA_APPLICATION is "linesign".
 * @returns how many objects it destroyed
 */
export function destroyStationData(hsm: TempHsm, pin: string): number {
  const script = `
    const pkcs11js = require("pkcs11js");
    const pin = require("node:fs").readFileSync(0, "utf8").trim();
    const lib = new pkcs11js.PKCS11();
    lib.load(${JSON.stringify(SOFTHSM_MODULE)});
    lib.C_Initialize();
    let n = 0;
    for (const slot of lib.C_GetSlotList(true)) {
      if (!(lib.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED)) continue;
      const s = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      lib.C_Login(s, pkcs11js.CKU_USER, pin);
      lib.C_FindObjectsInit(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: "linesign" },
      ]);
      const found = lib.C_FindObjects(s, 64);
      lib.C_FindObjectsFinal(s);
      for (const h of found) { lib.C_DestroyObject(s, h); n++; }
      lib.C_Logout(s);
      lib.C_CloseSession(s);
    }
    lib.C_Finalize();
    process.stdout.write(String(n));
  `;
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: { PATH: process.env.PATH, SOFTHSM2_CONF: hsm.conf },
    input: pin,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`destroying the token's data objects failed: ${r.stderr}`);
  return Number(r.stdout);
}

/** A key store's login guard that lets every login through and counts the user PINs presented. */
export function countingPins(): { guard: LoginGuard; readonly pins: number } {
  let pins = 0;
  return {
    guard: {
      beforeLogin: () => {},
      present: (_token, who, attempt) => {
        if (who === "user") pins++;
        return attempt();
      },
    },
    get pins() {
      return pins;
    },
  };
}
