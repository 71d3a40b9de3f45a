/** `linesign user ...`: people and their roles. */
import { Option, type Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import type { CommandDeps } from "./io.js";

export function registerUserCommands(program: Command, d: CommandDeps): void {
  const { withStation, emit, secret, io, prompt } = d;
  const user = program.command("user").description("people and their roles");
  user
    .command("add")
    .description("add a user (passphrase from LINESIGN_NEW_PASSPHRASE or a prompt)")
    .requiredOption("--name <name>", "the user's name")
    .addOption(
      new Option("--role <role>", "what they may do")
        .choices(["operator", "officer", "auditor", "sync"])
        .makeOptionMandatory(),
    )
    .action(async (o: { name: string; role: string }) => {
      await withStation(async (s) => {
        const pass = await secret("LINESIGN_NEW_PASSPHRASE", `Passphrase for ${o.name}: `);
        const v = await s.users.add(o.name, o.role, pass);
        emit({ ok: true, user: v }, `User ${v.name} added as ${v.role}.`);
      });
    });
  user
    .command("list")
    .description("users, roles, and who is disabled or locked")
    .action(async () => {
      await withStation(async (s) => {
        const users = s.users.list();
        emit(
          { ok: true, users },
          users
            .map(
              (u) =>
                `${u.name}  ${u.role}${u.disabled ? "  DISABLED" : ""}${u.locked ? `  LOCKED until ${u.lockedUntil}` : ""}`,
            )
            .join("\n"),
        );
      });
    });
  user
    .command("disable")
    .description("stop a user from signing in")
    .requiredOption("--name <name>", "the user")
    .action(async (o: { name: string }) => {
      await withStation(async (s) => {
        const v = await s.users.disable(o.name);
        emit({ ok: true, user: v }, `User ${v.name} is disabled.`);
      });
    });
  user
    .command("reset")
    .description("give a user a new passphrase (LINESIGN_NEW_PASSPHRASE or a prompt); lifts a lock")
    .requiredOption("--name <name>", "the user")
    .action(async (o: { name: string }) => {
      await withStation(async (s) => {
        const pass = await secret("LINESIGN_NEW_PASSPHRASE", `New passphrase for ${o.name}: `);
        const v = await s.users.reset(o.name, pass);
        emit({ ok: true, user: v }, `User ${v.name} has a new passphrase and may sign in.`);
      });
    });
  user
    .command("unlock")
    .description(
      "break-glass: lift a user's sign-in lock by proving the station token's SO PIN (LINESIGN_SO_PIN or a prompt)",
    )
    .requiredOption("--name <name>", "the user")
    .action(async (o: { name: string }) => {
      await withStation(async (s) => {
        const soPin =
          io.env.LINESIGN_SO_PIN ??
          (prompt ? await prompt(`SO PIN for token "${s.ctx.tokenLabel}": `) : undefined);
        if (!soPin)
          throw new LinesignError(
            "HSM_PIN_REQUIRED",
            "The SO PIN is needed: set LINESIGN_SO_PIN, or run on a terminal to be asked.",
          );
        const v = await s.users.unlock(o.name, () =>
          s.ctx.tokenAdmin().officerReset(s.ctx.tokenLabel, soPin),
        );
        emit({ ok: true, user: v }, `User ${v.name} is unlocked and may sign in.`);
      });
    });
  user
    .command("passphrase")
    .description(
      "change your own passphrase (sign in with the current one; the new one from LINESIGN_NEW_PASSPHRASE or a prompt)",
    )
    .action(async () => {
      await withStation(async (s) => {
        const name = s.ctx.actor;
        const pass = await secret("LINESIGN_NEW_PASSPHRASE", `New passphrase for ${name}: `);
        const v = await s.users.changePassphrase(name, pass);
        emit({ ok: true, user: v }, `User ${v.name} has a new passphrase.`);
      });
    });
}
