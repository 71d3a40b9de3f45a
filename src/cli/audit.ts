/** `linesign audit log|verify|report|export`: the tamper-evident event log. */
import { Option, type Command } from "commander";
import { exportAudit, verifyAuditBundle, type AuditBundle } from "../app/audit-export.js";
import { buildReport, type ReportGroup } from "../app/report.js";
import { buildShift } from "../app/shift.js";
import { shiftReportHtml } from "./report-html.js";
import { eventsCsv, formatAuditTable, isoTime, toCsv } from "./output.js";
import { readInput, type CommandDeps } from "./io.js";
import { chainHash, READ_LIMITS } from "../compose-files.js";
import { LinesignError } from "../domain/errors.js";
import { checkStationCertificate } from "../app/station-cert.js";

const AUDIT_STATUSES = [
  "ISSUED",
  "DELIVERED",
  "CONFIRMED",
  "DELIVERY_FAILED",
  "SUPERSEDED",
  "REVOKED",
  "REJECTED",
] as const;

export function registerAuditCommands(program: Command, d: CommandDeps): void {
  const { io, withStation, emit } = d;
  const audit = program.command("audit").description("the tamper-evident event log");
  audit
    .command("log")
    .description("issuances and rejections with their reasons")
    .option("--since <time>", "from this time (ISO 8601, e.g. 2026-11-23 or 2026-11-23T08:00Z)")
    .option("--until <time>", "before this time (ISO 8601)")
    .option("--device <id>", "only this device id")
    .addOption(new Option("--status <state>", "only this state").choices([...AUDIT_STATUSES]))
    .addOption(
      new Option("--format <format>", "output format")
        .choices(["table", "json", "csv"])
        .default("table"),
    )
    .action(
      async (o: {
        since?: string;
        until?: string;
        device?: string;
        status?: string;
        format: string;
      }) => {
        const query = {
          since: isoTime(o.since, "--since"),
          until: isoTime(o.until, "--until"),
          deviceId: o.device,
          status: o.status,
        };
        await withStation(async (s) => {
          const rows = s.audit.log(query);
          if (d.json() || o.format === "json") io.out(JSON.stringify({ ok: true, rows }) + "\n");
          else if (o.format === "csv") io.out(toCsv(rows));
          else io.out(formatAuditTable(rows) + "\n");
        });
      },
    );
  audit
    .command("verify")
    .description(
      "check the event log's hash chain (or, with --bundle, an exported log on any machine); exits 1 naming the first bad entry",
    )
    .option("--bundle <file>", "an export from 'linesign audit export' (no HSM or station needed)")
    .option("--trust <cert>", "with --bundle: the station certificate, to pin the audit key")
    .option(
      "--root <cert>",
      "with --trust: the offline root's certificate; the station certificate must be issued by it",
    )
    .option(
      "--without-token",
      "the token is not here (a copy checked elsewhere): do not fail because its log head cannot be compared",
    )
    .addOption(
      new Option("--format <format>", "with --bundle: text, json, or the events as csv")
        .choices(["text", "json", "csv"])
        .default("text"),
    )
    .action(
      async (o: {
        bundle?: string;
        trust?: string;
        root?: string;
        format: string;
        withoutToken?: boolean;
      }) => {
        if (o.bundle) {
          const bytes = readInput(o.bundle, "the audit export", READ_LIMITS.bundle);
          const trust = o.trust
            ? Buffer.from(readInput(o.trust, "the station certificate")).toString("utf8")
            : undefined;
          let rootPem: string | undefined;
          if (o.root) {
            if (!trust)
              throw new LinesignError(
                "USAGE",
                "--root checks the station certificate: give it with --trust STATION_CERT.pem.",
              );
            rootPem = Buffer.from(readInput(o.root, "the root certificate")).toString("utf8");
            await checkStationCertificate(trust, rootPem);
          }
          const verdict = await verifyAuditBundle(bytes, chainHash, trust, rootPem);
          if (o.format === "csv") {
            const events = (JSON.parse(Buffer.from(bytes).toString("utf8")) as AuditBundle).events;
            io.out(eventsCsv(events));
          } else if (d.json() || o.format === "json") io.out(JSON.stringify(verdict) + "\n");
          else {
            const c = verdict.counts;
            io.out(
              [
                verdict.message,
                `  issued ${c.issued}, confirmed ${c.confirmed}, unconfirmed ${c.unconfirmed}, revoked ${c.revoked}`,
                `  rejected: ${
                  Object.entries(c.rejectedByReason)
                    .map(([k, v]) => `${k} ${v}`)
                    .join(", ") || "none"
                }`,
                ...c.unconfirmedList.map(
                  (u) => `  unconfirmed: ${u.deviceId} serial ${u.serial} (${u.state})`,
                ),
              ].join("\n") + "\n",
            );
          }
          if (!verdict.ok) d.setExitCode(1);
          return;
        }
        await withStation(async (s) => {
          const verdict = await s.audit.verify({ withoutToken: Boolean(o.withoutToken) });
          emit({ ...verdict }, verdict.message);
          if (!verdict.ok) d.setExitCode(1);
        });
      },
    );
  audit
    .command("accept-loss")
    .description(
      "an officer's recorded act: accept the loss of entries the token's log head revealed (a lost WAL, an older database put back), so the station signs again; the loss stays in every later verification",
    )
    .requiredOption(
      "--reason <text>",
      "why the loss is accepted (what was examined, what was done)",
    )
    .action(async (o: { reason: string }) => {
      const reason = o.reason.trim();
      if (reason.length < 8)
        throw new LinesignError(
          "USAGE",
          "Give the reason in a few words (--reason): what was examined and why the loss is accepted.",
        );
      await withStation(async (s) => {
        const loss = await s.checkpointer.acceptLoss(reason);
        emit(
          { ok: true, loss },
          `Loss accepted and recorded as entry ${loss.seq}: ${loss.what}. The station signs again; every later "audit verify" names this loss.`,
        );
      });
    });
  audit
    .command("rollover")
    .description(
      "after the station's token was replaced: an officer's recorded act introducing the new token's audit key, endorsed by the offline root (--root: it signs the new station certificate) or by the old audit key (--old-token, while the old token still works); earlier checkpoints keep verifying against the key they were signed with",
    )
    .option(
      "--root <label>",
      "the ceremony: the offline root CA (its token present, LINESIGN_ROOT_PIN)",
    )
    .option("--old-token <label>", "the old token, still working (its PIN in LINESIGN_ROOT_PIN)")
    .option("--out <file>", "with --root: write the new station certificate here")
    .requiredOption("--reason <text>", "why (which token died, what was examined)")
    .action(async (o: { root?: string; oldToken?: string; out?: string; reason: string }) => {
      const reason = o.reason.trim();
      if (reason.length < 8)
        throw new LinesignError(
          "USAGE",
          "Give the reason in a few words (--reason): which token was replaced and why.",
        );
      await withStation(async (s) => {
        const r = await s.rolloverAuditKey({
          ...(o.root ? { root: o.root } : {}),
          ...(o.oldToken ? { oldToken: o.oldToken } : {}),
          reason,
        });
        if (o.out && r.stationCert) s.home.writeFile(o.out, r.stationCert, 0o644);
        emit(
          {
            ok: true,
            seq: r.entry.seq,
            created: r.created,
            keysMissing: r.keysMissing,
            binding: r.binding,
            ...(o.out && r.stationCert ? { out: o.out } : { stationCert: r.stationCert }),
          },
          [
            `The new audit key was introduced as entry ${r.entry.seq} (${o.root ? `the ceremony: station certificate signed by root "${o.root}"` : `signed by the old audit key on token "${o.oldToken}"`}); earlier checkpoints verify against the old key.`,
            ...(r.keysMissing.length
              ? [
                  `CAs whose keys are not in the token, no longer signing here: ${r.keysMissing.join(", ")}. Create a new CA and rotate their profiles to it.`,
                ]
              : []),
            ...(o.out && r.stationCert ? [`Wrote the new station certificate to ${o.out}.`] : []),
          ].join("\n"),
        );
      });
    });
  audit
    .command("report")
    .description(
      "per work order, operator and port: issued, confirmed, unconfirmed (listed), rejected by reason, re-issued, revoked, uploaded per target",
    )
    .option(
      "--since <time>",
      "from this time (ISO 8601; with --format html, default 12 hours before --until)",
    )
    .option("--until <time>", "before this time (ISO 8601; with --format html, default now)")
    .addOption(
      new Option(
        "--format <format>",
        "text, json, or html: a printable shift report (the line's figures per hour, reason, port and work order; at most 168 hours)",
      )
        .choices(["text", "json", "html"])
        .default("text"),
    )
    .option(
      "--out <file>",
      "with --format html: write the report to this file (default: standard output)",
    )
    .action(async (o: { since?: string; until?: string; format: string; out?: string }) => {
      if (o.out && o.format !== "html")
        throw new LinesignError(
          "USAGE",
          "--out is for --format html; text and json go to standard output.",
        );
      await withStation(async (s) => {
        const since = isoTime(o.since, "--since");
        const until = isoTime(o.until, "--until");
        if (o.format === "html") {
          // One window for both: the shift's, bounded; the report's figures over the same times.
          const shift = buildShift(s.ctx, {
            ...(since ? { from: since } : {}),
            ...(until ? { to: until } : {}),
          });
          const report = buildReport(s.ctx, { since: shift.from, until: shift.to });
          const page = shiftReportHtml({
            stationId: s.config.station.id,
            report,
            shift,
            at: s.ctx.clock.now(),
          });
          if (!o.out) return void io.out(page);
          s.home.writeFile(o.out, page, 0o644);
          emit(
            { ok: true, out: o.out, from: shift.from, to: shift.to },
            `Wrote the shift report from ${shift.from} to ${shift.to} to ${o.out}.`,
          );
          return;
        }
        const r = buildReport(s.ctx, { since, until });
        if (o.format === "json") return void io.out(JSON.stringify({ ok: true, ...r }) + "\n");
        const line = (name: string, g: ReportGroup) =>
          `  ${name.padEnd(28)} issued ${g.issued}, confirmed ${g.confirmed}, unconfirmed ${g.unconfirmed}, re-issued ${g.reissued}, revoked ${g.revoked}` +
          (Object.keys(g.rejected).length
            ? `; rejected ${Object.entries(g.rejected)
                .map(([k, v]) => `${k} ${v}`)
                .join(", ")}`
            : "") +
          (Object.keys(g.uploaded).length
            ? `; uploaded ${Object.entries(g.uploaded)
                .map(([k, v]) => `${k} ${v}`)
                .join(", ")}`
            : "");
        const text = [
          line("all", r.totals),
          "By work order:",
          ...Object.entries(r.byWorkOrder).map(([k, g]) => line(k, g)),
          "By operator:",
          ...Object.entries(r.byOperator).map(([k, g]) => line(k, g)),
          "By port:",
          ...Object.entries(r.byPort).map(([k, g]) => line(k, g)),
          r.unconfirmed.length
            ? `Left the station and never confirmed (${r.unconfirmed.length}; possibly on a device nobody checked: revoke, or provision again):`
            : "Every certificate that left was confirmed.",
          ...r.unconfirmed.map(
            (u) => `  ${u.deviceId}  serial ${u.serial}  ${u.state}  ${u.origin}  ${u.at}`,
          ),
        ].join("\n");
        emit({ ok: true, ...r }, text);
      });
    });
  audit
    .command("export")
    .description(
      "write the whole log (rejections included), checkpoints, CA certificates, audit key and CRLs for an auditor",
    )
    .requiredOption("--out <file>", "the export file")
    .action(async (o: { out: string }) => {
      await withStation(async (s) => {
        const bundle = await exportAudit(s.ctx, s.checkpointer);
        s.home.writeFile(o.out, JSON.stringify(bundle) + "\n", 0o644);
        emit(
          {
            ok: true,
            out: o.out,
            events: bundle.events.length,
            checkpoints: bundle.checkpoints.length,
          },
          `Wrote ${bundle.events.length} entries and ${bundle.checkpoints.length} checkpoints to ${o.out}.\nAnywhere: linesign audit verify --bundle ${o.out} --trust STATION_CERT.pem`,
        );
      });
    });
}
