/** Runs the built `linesign` command as a separate process, as a person or script would. */
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../bin/linesign.js", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is one JSON object. */
  json: Record<string, unknown> & { ok?: boolean; error?: { code: string; message: string } };
}

/** Environment for CLI runs: the test's own, minus anything Linesign reads unless given. */
export function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("LINESIGN_") && k !== "SOFTHSM2_CONF") env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export function linesign(args: string[], env: NodeJS.ProcessEnv, input?: string): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env,
    encoding: "utf8",
    input: input ?? "",
    timeout: 120_000,
  });
  let json: CliResult["json"] = {};
  try {
    json = JSON.parse(r.stdout) as CliResult["json"];
  } catch {
    // not JSON output
  }
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

/** Runs openssl with arguments; returns exit code and combined output. */
export function openssl(args: string[]): { code: number; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { code: r.status ?? -1, out: (r.stdout ?? "") + (r.stderr ?? "") };
}

/**
 * The same as `linesign`, without blocking this process: needed when the
 * command talks to a server running in the test process (the AWS emulator).
 */
export function linesignAsync(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("close", (code) => {
      let json: CliResult["json"] = {};
      try {
        json = JSON.parse(stdout) as CliResult["json"];
      } catch {
        // not one JSON object
      }
      resolve({ code: code ?? -1, stdout, stderr, json });
    });
  });
}

/**
 * Runs `linesign` on a terminal of its own (a pseudo-terminal made by
 * util-linux `script`), as a person at the station would: when `question`
 * appears, runs `beforeAnswer`, then types `answer` and Enter. Resolves with
 * the exit code and everything the terminal showed (stdout and stderr together).
 */
export function linesignOnTerminal(
  args: string[],
  env: NodeJS.ProcessEnv,
  question: string,
  answer: string,
  beforeAnswer: () => void,
): Promise<{ code: number; screen: string }> {
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`);
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qfec", quoted.join(" "), "/dev/null"], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let screen = "";
    let answered = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      screen += d;
      if (!answered && screen.includes(question)) {
        answered = true;
        try {
          beforeAnswer();
        } catch (e) {
          child.kill();
          reject(e as Error);
          return;
        }
        child.stdin.write(`${answer}\r`);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (screen += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, screen }));
  });
}
