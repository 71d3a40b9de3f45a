/**
 * The online machine's commands: `linesign upload` and `linesign uploader
 * init`. They need no station: bin/linesign.js runs them through `runOnline`
 * without loading the station's modules (PKCS#11, SQLite, serial port), so an
 * online machine with only Node, this package and AWS credentials can run
 * them. The full CLI registers the same commands.
 */
import { Command, CommanderError } from "commander";
import { LinesignError, toLinesignError } from "../domain/errors.js";
import type { TargetSummary } from "../app/sync/target-sync.js";
import type { CliIo } from "./io.js";
import {
  initUploader,
  loadAwsSdk,
  loadUploader,
  readFileBounded,
  READ_LIMITS,
  uploadOfflineBundle,
  uploaderDir,
  verifyOfflineBundle,
  writeFileAtomic,
} from "../compose-online.js";
import { MAX_BUNDLE_BYTES } from "../app/sync/bundle-format.js";

export interface OnlineCliDeps {
  io: CliIo;
  json: () => boolean;
  emit: (value: Record<string, unknown>, text: string) => void;
  setExitCode: (code: number) => void;
}

/** The first argument that is not a global option: the command's name. */
export function commandOf(argv: string[]): string[] {
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--home") i++;
    else if (argv[i] !== "--json") rest.push(argv[i]!);
  }
  return rest.slice(0, 2);
}

/** Whether `argv` names one of the online commands (run without the station). */
export function isOnlineCommand(argv: string[]): boolean {
  const [a, b] = commandOf(argv);
  return a === "upload" || (a === "uploader" && b === "init");
}

export function summaryText(s: TargetSummary): string {
  return [
    `${s.target} (${s.account ? `account ${s.account}, ` : ""}${s.region}, ${s.caMode}, ${s.deviceRegistration}) via ${s.where.endpoint} (${s.where.endpointSource}), ${s.where.profile ? `profile ${s.where.profile}` : "default credentials"}: CAs ${s.cas.registered} registered, ${s.cas.already} already there, ${s.cas.failed} failed, ${s.cas.statusChanges} status changes; devices ${s.devices.registered} registered, ${s.devices.already} already there, ${s.devices.leftToJitr} left to JITR, ${s.devices.failed} failed, ${s.devices.deferred} deferred; ${s.revoked} revoked${s.identity.things + s.identity.principals + s.identity.policies + s.identity.groups + s.identity.failed + s.identity.detached > 0 ? `; identity: ${s.identity.things} Things, ${s.identity.principals} attached to their Thing, ${s.identity.policies} policies attached, ${s.identity.groups} added to groups, ${s.identity.complete} complete, ${s.identity.failed} failed, ${s.identity.deferred} deferred, ${s.identity.detached} detached` : ""}; ${s.requests} requests`,
    ...s.notes.map((n) => `  note: ${n}`),
  ].join("\n");
}

const readBounded = (path: string, what: string, limit: number): Buffer =>
  Buffer.from(readFileBounded(path, what, limit));

