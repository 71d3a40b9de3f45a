/** An in-process development station on its own SoftHSM token store, for engine tests. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initStation, openStation, type Station, type StationOptions } from "../../src/compose.js";
import type { IssuanceHooks } from "../../src/app/issuance.js";
import type { ProfileInput } from "../../src/domain/profile.js";
import { tempSoftHsm, type TempHsm } from "./softhsm.js";
import { expectCanonicalCertificate } from "./der.js";

export interface EngineStation {
  home: string;
  hsm: TempHsm;
  /** Opens the station; as a test officer's process session unless `extra` says otherwise. */
  open(hooks?: IssuanceHooks, extra?: Partial<StationOptions>): Station;
}

/** Makes a development station (init --dev) and adds `profiles` to its config. */
export async function engineStation(
  profiles: Record<string, ProfileInput> = {},
): Promise<EngineStation> {
  const hsm = tempSoftHsm();
  process.env.SOFTHSM2_CONF = hsm.conf; // read by SoftHSM when the module initialises in this process
  const home = mkdtempSync(join(tmpdir(), "linesign-engine-"));
  await initStation({ home, dev: true, env: process.env });
  const path = join(home, "station.json");
  const cfg = JSON.parse(readFileSync(path, "utf8")) as { profiles: Record<string, unknown> };
  cfg.profiles = { ...cfg.profiles, ...profiles };
  writeFileSync(path, JSON.stringify(cfg, null, 2));
  return {
    home,
    hsm,
    open: (hooks, extra) =>
      openStation({
        home,
        env: process.env,
        // Every certificate an engine test issues is checked to be canonical DER before it is recorded.
        hooks: {
          ...hooks,
          beforeCommit: (der) => {
            expectCanonicalCertificate(der);
            hooks?.beforeCommit?.(der);
          },
        },
        officer: "test-officer",
        ...extra,
      }),
  };
}
