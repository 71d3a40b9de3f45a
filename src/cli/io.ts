/**
 * What every command group shares: the terminal or test I/O, and the helpers
 * `run` builds once per invocation (a station opened for the caller's role,
 * secrets from the environment or a prompt, one output line per result).
 */
import { readFileBounded, READ_LIMITS } from "../compose-files.js";
import type { Station } from "../compose.js";
import { LinesignError } from "../domain/errors.js";
import { cut, wellFormed } from "../domain/text.js";

/**
 * Loads a module that wires the station's drivers (PKCS#11, SQLite) when a command first needs
 * it, not at start-up. A driver that does not load here (an online machine that has none, or
 * drivers built for another Node) is a refusal saying so, not an unexpected error.
 */
export async function withDrivers<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (cause) {
    const why = wellFormed(cut(cause instanceof Error ? cause.message : String(cause), 400));
    throw new LinesignError(
      "DRIVERS_UNAVAILABLE",
      `The station's drivers (PKCS#11, SQLite) do not load on this machine: ${why}. An online machine runs only "linesign upload" and "linesign uploader init"; for the station, install again with "npm ci && npm run build" under the Node that runs linesign.`,
      { cause },
    );
  }
}

/** The station's wiring (src/compose.ts), loaded when a command opens or makes a station. */
export const loadStation = () => withDrivers(() => import("../compose.js"));

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** True when a person can be asked for a PIN. */
  interactive: boolean;
  /** True when stdout is a terminal (live progress is redrawn in place). */
  terminal?: boolean;
}

/** The process's own stdout, stderr and environment. */
export const defaultIo = (): CliIo => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
  terminal: Boolean(process.stdout.isTTY),
});

/** Handed by `run` to each command group's register function. */
export interface CommandDeps {
  io: CliIo;
  /** Whether --json was given (read when the action runs). */
  json: () => boolean;
  /** The --home option, if given. */
  home: () => string | undefined;
  /** Asks on the terminal without echo; undefined when no person can be asked. */
  prompt: ((question: string) => Promise<string>) | undefined;
  /**
   * Opens the station (the --home one, or `at.home`), signs the caller in for
   * the command's role rule, closes it after `fn`.
   */
  withStation: <T>(
    fn: (s: Station) => Promise<T>,
    at?: { home: string; headFile?: string },
  ) => Promise<T>;
  /** One JSON object with --json, else the text. */
  emit: (value: Record<string, unknown>, text: string) => void;
  /** A secret from the environment variable, else asked; throws HSM_PIN_REQUIRED/AUTH_REQUIRED. */
  secret: (variable: string, question: string) => Promise<string>;
  setExitCode: (code: number) => void;
}

/**
 * Reads a file named on the command line, at most `limit` bytes (default
 * 1 MiB; an endless input such as /dev/zero is refused after it).
 * @throws LinesignError FILE_READ_FAILED naming the file
 */
export function readInput(
  path: string,
  what: string,
  limit: number = READ_LIMITS.certificate,
): Uint8Array {
  return readFileBounded(path, what, limit);
}
