/** `linesign backup` and `linesign restore`: the station's records, designed with the log head. */
import { join } from "node:path";
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { withDrivers, type CommandDeps } from "./io.js";

/** Loaded when a backup or restore runs (it wires the station's database). */
const backups = () => withDrivers(() => import("../compose-backup.js"));

export function registerBackupCommands(program: Command, d: CommandDeps): void {
  const { withStation, emit } = d;
  program
    .command("backup")
    .description(
      "write a consistent backup while the line runs: the database (SQLite's online backup), station.json, the CA and station certificates, under a manifest signed by the audit key naming the log head it covers",
    )
    .requiredOption("--out <file>", "the backup file (on another disk or removable media)")
    .action(async (o: { out: string }) => {
      const { backupStation } = await backups();
      await withStation(async (s) => {
        const r = await backupStation(s, o.out);
        emit(
          { ok: true, ...r },
          `Wrote backup ${r.id} to ${r.out}: ${r.files} files, the log up to entry ${r.head?.seq ?? 0}. ` +
            "Whatever the station records after that entry is not in it; a restore names it from the token's head.",
        );
      });
    });
  program
    .command("restore")
    .description(
      "restore a backup into an empty station home (--home), check it, record the restore and compare it with the token's log head; a token ahead of the backup is refused, naming the missing entries",
    )
    .argument("<file>", "the backup file")
    .action(async (file: string) => {
      const home = d.home() ?? d.io.env.LINESIGN_HOME;
      if (!home)
        throw new LinesignError(
          "USAGE",
          "Name the new station home with --home DIR (an empty folder, or one not yet made).",
        );
      const { compareRestore, discardRestore, placeRestore, stageRestore } = await backups();
      const staged = await stageRestore(file, home);
      let placed = false;
      try {
        // A signed head file kept in the home is the new home's, not the staging folder's.
        const v = await withStation((s) => compareRestore(s, staged), {
          home: staged.dir,
          headFile: join(staged.home, "log-head.json"),
        });
        placeRestore(staged);
        placed = true;
        if (!v.ok)
          throw new LinesignError(v.code ?? "RESTORE_BEHIND_TOKEN", v.message, {
            details: {
              home: staged.home,
              backup: staged.manifest.id,
              covered: staged.manifest.head,
              tokenSeq: v.tokenSeq,
              missing: v.missing,
            },
          });
        emit(
          {
            ok: true,
            home: staged.home,
            backup: staged.manifest.id,
            covered: staged.manifest.head,
            tokenSeq: v.tokenSeq,
            entry: v.seq,
          },
          `${v.message} The restore is entry ${v.seq}.`,
        );
      } finally {
        if (!placed) discardRestore(staged);
        else discardRestore({ dir: staged.dir, home: staged.home });
      }
    });
}
