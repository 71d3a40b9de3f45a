/**
 * `linesign target add|list|remove` and `linesign sync`. With --json, sync
 * prints one JSON object per item and a last one with the summary; on a
 * terminal it draws a progress bar on stderr.
 */
import { Option, type Command } from "commander";
import { X509Certificate } from "node:crypto";
import { LinesignError } from "../domain/errors.js";
import type { Station } from "../compose.js";
import type { TargetView } from "../app/sync/sync.js";
import type { SyncItemEvent } from "../app/sync/target-sync.js";
import type { CliIo } from "./io.js";
import { readFileBounded, readTextBounded, READ_LIMITS } from "../compose-files.js";
import { loadAwsSdk } from "../compose-online.js";
import {
  enrollUploader,
  exportBundle,
  importReceipt,
  stationCertificate,
} from "../app/sync/bundle.js";
import { summaryText } from "./online.js";
import { recordedStationCertificate, rootSignedStationCertificate } from "../app/station-cert.js";

export interface SyncCliDeps {
  io: CliIo;
  json: () => boolean;
  withStation: <T>(fn: (s: Station) => Promise<T>) => Promise<T>;
  emit: (value: Record<string, unknown>, text: string) => void;
  setExitCode: (code: number) => void;
  /** The `uploader` command (its `init` runs on the online machine). */
  uploader: Command;
}

const bool = (name: string) => (v: string) => {
  if (v === "true") return true;
  if (v === "false") return false;
  throw new LinesignError("USAGE", `${name} takes true or false.`);
};

function targetLine(t: TargetView): string {
  return [
    `${t.name}: ${t.region}${t.endpoint ? ` via ${t.endpoint}` : ""}${t.awsProfile ? `, profile ${t.awsProfile}` : ""}; CA ${t.caMode}${t.caActive ? "" : " (registered INACTIVE)"}, devices ${t.deviceRegistration}; at most ${t.maxRps} requests/s`,
    ...(t.thingName || t.policy
      ? [
          `  per device: ${[
            t.thingName ? `Thing ${t.thingName}${t.thingType ? ` (${t.thingType})` : ""}` : null,
            t.policy ? `policy ${t.policy}${t.policyDocument ? " (created once)" : ""}` : null,
            t.thingGroups ? `groups ${t.thingGroups.join(", ")}` : null,
          ]
            .filter(Boolean)
            .join("; ")}`,
        ]
      : []),
    `  queue: ${t.queue.pending} pending, ${t.queue.uploaded} uploaded, ${t.queue.leftToJitr} left to JITR, ${t.queue.failed} failed, ${t.queue.revoked} revoked`,
    ...t.cas.map((c) => `  CA ${c.caLabel}: ${c.awsCertificateId} (${c.mode}, ${c.remoteStatus})`),
  ].join("\n");
}

