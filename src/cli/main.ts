/**
 * The `linesign` command. Exit codes: 0 done; 1 refused or failed (the message
 * says why and what to do); 2 usage error. With --json, stdout carries exactly
 * one JSON object per command ({ ok: true, ... } or { ok: false, error }).
 * PINs are never options: they come from the environment or a terminal prompt.
 * Each command group lives in its own file and registers itself here.
 */
import { Command, CommanderError } from "commander";
import { COMMAND_ROLES } from "../domain/roles.js";
import { LinesignError, toLinesignError } from "../domain/errors.js";
import type { Station } from "../compose.js";
import { promptSecret } from "./prompt.js";
import { registerBenchCommand } from "./bench-command.js";
import { registerLineCommands } from "./line.js";
import { registerServeCommand } from "./serve.js";
import { registerKioskCommand } from "./kiosk.js";
import { registerSyncCommands } from "./sync.js";
import { registerOnlineCommands } from "./online.js";
import { registerStationCommands } from "./station.js";
import { registerCaCommands } from "./ca.js";
import { registerTokenCommands } from "./token.js";
import { registerIssueCommand } from "./issue.js";
import { registerAuditCommands } from "./audit.js";
import { registerUserCommands } from "./users.js";
import { registerWorkOrderCommands } from "./work-order.js";
import { registerRevocationCommands } from "./revocation.js";
import { registerProfileCommands } from "./profile.js";
import { registerBackupCommands } from "./backup.js";
import { writeOutput } from "./output.js";
import { defaultIo, loadStation, type CliIo, type CommandDeps } from "./io.js";

export type { CliIo } from "./io.js";

