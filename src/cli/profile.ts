/**
 * `linesign profile list|show|create|set` and `linesign config accept`:
 * profiles and station.json as recorded configuration (every change an event
 * with the before and the after).
 */
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { describeChanges, type ProfileView } from "../app/profiles.js";
import { readInput, type CommandDeps } from "./io.js";

const collect = (v: string, all: string[]): string[] => [...all, v];

function profileLine(p: ProfileView): string {
  return `${p.name}${p.isDefault ? " (default)" : ""}  CA ${p.ca}  validity ${p.profile.validityDays} d  re-issue ${p.profile.allowReissue ? "allowed" : "refused"}  sha256 ${p.sha256.slice(0, 16)}`;
}

/** A profile in a JSON file (at most 64 KiB), as an object. */
function readProfileFile(path: string): Record<string, unknown> {
  const bytes = readInput(path, "the profile file", 65_536);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new LinesignError("USAGE", `${path} is not JSON: give one profile object.`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value))
    throw new LinesignError("USAGE", `${path} must hold one JSON object (a profile).`);
  return value as Record<string, unknown>;
}

export function registerProfileCommands(program: Command, d: CommandDeps): void {
  const { withStation, emit } = d;
  const profile = program
    .command("profile")
    .description("certificate profiles (kept in station.json; every change is recorded)");
  profile
    .command("list")
    .description("profiles with their CA and content hash")
    .action(async () => {
      await withStation(async (s) => {
        const profiles = s.profiles.list();
        emit(
          { ok: true, profiles },
          profiles.length
            ? profiles.map(profileLine).join("\n")
            : 'No profiles yet: "linesign profile create --name NAME --ca CA".',
        );
      });
    });
  profile
    .command("show")
    .description("one profile in full (defaults filled) and its content hash")
    .requiredOption("--name <name>", "the profile")
    .action(async (o: { name: string }) => {
      await withStation(async (s) => {
        const p = s.profiles.show(o.name);
        emit(
          { ok: true, profile: p },
          `${profileLine(p)}\nsha256 ${p.sha256}\n${JSON.stringify(p.profile, null, 2)}`,
        );
      });
    });
  profile
    .command("create")
    .description(
      "add a profile: its CA (an intermediate for devices), optionally a JSON file and fields",
    )
    .requiredOption("--name <name>", "the new profile's name")
    .option("--ca <label>", 'the issuing CA (or "ca" in --file)')
    .option("--file <json>", "the profile as a JSON object (fields as in station.json)")
    .option(
      "--field <FIELD=VALUE>",
      "a field to set, e.g. validityDays=365 (repeatable)",
      collect,
      [],
    )
    .action(async (o: { name: string; ca?: string; file?: string; field: string[] }) => {
      const base = o.file ? readProfileFile(o.file) : {};
      if (o.ca) base.ca = o.ca;
      if (!base.ca)
        throw new LinesignError("USAGE", 'Name the issuing CA: --ca LABEL (or "ca" in --file).');
      await withStation(async (s) => {
        let p = await s.profiles.create(o.name, base);
        if (o.field.length) p = await s.profiles.set(o.name, o.field);
        emit({ ok: true, profile: p }, `Profile "${p.name}" created: ${profileLine(p)}`);
      });
    });
  profile
    .command("set")
    .description("change fields of a profile (recorded with the before and the after)")
    .requiredOption("--name <name>", "the profile")
    .option(
      "--field <FIELD=VALUE>",
      "e.g. validityDays=365, keys.rsaMinBits=null (repeatable)",
      collect,
      [],
    )
    .action(async (o: { name: string; field: string[] }) => {
      await withStation(async (s) => {
        const before = s.profiles.show(o.name);
        const p = await s.profiles.set(o.name, o.field);
        emit(
          { ok: true, profile: p, beforeSha256: before.sha256 },
          `Profile "${p.name}" changed (sha256 ${before.sha256.slice(0, 16)} -> ${p.sha256.slice(0, 16)}); it applies from the next start of a line or the station service.`,
        );
      });
    });

  const config = program.command("config").description("station.json under the log");
  config
    .command("accept")
    .description("security officer: accept a hand edit of station.json (recorded, field by field)")
    .action(async () => {
      await withStation(async (s) => {
        const r = s.configRecord.reconcile(s.config, true);
        emit(
          { ok: true, changes: r.changes, sha256: r.sha256 },
          r.changes.length
            ? `Accepted and recorded: ${describeChanges(r.changes, 20)}.`
            : "station.json is as the station recorded it; nothing to accept.",
        );
      });
    });
}
