/** A development station in a temporary home, on its own SoftHSM token store. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { cleanEnv, linesign, openssl, type CliResult } from "./cli.js";
import { tempSoftHsm, type TempHsm } from "./softhsm.js";

export interface TestStation {
  home: string;
  hsm: TempHsm;
  env: NodeJS.ProcessEnv;
  run(args: string[], extraEnv?: Record<string, string | undefined>): CliResult;
  /** Event rows as stored. */
  events(): {
    seq: number;
    actor: string;
    action: string;
    subject: string | null;
    outcome: string;
    code: string | null;
    message: string | null;
    details: string;
  }[];
  file(name: string, content: string): string;
}

/** Creates the station with `linesign init --dev` (throws if that fails). */
export function devStation(): TestStation {
  const station = emptyStation();
  const r = station.run(["init", "--dev", "--json"]);
  if (r.code !== 0) throw new Error(`init --dev failed: ${r.stdout}${r.stderr}`);
  return station;
}

/** A temporary home and SoftHSM token store with nothing made in them yet. */
export function emptyStation(): TestStation {
  const hsm = tempSoftHsm();
  const home = mkdtempSync(join(tmpdir(), "linesign-home-"));
  const env = cleanEnv({ SOFTHSM2_CONF: hsm.conf, LINESIGN_HOME: home });
  const station: TestStation = {
    home,
    hsm,
    env,
    run: (args, extraEnv = {}) => linesign(args, { ...env, ...extraEnv }),
    events: () => {
      const db = new Database(join(home, "station.db"), { readonly: true });
      try {
        return db
          .prepare(
            "SELECT seq, actor, action, subject, outcome, code, message, details FROM events ORDER BY seq",
          )
          .all() as ReturnType<TestStation["events"]>;
      } finally {
        db.close();
      }
    },
    file: (name, content) => {
      const p = join(hsm.dir, name);
      writeFileSync(p, content);
      return p;
    },
  };
  return station;
}

/** A software root made with openssl, standing in for an offline root elsewhere. */
export function makeOpensslRoot(st: TestStation, cn: string): { cert: string; key: string } {
  const key = join(st.hsm.dir, `${cn}.key`);
  const cert = join(st.hsm.dir, `${cn}.pem`);
  const r = openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "365",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  if (r.code !== 0) throw new Error(r.out);
  return { cert, key };
}
