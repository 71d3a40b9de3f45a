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

/**
 * A software root made with openssl, standing in for an offline root elsewhere; `extra` are
 * more `-addext` values (a root that names its key oddly, for instance).
 */
export function makeOpensslRoot(
  st: TestStation,
  cn: string,
  extra: string[] = [],
): { cert: string; key: string } {
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
    ...extra.flatMap((e) => ["-addext", e]),
  ]);
  if (r.code !== 0) throw new Error(r.out);
  return { cert, key };
}

/**
 * Signs a pending CA's request `csr` with an openssl `root` (as an offline root's ceremony
 * would), with the extensions `exts` and the `digest` option; the certificate's path.
 */
export function signWithOpensslRoot(
  st: TestStation,
  csr: string,
  root: { cert: string; key: string },
  name: string,
  exts: string,
  digest = "-sha256",
): string {
  const extFile = st.file(`${name}.ext`, exts);
  const out = join(st.hsm.dir, `${name}.pem`);
  const r = openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    root.cert,
    "-CAkey",
    root.key,
    "-CAcreateserial",
    "-days",
    "100",
    digest,
    "-extfile",
    extFile,
    "-out",
    out,
  ]);
  if (r.code !== 0) throw new Error(r.out);
  return out;
}