interface GlobalOpts {
  home?: string;
  json?: boolean;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function run(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  let exitCode = 0;
  let json = argv.includes("--json");

  const program = new Command("linesign")
    .description("HSM-backed offline signing station for factory lines")
    .option("--home <dir>", "station home folder (default: $LINESIGN_HOME or ~/.linesign)")
    .option("--json", "machine-readable output: one JSON object on stdout")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError(false);

  const globals = (): GlobalOpts => program.opts<GlobalOpts>();
  const prompt = io.interactive ? (q: string) => promptSecret(q) : undefined;

  // The command being run ("ca create"), for its role rule.
  let commandPath = "";
  program.hook("preAction", (_root, action) => {
    const names: string[] = [];
    for (let c: Command | null = action; c && c.parent; c = c.parent) names.unshift(c.name());
    commandPath = names.join(" ");
    // Recording a probe changes the station (its config, where its log head is kept): an officer's act.
    if (commandPath === "token probe" && (action.opts() as { record?: boolean }).record)
      commandPath += " --record";
    // The key ceremony signs a new station certificate with the root: an officer's act.
    if (commandPath === "station-cert" && (action.opts() as { root?: string }).root)
      commandPath += " --root";
  });
  const withStation = async <T>(
    fn: (s: Station) => Promise<T>,
    at?: { home: string; headFile?: string },
  ): Promise<T> => {
    // The station (token, database, their drivers) loads when a command opens it, not for --help.
    const { openStation } = await loadStation();
    const station = openStation({
      home: at?.home ?? globals().home,
      ...(at?.headFile ? { headFile: at.headFile } : {}),
      env: io.env,
      prompt,
      // "config accept" compares station.json itself, once its officer is signed in.
      skipConfigCheck: commandPath === "config accept",
    });
    let signedIn: string | null = null;
    try {
      const rule = COMMAND_ROLES[commandPath];
      if (rule === undefined)
        throw new LinesignError("INTERNAL", `No role rule for "${commandPath}".`);
      const name = io.env.LINESIGN_USER || undefined;
      const passphrase =
        io.env.LINESIGN_PASSPHRASE ||
        (name && prompt ? await prompt(`Passphrase for ${name}: `) : undefined);
      const user = await station.users.signIn(
        { ...(name ? { name } : {}), ...(passphrase ? { passphrase } : {}) },
        rule,
        commandPath,
      );
      // The caller is the actor; an officer's command is its own signing session.
      station.signInProcess(user);
      if (user && name) signedIn = user.name;
      return await fn(station);
    } catch (e) {
      const err = toLinesignError(e);
      // Refusals made before any use case ran (which records its own) go to the log here.
      if (err.code === "ROLE_FORBIDDEN" || err.code === "SIGNING_SESSION_REQUIRED")
        station.ctx.store.appendEvent({
          actor: station.ctx.actor,
          action: commandPath,
          subject: null,
          outcome: "refused",
          code: err.code,
          message: err.message,
          details: err.details,
        });
      throw e;
    } finally {
      if (signedIn)
        station.ctx.store.appendEvent({
          actor: signedIn,
          action: "user.logout",
          subject: signedIn,
          outcome: "ok",
          details: { command: commandPath },
        });
      const { checkpointFailed } = await station.close();
      if (checkpointFailed) {
        // Loud: on stderr (stdout keeps the command's own answer) and in the exit code.
        io.err(`linesign: ${checkpointFailed.message} [${checkpointFailed.code}]\n`);
        // A home that is full or read-only keeps no checkpoint anyway, and the command said so.
        const cause = (checkpointFailed.details as { cause?: string } | undefined)?.cause;
        if (exitCode === 0 && cause !== "DB_FULL" && cause !== "DB_READ_ONLY") exitCode = 1;
      }
    }
  };
  /** A secret from the environment, else asked on the terminal. */
  const secret = async (variable: string, question: string): Promise<string> => {
    const value = io.env[variable] || (prompt ? await prompt(question) : "");
    if (!value)
      throw new LinesignError(
        variable.includes("PASSPHRASE") ? "AUTH_REQUIRED" : "HSM_PIN_REQUIRED",
        `${variable} is needed: set it in the environment, or run on a terminal to be asked.`,
      );
    return value;
  };
  const emit = (value: Record<string, unknown>, text: string): void =>
    writeOutput(io, json, value, text);

  const deps: CommandDeps = {
    io,
    json: () => json || Boolean(globals().json),
    home: () => globals().home,
    prompt,
    withStation,
    emit,
    secret,
    setExitCode: (c) => (exitCode = c),
  };
  registerStationCommands(program, deps);
  registerCaCommands(program, deps);
  registerTokenCommands(program, deps);
  registerIssueCommand(program, deps);
  registerAuditCommands(program, deps);
  registerServeCommand(program, deps);
  registerKioskCommand(program, deps);
  registerLineCommands(program, { ...deps, liveTerminal: Boolean(io.terminal) });
  registerUserCommands(program, deps);
  registerWorkOrderCommands(program, deps);
  registerProfileCommands(program, deps);
  registerBackupCommands(program, deps);
  registerRevocationCommands(program, deps);
  const uploader = registerOnlineCommands(program, deps);
  registerSyncCommands(program, { ...deps, uploader });
  registerBenchCommand(program, deps);

  // Hidden, for the role-table test: every runnable command's path.
  if (argv[0] === "--list-commands") {
    const paths: string[] = [];
    const walk = (c: Command, prefix: string[]): void => {
      for (const sub of c.commands) {
        const path = [...prefix, sub.name()];
        if (sub.commands.length) walk(sub, path);
        else paths.push(path.join(" "));
      }
    };
    walk(program, []);
    io.out(JSON.stringify(paths) + "\n");
    return 0;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    json = Boolean(globals().json);
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" ||
        e.code === "commander.version" ||
        e.exitCode === 0
      )
        return 0;
      return 2;
    }
    const err = toLinesignError(e);
    if (json) {
      io.out(
        JSON.stringify({
          ok: false,
          error: { code: err.code, message: err.message, details: err.details },
        }) + "\n",
      );
    } else {
      io.err(`linesign: ${err.message} [${err.code}]\n`);
    }
    return err.code === "USAGE" ? 2 : 1;
  }
}
