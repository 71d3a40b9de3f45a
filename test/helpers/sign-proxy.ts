/**
 * A token that answers C_Sign wrongly: sign-proxy.c, compiled here with the
 * system's cc into a temporary folder, loads SoftHSM2's module, forwards every
 * call and alters C_Sign's output as its mode file says at the moment of the call.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SOFTHSM_MODULE } from "./softhsm.js";

/** What the proxy does to C_Sign's answer: see sign-proxy.c. */
export type SignAnswer =
  "pass" | "truncate" | "empty" | "der" | `hold ${string} ${string}` | `sessions ${number}`;

export interface SignProxy {
  /** The proxy module's path: point the station's pkcs11.module (LINESIGN_PKCS11_MODULE) at it. */
  module: string;
  /** Sets how the next C_Sign calls answer. */
  answer(mode: SignAnswer): void;
  /** Resolves when a signature held by `hold FIRST THEN` waits (the real module has signed). */
  held(): Promise<void>;
  /** Lets the held signature return. */
  release(): Promise<void>;
}

/** PKCS#11 headers (Debian libp11-kit-dev). */
const HEADERS = "/usr/include/p11-kit-1/p11-kit";

/** Builds the proxy over SoftHSM2 (throws with cc's output if it does not compile). */
export function buildSignProxy(): SignProxy {
  const dir = mkdtempSync(join(tmpdir(), "linesign-sign-proxy-"));
  const modeFile = join(dir, "mode");
  const module = join(dir, "libsign-proxy.so");
  writeFileSync(modeFile, "pass\n");
  const source = fileURLToPath(new URL("./sign-proxy.c", import.meta.url));
  const r = spawnSync(
    "cc",
    [
      "-shared",
      "-fPIC",
      "-O1",
      "-Wall",
      "-Werror",
      `-I${HEADERS}`,
      `-DREAL_MODULE=${JSON.stringify(SOFTHSM_MODULE)}`,
      `-DMODE_FILE=${JSON.stringify(modeFile)}`,
      "-o",
      module,
      source,
      "-ldl",
    ],
    { encoding: "utf8" },
  );
  if (r.error) throw new Error(`cc could not run: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(
      `the signing proxy did not compile (headers from libp11-kit-dev; run .ci/setup): ${r.stderr}`,
    );
  for (const fifo of [`${modeFile}.held`, `${modeFile}.release`]) {
    const m = spawnSync("mkfifo", [fifo], { encoding: "utf8" });
    if (m.status !== 0) throw new Error(`mkfifo ${fifo} failed: ${m.stderr}`);
  }
  return {
    module,
    answer: (mode) => writeFileSync(modeFile, `${mode}\n`),
    // Each blocks in its open() until the module opens the other end.
    held: async () => void (await readFile(`${modeFile}.held`)),
    release: () => writeFile(`${modeFile}.release`, "go\n"),
  };
}
