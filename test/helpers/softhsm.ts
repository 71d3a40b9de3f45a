/** A real SoftHSM2 token store in a temporary folder, selected by SOFTHSM2_CONF. */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