/** Registers `upload` and `uploader init`; returns the `uploader` command for the station's subcommands. */
export function registerOnlineCommands(program: Command, d: OnlineCliDeps): Command {
  program
    .command("upload")
    .description(
      "online machine (no HSM, no station): check a station's bundle and register it with AWS IoT",
    )
    .argument("<file>", "the bundle from 'linesign export'")
    .requiredOption(
      "--trust <cert>",
      "the station's certificate ('linesign station-cert' at the station)",
    )
    .option("--endpoint <url>", "another AWS IoT endpoint than the bundle's target names")
    .option("--profile <aws-profile>", "this machine's AWS profile (default: its default chain)")
    .option("--region <region>", "another region than the bundle's target names")
    .option("--identity <dir>", "the uploader's folder (default: ~/.linesign-uploader)")
    .option("--receipt <file>", "where to write the receipt (default: FILE.receipt.json)")
    .option("--verify-only", "check signature, station identity and hashes; send nothing")
    .action(
      async (
        file: string,
        o: {
          trust: string;
          endpoint?: string;
          profile?: string;
          region?: string;
          identity?: string;
          receipt?: string;
          verifyOnly?: boolean;
        },
      ) => {
        // An upload sends paced requests: the SDK is loaded first, before the bundle is read
        // (when the command runs, not for its --help).
        if (!o.verifyOnly) await loadAwsSdk();
        const bundle = readBounded(
          file,
          "the bundle",
          Math.min(READ_LIMITS.bundle, MAX_BUNDLE_BYTES),
        );
        const trust = readBounded(
          o.trust,
          "the station certificate",
          READ_LIMITS.certificate,
        ).toString("utf8");
        if (o.verifyOnly) {
          const m = verifyOfflineBundle(bundle, trust);
          const expiry = m.cas
            .map((c) => c.verification?.notAfter)
            .filter((x): x is string => Boolean(x))
            .sort()[0];
          d.emit(
            {
              ok: true,
              verified: true,
              bundle: m.id,
              station: m.station,
              target: m.target,
              cas: m.cas.length,
              devices: m.devices.length,
              revocations: m.revocations.length + m.revokedUnregistered.length,
              verificationExpiry: expiry ?? null,
            },
            `Bundle ${m.id} from station "${m.station}" for target "${m.target}" checks out (signature, station identity, hashes): ${m.cas.length} CA(s), ${m.devices.length} device certificate(s), ${m.revocations.length + m.revokedUnregistered.length} revocation(s)${expiry ? `; its verification certificates expire at ${expiry}` : ""}. Nothing was sent.`,
          );
          return;
        }
        const identity = loadUploader(uploaderDir(o.identity, d.io.env));
        const json = d.json();
        const { file: receipt, body } = await uploadOfflineBundle(bundle, trust, identity, {
          ...(o.endpoint ? { endpoint: o.endpoint } : {}),
          ...(o.profile ? { profile: o.profile } : {}),
          ...(o.region ? { region: o.region } : {}),
          onItem: (e) => {
            if (json) d.io.out(JSON.stringify({ event: "item", ...e }) + "\n");
            else if (e.outcome === "failed")
              d.io.out(`${e.kind} ${e.ref}: ${e.message ?? e.code}\n`);
          },
        });
        const out = o.receipt ?? `${file}.receipt.json`;
        writeFileAtomic(out, JSON.stringify(receipt, null, 2) + "\n");
        const s = body.summary as unknown as TargetSummary;
        const ok = s.failedForGood === 0 && s.devices.deferred === 0 && !s.credentialsRefused;
        if (json)
          d.io.out(
            JSON.stringify({ event: "summary", ok, receipt: out, receiptId: body.id, ...s }) + "\n",
          );
        else
          d.io.out(
            `${summaryText(s)}\nReceipt ${body.id} written to ${out} (signed by this uploader): carry it to the station and run "linesign import-receipt ${out}".\n`,
          );
        if (!ok) d.setExitCode(1);
      },
    );
  const uploader = program
    .command("uploader")
    .description("the online uploader's own identity, which signs its receipts");
  uploader
    .command("init")
    .description("online machine, once: make the uploader's key and certificate")
    .requiredOption("--name <name>", "a name for this uploader (e.g. the machine's)")
    .option("--identity <dir>", "the uploader's folder (default: ~/.linesign-uploader)")
    .action(async (o: { name: string; identity?: string }) => {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.name))
        throw new LinesignError(
          "USAGE",
          "--name takes letters, digits, '.', '_' or '-' (at most 64).",
        );
      const dir = uploaderDir(o.identity, d.io.env);
      const { certPath } = await initUploader(dir, o.name);
      d.emit(
        { ok: true, name: o.name, cert: certPath },
        `Uploader "${o.name}" made in ${dir}. Carry ${certPath} to the station, where an officer runs "linesign uploader enroll --name ${o.name} --cert uploader.pem".`,
      );
    });
  return uploader;
}

/** Runs an online command without the station; resolves to the exit code. */
export async function runOnline(argv: string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  const json = argv.includes("--json");
  const program = new Command("linesign")
    .option("--home <dir>", "unused by the online commands")
    .option("--json", "machine-readable output: one JSON object on stdout")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError(false);
  registerOnlineCommands(program, {
    io,
    json: () => json,
    emit: (value, text) =>
      io.out(json ? JSON.stringify(value) + "\n" : text.endsWith("\n") ? text : text + "\n"),
    setExitCode: (c) => (exitCode = c),
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const err = toLinesignError(e);
    if (json)
      io.out(
        JSON.stringify({
          ok: false,
          error: { code: err.code, message: err.message, details: err.details },
        }) + "\n",
      );
    else io.err(`linesign: ${err.message} [${err.code}]\n`);
    return err.code === "USAGE" ? 2 : 1;
  }
}

/** The process's own terminal and environment. */
export const processIo = (): CliIo => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
  terminal: Boolean(process.stdout.isTTY),
});
