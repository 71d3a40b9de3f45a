/** `linesign token ...`: the PKCS#11 tokens the station sees. */
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { renderAssessment as renderBase, type TokenAssessment } from "../app/token.js";
import { loadStation, type CommandDeps } from "./io.js";

/** The assessment, and where an auditor without the user PIN reads the log head. */
function renderAssessment(a: TokenAssessment): string {
  const pub = a.probe.publicDataObjects;
  return (
    renderBase(a) +
    (pub === undefined || pub === null
      ? ""
      : pub.kept
        ? "\nAuditor's head: a public data object made in the user session is read without login, so auditors compare the log head without the user PIN.\n"
        : `\nAuditor's head: NOT available without the user PIN (${pub.reason}); an auditor's "audit verify" says the head could not be compared, and the comparison needs the user PIN (a security officer).\n`)
  );
}

export function registerTokenCommands(program: Command, d: CommandDeps): void {
  const { io, prompt, withStation, emit, secret } = d;
  const token = program.command("token").description("the PKCS#11 tokens the station sees");
  token
    .command("list")
    .description("list initialised tokens (no PIN needed)")
    .action(async () => {
      await withStation(async (s) => {
        const tokens = s.tokens.list();
        emit(
          { ok: true, tokens },
          tokens.length === 0
            ? "No initialised token is present."
            : tokens
                .map((t) => `${t.label}  (${t.manufacturer} ${t.model}, serial ${t.serial})`)
                .join("\n"),
        );
      });
    });
  token
    .command("probe")
    .description(
      "what a token offers (mechanisms, key types, PIN counters; with LINESIGN_USER_PIN also data objects and the key template it accepts) and whether it can hold a CA key and the audit key",
    )
    .option("--module <path>", "PKCS#11 module to probe (default: the station's)")
    .option("--token <token>", "a label, serial:S or a token URI (default: the station's token)")
    .option(
      "--record",
      "keep the facts in the station's log (status shows them) and set audit.headStore from whether the token keeps data objects (needs LINESIGN_USER_PIN)",
    )
    .action(async (o: { module?: string; token?: string; record?: boolean }) => {
      const { probeToken } = await loadStation();
      const a = await probeToken({
        ...(d.home() ? { home: d.home()! } : {}),
        ...(o.module ? { module: o.module } : {}),
        ...(o.token ? { token: o.token } : {}),
        env: io.env,
        ...(prompt && !io.env.LINESIGN_USER_PIN ? { prompt } : {}),
      });
      if (!o.record) {
        emit({ ok: true, ...a }, renderAssessment(a));
        return;
      }
      const recorded = await withStation((s) => s.recordTokenProbe(a));
      emit(
        { ok: true, ...a, recorded },
        renderAssessment(a) +
          `\nRecorded in the station's log; the log head is kept ${recorded.headStore === "data-object" ? "in a data object on the token" : "signed by the audit key, in a file outside the database"}${recorded.changed ? " (station.json's audit.headStore changed)" : ""}.`,
      );
    });
  token
    .command("init")
    .description(
      "security officer: initialise a free slot's token (SO PIN from LINESIGN_SO_PIN, user PIN from LINESIGN_USER_PIN, or prompts)",
    )
    .requiredOption("--label <label>", "label of the new token")
    .action(async (o: { label: string }) => {
      await withStation(async (s) => {
        const soPin = await secret("LINESIGN_SO_PIN", `New SO PIN for token "${o.label}": `);
        const userPin = await secret(
          o.label === s.ctx.tokenLabel ? "LINESIGN_USER_PIN" : "LINESIGN_ROOT_PIN",
          `New user PIN for token "${o.label}": `,
        );
        await s.tokens.init(o.label, soPin, userPin);
        emit({ ok: true, token: o.label }, `Token "${o.label}" is initialised.`);
      });
    });
  token
    .command("unlock")
    .description(
      "security officer: prove the SO PIN (LINESIGN_SO_PIN or prompt) and lift the wrong-PIN lock; LINESIGN_NEW_USER_PIN also sets a new user PIN",
    )
    .option("--token <label>", "the token (default: the station's)")
    .option(
      "--clear-so-guard",
      "lift the station's stop on SO PINs after wrong attempts (presents no PIN; recorded)",
    )
    .option(
      "--final-try",
      "present the SO PIN although the token reports one SO attempt left (CKF_SO_PIN_FINAL_TRY): a wrong one then locks it; recorded",
    )
    .action(async (o: { token?: string; clearSoGuard?: boolean; finalTry?: boolean }) => {
      await withStation(async (s) => {
        const label = o.token ?? s.ctx.tokenLabel;
        if (o.clearSoGuard) {
          const r = await s.tokens.clearSoGuard(label);
          emit(
            { ok: true, token: label, cleared: r },
            `The station presents SO PINs to token "${label}" again (${r.failures} wrong attempts were on record). Be sure of the SO PIN before the next try.`,
          );
          return;
        }
        const soPin =
          io.env.LINESIGN_SO_PIN ??
          (prompt ? await prompt(`SO PIN for token "${label}": `) : undefined);
        if (!soPin)
          throw new LinesignError(
            "HSM_PIN_REQUIRED",
            "The SO PIN is needed: set LINESIGN_SO_PIN, or run on a terminal to be asked.",
          );
        await s.tokens.unlock(label, soPin, io.env.LINESIGN_NEW_USER_PIN || undefined, {
          finalTry: o.finalTry === true,
        });
        emit(
          { ok: true, token: label },
          `Token "${label}" is unlocked for the station${io.env.LINESIGN_NEW_USER_PIN ? " and has a new user PIN" : ""}.`,
        );
      });
    });
  token
    .command("pin")
    .description(
      "security officer: change the token's user PIN (LINESIGN_USER_PIN, then LINESIGN_NEW_USER_PIN) or with --so its SO PIN (LINESIGN_SO_PIN, LINESIGN_NEW_SO_PIN); prompts on a terminal",
    )
    .option("--so", "change the SO PIN instead of the user PIN")
    .option("--token <label>", "the token (default: the station's)")
    .action(async (o: { so?: boolean; token?: string }) => {
      await withStation(async (s) => {
        const label = o.token ?? s.ctx.tokenLabel;
        const kind = o.so ? "SO" : "user";
        const current = o.so
          ? "LINESIGN_SO_PIN"
          : label === s.ctx.tokenLabel
            ? "LINESIGN_USER_PIN"
            : "LINESIGN_ROOT_PIN";
        const oldPin = await secret(current, `Current ${kind} PIN of token "${label}": `);
        const newPin = await secret(
          o.so ? "LINESIGN_NEW_SO_PIN" : "LINESIGN_NEW_USER_PIN",
          `New ${kind} PIN of token "${label}": `,
        );
        await s.tokens.changePin(label, o.so ? "so" : "user", oldPin, newPin);
        emit(
          { ok: true, token: label, pin: kind },
          `The ${kind} PIN of token "${label}" is changed.${o.so ? "" : " Tell whoever opens signing sessions; the old PIN no longer works."}`,
        );
      });
    });
}