export function registerSyncCommands(program: Command, d: SyncCliDeps): void {
  const target = program
    .command("target")
    .description("AWS IoT accounts and regions to register with");
  target
    .command("add")
    .description("add a target (credentials come from the AWS SDK's default chain or --profile)")
    .requiredOption("--name <name>", "the target's name")
    .requiredOption("--region <region>", "AWS region, e.g. eu-west-1")
    .option("--endpoint <url>", "another endpoint (an emulator, a VPC endpoint)")
    .option("--profile <aws-profile>", "AWS profile from the shared config files")
    .addOption(
      new Option("--ca-mode <mode>", "CA certificate mode")
        .choices(["DEFAULT", "SNI_ONLY"])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--device-registration <how>", "how device certificates get there")
        .choices(["with-ca", "without-ca", "jitr"])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--device-status <status>", "status of registered devices")
        .choices(["ACTIVE", "INACTIVE"])
        .default("ACTIVE"),
    )
    .option(
      "--ca-active <bool>",
      "register CAs ACTIVE (true) or INACTIVE (false)",
      bool("--ca-active"),
      true,
    )
    .option(
      "--auto-registration <bool>",
      "allow auto-registration on the CA (default: on for jitr)",
      bool("--auto-registration"),
    )
    .option("--jitp-template <file>", "just-in-time provisioning template (JSON file)")
    .option("--jitp-role-arn <arn>", "IAM role for just-in-time provisioning")
    .option("--max-rps <n>", "never send faster than this (AWS's default quota: 10)", "10")
    .option(
      "--thing-name <template>",
      "make each device's Thing, named by a template over {deviceId}, {model} and {firmware}; its certificate is attached to it",
    )
    .option("--thing-type <name>", "the Things' thing type (it must exist at the target)")
    .option(
      "--thing-group <name>",
      "add each Thing to this thing group (repeatable; it must exist at the target)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--policy <name>", "attach this AWS IoT policy to each certificate")
    .option(
      "--policy-document <file>",
      "create --policy from this JSON document once at the target (instead of one made there)",
    )
    .action(
      async (o: {
        name: string;
        region: string;
        endpoint?: string;
        profile?: string;
        caMode: string;
        deviceRegistration: string;
        deviceStatus: string;
        caActive: boolean;
        autoRegistration?: boolean;
        jitpTemplate?: string;
        jitpRoleArn?: string;
        maxRps: string;
        thingName?: string;
        thingType?: string;
        thingGroup?: string[];
        policy?: string;
        policyDocument?: string;
      }) => {
        let policyDocument: string | undefined;
        if (o.policyDocument) {
          try {
            policyDocument = readTextBounded(
              o.policyDocument,
              "the policy document",
              READ_LIMITS.small,
            );
          } catch (cause) {
            throw new LinesignError(
              "TARGET_INVALID",
              `--policy-document ${o.policyDocument} cannot be read.`,
              { cause },
            );
          }
        }
        let template: string | undefined;
        if (o.jitpTemplate) {
          try {
            template = readTextBounded(o.jitpTemplate, "the JITP template", READ_LIMITS.small);
            JSON.parse(template);
          } catch (cause) {
            throw new LinesignError(
              "TARGET_INVALID",
              `--jitp-template ${o.jitpTemplate} is not a readable JSON file.`,
              { cause },
            );
          }
        }
        const maxRps = Number(o.maxRps);
        await d.withStation(async (s) => {
          const view = await s.sync.addTarget(o.name, {
            region: o.region,
            ...(o.endpoint ? { endpoint: o.endpoint } : {}),
            ...(o.profile ? { awsProfile: o.profile } : {}),
            caMode: o.caMode,
            deviceRegistration: o.deviceRegistration,
            deviceStatus: o.deviceStatus,
            caActive: o.caActive,
            ...(o.autoRegistration !== undefined ? { autoRegistration: o.autoRegistration } : {}),
            ...(template ? { jitpTemplate: template } : {}),
            ...(o.jitpRoleArn ? { jitpRoleArn: o.jitpRoleArn } : {}),
            maxRps,
            ...(o.thingName ? { thingName: o.thingName } : {}),
            ...(o.thingType ? { thingType: o.thingType } : {}),
            ...(o.thingGroup ? { thingGroups: o.thingGroup } : {}),
            ...(o.policy ? { policy: o.policy } : {}),
            ...(policyDocument !== undefined ? { policyDocument } : {}),
          });
          d.emit({ ok: true, target: view }, `Target added.\n${targetLine(view)}`);
        });
      },
    );
  target
    .command("list")
    .description("targets with their queues and registered CAs")
    .action(async () => {
      await d.withStation(async (s) => {
        const targets = s.sync.listTargets();
        d.emit(
          { ok: true, targets },
          targets.length ? targets.map(targetLine).join("\n") : "No targets.",
        );
      });
    });
  target
    .command("remove")
    .description("forget a target (what was registered there stays in the log)")
    .requiredOption("--name <name>", "the target")
    .action(async (o: { name: string }) => {
      await d.withStation(async (s) => {
        await s.sync.removeTarget(o.name);
        d.emit({ ok: true, removed: o.name }, `Target "${o.name}" removed.`);
      });
    });

  program
    .command("sync")
    .description(
      "register queued CAs, device certificates, revocations and CA status changes with AWS IoT",
    )
    .option(
      "--target <name>",
      "only this target (repeatable; default: all)",
      (v: string, p: string[] = []) => [...p, v],
    )
    .option(
      "--dry-run",
      "print the plan per target (account, profile, region, endpoint), checking credentials with read-only calls; change nothing",
    )
    .action(async (o: { target?: string[]; dryRun?: boolean }) => {
      // A sync sends paced requests: the SDK is loaded first, before the station opens.
      await loadAwsSdk();
      const json = d.json();
      const bar = !json && d.io.terminal;
      let done = 0;
      await d.withStation(async (s) => {
        const total = (o.target ?? s.sync.listTargets().map((t) => t.name)).reduce(
          (n, name) => n + s.sync.view(name).queue.pending,
          0,
        );
        const onItem = (e: SyncItemEvent): void => {
          if (json) d.io.out(JSON.stringify({ event: "item", ...e }) + "\n");
          else if (!bar && (e.outcome === "failed" || o.dryRun))
            d.io.out(
              `${e.target} ${e.kind} ${e.ref}: ${e.outcome}${e.message ? `: ${e.message}` : ""}${e.willFail ? ` -- will fail: ${e.willFail}` : ""}\n`,
            );
          else if (bar && e.outcome === "failed")
            d.io.err(`\n${e.target} ${e.kind} ${e.ref}: ${e.message ?? e.code}\n`);
          if (e.kind === "device") done++;
          if (bar) {
            const w = 30;
            const f = total ? Math.min(w, Math.round((done / total) * w)) : w;
            d.io.err(
              `\r[${"#".repeat(f)}${".".repeat(w - f)}] ${done}/${total} device certificates`,
            );
          }
        };
        const r = await s.sync.sync({
          ...(o.target ? { targets: o.target } : {}),
          ...(o.dryRun ? { dryRun: true } : {}),
          onItem,
        });
        if (bar) d.io.err("\n");
        const ok = r.failedForGood === 0 && r.deferred === 0 && r.willFail === 0;
        if (json) d.io.out(JSON.stringify({ event: "summary", ok, ...r }) + "\n");
        else
          d.io.out(
            (o.dryRun ? "Plan (nothing was sent):\n" : "") +
              r.targets.map(summaryText).join("\n") +
              "\n",
          );
        if (!ok) d.setExitCode(1);
      });
    });

  program
    .command("station-cert")
    .description(
      "the station's certificate (its audit key, in the token) for 'upload --trust' and 'audit verify --trust' elsewhere; an auditor (or --recorded) reads the one the log recorded, with the root's after it",
    )
    .option("--out <file>", "write to a file instead of stdout")
    .option(
      "--root <label>",
      "key ceremony (officer): have the offline root CA sign it (its token present, LINESIGN_ROOT_PIN), so auditors trust the audit key through the root",
    )
    .option(
      "--recorded",
      "read-only: the station certificate the log recorded for the audit key in force (no token, no PIN, nothing made); what an auditor always gets",
    )
    .action(async (o: { out?: string; root?: string; recorded?: boolean }) => {
      await d.withStation(async (s) => {
        const role = s.ctx.store.getUser(s.ctx.actor)?.role;
        if (o.recorded || role === "auditor") {
          if (o.root)
            throw new LinesignError(
              "USAGE",
              "--recorded reads the recorded certificate; --root makes a new one in the key ceremony. Give one of them.",
            );
          const r = await recordedStationCertificate(s.ctx, s.checkpointer);
          const text = r.pem + r.chain.join("");
          if (o.out) {
            s.home.writeFile(o.out, text, 0o644);
            d.emit(
              { ok: true, out: o.out, ...r },
              `Wrote the station certificate recorded at entry ${r.seq}${r.root ? ` (signed by root "${r.root}", its certificate after it)` : " (self-signed by the audit key)"} to ${o.out}.`,
            );
          } else if (d.json()) d.emit({ ok: true, ...r }, text);
          else d.io.out(text);
          return;
        }
        const pem = o.root
          ? await rootSignedStationCertificate(s.ctx, s.checkpointer, s.ca, o.root)
          : await stationCertificate(s.ctx, s.checkpointer);
        if (o.out) {
          s.home.writeFile(o.out, pem, 0o644);
          d.emit({ ok: true, out: o.out }, `Wrote the station certificate to ${o.out}.`);
        } else if (d.json()) d.emit({ ok: true, pem }, pem);
        else d.io.out(pem);
      });
    });

  program
    .command("export")
    .description(
      "write a target's queue as a bundle signed by the station, for an online machine to upload",
    )
    .requiredOption("--target <name>", "the target")
    .requiredOption("--out <file>", "the bundle file")
    .option(
      "--registration-code <code>",
      "DEFAULT mode: the account's code from 'aws iot get-registration-code', brought from the online side",
    )
    .action(async (o: { target: string; out: string; registrationCode?: string }) => {
      await d.withStation(async (s) => {
        // The file's place is taken before the bundle is signed and recorded.
        const place = s.home.reserveFile(o.out, 0o644);
        let made: Awaited<ReturnType<typeof exportBundle>>;
        try {
          made = await exportBundle(
            s.ctx,
            s.ca,
            s.checkpointer,
            s.sync,
            o.target,
            o.registrationCode,
          );
        } catch (e) {
          place.release();
          throw e;
        }
        const { file, manifest, verificationExpiry } = made;
        place.write(JSON.stringify(file) + "\n");
        d.emit(
          {
            ok: true,
            out: o.out,
            bundle: manifest.id,
            cas: manifest.cas.length,
            devices: manifest.devices.length,
            revocations: manifest.revocations.length + manifest.revokedUnregistered.length,
            verificationExpiry,
          },
          `Wrote bundle ${manifest.id} to ${o.out}: ${manifest.cas.length} CA(s), ${manifest.devices.length} device certificate(s), ${manifest.revocations.length + manifest.revokedUnregistered.length} revocation(s).${verificationExpiry ? `\nIts verification certificates expire at ${verificationExpiry}: upload it before then (after that, export again with a registration code).` : ""}\nOn the online machine: linesign upload ${o.out} --trust STATION_CERT.pem`,
        );
      });
    });

  program
    .command("import-receipt")
    .description("mark what an online machine registered from this station's bundle as uploaded")
    .argument("<file>", "the receipt 'linesign upload' wrote")
    .action(async (file: string) => {
      const bytes = Buffer.from(readFileBounded(file, "the receipt", READ_LIMITS.receipt));
      await d.withStation(async (s) => {
        const r = await importReceipt(s.ctx, bytes);
        d.emit(
          { ok: true, ...r },
          `Receipt ${r.receiptId} for bundle ${r.bundleId} (uploader "${r.uploader}") imported: ${r.done} uploaded, ${r.failed} failed (still queued: upload the same bundle again, or export a new one), ${r.cas} CA registration(s).`,
        );
      });
    });

  d.uploader
    .command("enroll")
    .description(
      "officer: trust an online uploader's certificate, so its signed receipts are imported",
    )
    .requiredOption("--name <name>", "the uploader's name")
    .requiredOption("--cert <file>", "the uploader.pem 'linesign uploader init' wrote")
    .action(async (o: { name: string; cert: string }) => {
      const pem = readTextBounded(o.cert, "the uploader certificate", READ_LIMITS.certificate);
      await d.withStation(async (s) => {
        const u = await enrollUploader(s.ctx, o.name, pem);
        d.emit(
          { ok: true, name: u.name, fingerprint: u.fingerprint },
          `Uploader "${u.name}" enrolled (certificate SHA-256 ${u.fingerprint}): its signed receipts are imported.`,
        );
      });
    });
  d.uploader
    .command("list")
    .description("the enrolled uploaders")
    .action(async () => {
      await d.withStation(async (s) => {
        const list = s.ctx.store.listUploaders().map((u) => ({
          name: u.name,
          fingerprint: u.fingerprint,
          enrolledBy: u.enrolledBy,
          enrolledAt: u.enrolledAt,
          notAfter: new X509Certificate(Buffer.from(u.certDer)).validTo,
        }));
        d.emit(
          { ok: true, uploaders: list },
          list.length
            ? list
                .map(
                  (u) =>
                    `${u.name}: ${u.fingerprint} (enrolled by ${u.enrolledBy} at ${u.enrolledAt})`,
                )
                .join("\n")
            : "No uploaders enrolled.",
        );
      });
    });
}
