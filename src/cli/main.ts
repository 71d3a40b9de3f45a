/**
 * The `linesign` command. Exit codes: 0 done; 1 refused or failed (the message
 * says why and what to do); 2 usage error. With --json, stdout carries exactly
 * one JSON object per command ({ ok: true, ... } or { ok: false, error }).
 * PINs are never options: they come from the environment or a terminal prompt.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { COMMAND_ROLES } from "../domain/roles.js";
import { LinesignError, toLinesignError } from "../domain/errors.js";
import { KEY_TYPES, parseKeyType } from "../domain/keys.js";
import { parseRevocationReason, REVOCATION_REASONS } from "../domain/revocation.js";
import { initStation, openStation, type Station } from "../compose.js";
import type { CaSigning } from "../app/ca.js";
import { viewCa } from "../app/ca.js";
import { DEV_OFFICER } from "../app/users.js";
import { promptSecret } from "./prompt.js";
import { runBench } from "./bench.js";
import { describeLineEvent, registerLineCommands } from "./line.js";
import { checkDemoKiosk, DEMO_OPERATOR, openDemoKiosk, runDemoLine } from "./demo.js";
import { registerServeCommand } from "./serve.js";
import { registerSyncCommands } from "./sync.js";
import { exportAudit, verifyAuditBundle, type AuditBundle } from "../app/audit-export.js";
import { buildReport, type ReportGroup } from "../app/report.js";
import { basename } from "node:path";
import {
  formatAuditTable,
  formatStatus,
  formatCaTable,
  isoTime,
  pemCertificate,
  toCsv,
  eventsCsv,
  writeOutput,
} from "./output.js";

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** True when a person can be asked for a PIN. */
  interactive: boolean;
  /** True when stdout is a terminal (live progress is redrawn in place). */
  terminal?: boolean;
}

const AUDIT_STATUSES = [
  "ISSUED",
  "DELIVERED",
  "CONFIRMED",
  "DELIVERY_FAILED",
  "SUPERSEDED",
  "REVOKED",
  "REJECTED",
] as const;

const defaultIo = (): CliIo => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
  terminal: Boolean(process.stdout.isTTY),
});

interface GlobalOpts {
  home?: string;
  json?: boolean;
}

function readInput(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (cause) {
    throw new LinesignError("FILE_READ_FAILED", `Cannot read ${what} ${path}: check the path.`, {
      cause,
      details: { path },
    });
  }
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
  });
  const withStation = async <T>(fn: (s: Station) => Promise<T>): Promise<T> => {
    const station = openStation({ home: globals().home, env: io.env, prompt });
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
      await station.close();
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

  program
    .command("init")
    .description(
      "create the station home (config, database); --dev also makes a SoftHSM token, a development root and the active CA dev-ica",
    )
    .option("--dev", "development station: SoftHSM token linesign-dev, development root, dev-ica")
    .option("--module <path>", "PKCS#11 module (default $LINESIGN_PKCS11_MODULE or SoftHSM2's)")
    .option(
      "--token-label <label>",
      "label of the token holding the CA keys (default $LINESIGN_TOKEN_LABEL)",
    )
    .option(
      "--station-id <id>",
      "name of this station in logs and exports (default from the host name)",
    )
    .action(
      async (o: { dev?: boolean; module?: string; tokenLabel?: string; stationId?: string }) => {
        const result = await initStation({
          home: globals().home,
          env: io.env,
          prompt,
          dev: Boolean(o.dev),
          module: o.module,
          tokenLabel: o.tokenLabel,
          stationId: o.stationId,
        });
        const changed = result.createdHome || (result.dev?.created.length ?? 0) > 0;
        const lines = [
          changed
            ? `Station home ${result.home} is ready.`
            : `Station home ${result.home} was already set up; nothing was changed.`,
          ...(result.dev?.created ?? []).map((c) => `  created: ${c}`),
          ...(result.dev?.present ?? []).map((c) => `  already present: ${c}`),
          "",
          formatStatus(result.status),
        ];
        emit({ ok: true, changed, ...result }, lines.join("\n"));
      },
    );

  program
    .command("demo")
    .description(
      "the development main job: set up (or reuse) a development station, provision simulated devices on pty pairs, then open the kiosk with simulated devices attached",
    )
    .option("--no-kiosk", "stop after the simulated line; do not open the kiosk")
    .action(async (o: { kiosk: boolean }) => {
      const result = await initStation({ home: globals().home, env: io.env, prompt, dev: true });
      const ica = result.status.cas.find((c) => c.label === "dev-ica");
      const lines = [
        `Linesign development station at ${result.home}`,
        (result.dev?.created.length ?? 0) > 0 || result.createdHome
          ? `  set up now: ${result.dev?.created.join("; ") || "home and database"}`
          : "  already set up: nothing was changed",
        `  token "${result.status.token.label}": ${result.status.token.present ? "present" : "MISSING"}`,
        `  CA dev-ica: ${ica ? `${ica.status}, ${ica.keyType}, key in the token (${ica.keyUri})` : "missing"}`,
        "",
        "Simulated devices on three serial ports (socat pty pairs), 115200 baud:",
      ];
      if (!json) io.out(lines.join("\n") + "\n");
      const demo = await withStation((s) => {
        // The development main job runs as the development officer, in that officer's session.
        s.signInProcess({ name: DEV_OFFICER.name, role: "officer" });
        return runDemoLine(s, (e) => {
          if (!json) io.out(`  ${basename(e.port).padEnd(14)} ${describeLineEvent(e)}\n`);
        });
      });
      const summary = demo.summary;
      const after = [
        summary
          ? `  ${summary.confirmed} of ${summary.devices} devices provisioned and confirmed in ${(summary.durationMs / 1000).toFixed(1)} s${summary.failed ? `; ${summary.failed} FAILED` : ""}.`
          : `  skipped: ${demo.skipped}`,
        "",
        `Try: npx linesign --home ${result.home} audit log`,
        `     npx linesign --home ${result.home} audit verify`,
        `     npm run device-sim -- --help   (and linesign line run --port PATH)`,
      ];
      if (summary && summary.failed > 0) exitCode = 1;
      if (!o.kiosk || exitCode !== 0) {
        emit({ ok: exitCode === 0, ...result, line: demo }, after.join("\n"));
        return;
      }
      if (!json) io.out(after.slice(0, 2).join("\n") + "\n");
      // On a terminal the kiosk stays open until Ctrl-C; elsewhere (CI) it is checked and closed.
      const keepOpen = Boolean(io.terminal && io.interactive);
      const kiosk = await openDemoKiosk({ home: result.home, env: io.env, openElectron: keepOpen });
      if ("skipped" in kiosk) {
        emit(
          { ok: true, ...result, line: demo, kiosk },
          [...after, `Kiosk skipped: ${kiosk.skipped}`].join("\n"),
        );
        return;
      }
      const how = [
        `The kiosk (${kiosk.shell === "electron" ? "opened in Electron's window" : "Electron's runtime is not installed here: open this address in Chromium"}):`,
        `  ${kiosk.url}`,
        `  ${kiosk.ports.length} serial ports with simulated devices attached (${kiosk.ports.map((p) => basename(p)).join(", ")}).`,
        `  1. Sign in as ${DEV_OFFICER.name} / ${DEV_OFFICER.passphrase}; Signing session: enter the token PIN (development: 246810).`,
        `  2. Hand over (the session stays open), sign in as ${DEMO_OPERATOR.name} / ${DEMO_OPERATOR.passphrase}; start the line on work order "dev".`,
        `  Chromium's own kiosk mode: chromium --kiosk "$(cat ${result.home}/run/kiosk.url)"`,
      ];
      try {
        if (keepOpen) {
          io.out(how.join("\n") + "\nCtrl-C closes the kiosk and stops the station service.\n");
          await new Promise<void>((resolve) => {
            process.once("SIGINT", () => resolve());
            process.once("SIGTERM", () => resolve());
          });
          emit(
            { ok: true, ...result, line: demo, kiosk: { url: kiosk.url, shell: kiosk.shell } },
            "Kiosk closed.",
          );
        } else {
          const checked = await checkDemoKiosk(kiosk.url);
          emit(
            {
              ok: true,
              ...result,
              line: demo,
              kiosk: { url: kiosk.url, shell: kiosk.shell, checked },
            },
            [
              ...how,
              `  Checked: ${checked}. Not on a terminal, so the kiosk was closed again;`,
              `  keep one open with: npx linesign demo (on a terminal), or npx linesign serve --ui --port PATH`,
              "",
              ...after.slice(2),
            ].join("\n"),
          );
        }
      } finally {
        await kiosk.close();
      }
    });

  program
    .command("status")
    .description("summarise the station: token, CAs, event log")
    .action(async () => {
      await withStation(async (s) => {
        const status = s.status();
        emit({ ok: true, home: s.home.dir, ...status }, formatStatus(status));
      });
    });

  const ca = program.command("ca").description("CA lifecycle (keys stay in the token)");

  ca.command("create")
    .description("generate a CA key in the token and certify it")
    .requiredOption("--label <label>", "name of the CA (and of its key in the token)")
    .addOption(new Option("--key <type>", "key type").choices([...KEY_TYPES]).makeOptionMandatory())
    .requiredOption("--subject <dn>", 'distinguished name, e.g. "CN=Line 3 Issuing CA,O=Example"')
    .option("--self-signed", "self-signed CA certificate")
    .option("--csr-out <file>", "write a PKCS#10 request for an offline root instead")
    .option("--root <label>", "have another CA known to the station sign it (key ceremony)")
    .option("--token <label>", "token to generate the key in (default: the station's)")
    .option("--days <n>", "validity in days (default 3650 self-signed, 1825 otherwise)")
    .action(
      async (o: {
        label: string;
        key: string;
        subject: string;
        selfSigned?: boolean;
        csrOut?: string;
        root?: string;
        token?: string;
        days?: string;
      }) => {
        const modes = [o.selfSigned ? 1 : 0, o.csrOut ? 1 : 0, o.root ? 1 : 0].reduce(
          (a, b) => a + b,
          0,
        );
        if (modes !== 1)
          throw new LinesignError(
            "USAGE",
            "Give exactly one of --self-signed, --csr-out FILE or --root LABEL.",
          );
        const signing: CaSigning = o.selfSigned
          ? { mode: "self-signed" }
          : o.csrOut
            ? { mode: "csr" }
            : { mode: "root", rootLabel: o.root! };
        const days = o.days === undefined ? undefined : Number(o.days);
        await withStation(async (s) => {
          const result = await s.ca.create({
            label: o.label,
            keyType: parseKeyType(o.key),
            subject: o.subject,
            signing,
            days,
            tokenLabel: o.token,
          });
          if (o.csrOut && result.csrPem) s.home.writeFile(o.csrOut, result.csrPem, 0o644);
          const view = viewCa(result.ca);
          emit(
            { ok: true, ca: view, ...(o.csrOut ? { csrOut: o.csrOut } : {}) },
            o.csrOut
              ? `CA "${view.label}" created with its key in the token; request written to ${o.csrOut}.\nHave the offline root sign it, then: linesign ca import --label ${view.label} --cert FILE [--chain FILE]`
              : `CA "${view.label}" created and ${view.status}: ${view.subject}\n  key: ${view.keyUri}\n  valid until ${view.notAfter}`,
          );
        });
      },
    );

  ca.command("import")
    .description("install the certificate an offline root signed for a CA made with --csr-out")
    .requiredOption("--label <label>", "the CA")
    .requiredOption("--cert <file>", "its certificate (PEM or DER)")
    .option("--chain <file>", "the issuer chain, nearest issuer first, up to the root (PEM)")
    .action(async (o: { label: string; cert: string; chain?: string }) => {
      const cert = readInput(o.cert, "the certificate file");
      const chain = o.chain ? readInput(o.chain, "the chain file") : undefined;
      await withStation(async (s) => {
        const rec = await s.ca.import(o.label, cert, chain);
        emit(
          { ok: true, ca: viewCa(rec) },
          `CA "${rec.label}" now has its certificate and is ${rec.status}.`,
        );
      });
    });

  ca.command("list")
    .description("list the station's CAs")
    .action(async () => {
      await withStation(async (s) => {
        const cas = s.ca.list().map(viewCa);
        emit({ ok: true, cas }, formatCaTable(cas));
      });
    });

  for (const [name, verb] of [
    ["activate", "active"],
    ["deactivate", "inactive"],
  ] as const) {
    ca.command(name)
      .description(`mark a CA ${verb}`)
      .requiredOption("--label <label>", "the CA")
      .action(async (o: { label: string }) => {
        await withStation(async (s) => {
          const rec =
            name === "activate" ? await s.ca.activate(o.label) : await s.ca.deactivate(o.label);
          emit({ ok: true, ca: viewCa(rec) }, `CA "${rec.label}" is now ${rec.status}.`);
        });
      });
  }

  ca.command("export")
    .description("write a CA certificate (and with --chain its issuers up to the root) as PEM")
    .requiredOption("--label <label>", "the CA")
    .option("--chain", "append the chain up to the root")
    .option("--out <file>", "write to a file instead of stdout")
    .action(async (o: { label: string; chain?: boolean; out?: string }) => {
      await withStation(async (s) => {
        const pem = await s.ca.export(o.label, Boolean(o.chain));
        if (o.out) {
          s.home.writeFile(o.out, pem, 0o644);
          emit({ ok: true, out: o.out }, `Wrote ${o.out}.`);
        } else if (json) {
          emit({ ok: true, pem }, pem);
        } else {
          io.out(pem);
        }
      });
    });

  ca.command("verification-cert")
    .description(
      "make the AWS IoT verification certificate (CN = registration code), signed by the CA key in the token",
    )
    .requiredOption("--label <label>", "the CA to prove ownership of")
    .requiredOption(
      "--registration-code <code>",
      "from 'aws iot get-registration-code' (64 hex characters)",
    )
    .option("--out <file>", "write to a file instead of stdout")
    .action(async (o: { label: string; registrationCode: string; out?: string }) => {
      await withStation(async (s) => {
        const pem = await s.ca.verificationCertificate(o.label, o.registrationCode);
        if (o.out) {
          s.home.writeFile(o.out, pem, 0o644);
          emit({ ok: true, out: o.out }, `Wrote the verification certificate to ${o.out}.`);
        } else if (json) {
          emit({ ok: true, pem }, pem);
        } else {
          io.out(pem);
        }
      });
    });

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
    .action(async (o: { token?: string }) => {
      await withStation(async (s) => {
        const label = o.token ?? s.ctx.tokenLabel;
        const soPin =
          io.env.LINESIGN_SO_PIN ??
          (prompt ? await prompt(`SO PIN for token "${label}": `) : undefined);
        if (!soPin)
          throw new LinesignError(
            "HSM_PIN_REQUIRED",
            "The SO PIN is needed: set LINESIGN_SO_PIN, or run on a terminal to be asked.",
          );
        await s.tokens.unlock(label, soPin, io.env.LINESIGN_NEW_USER_PIN || undefined);
        emit(
          { ok: true, token: label },
          `Token "${label}" is unlocked for the station${io.env.LINESIGN_NEW_USER_PIN ? " and has a new user PIN" : ""}.`,
        );
      });
    });

  program
    .command("issue")
    .description("one-off issuance from a CSR file, recorded like any other")
    .requiredOption("--csr <file>", "the device's PKCS#10 request (PEM or DER)")
    .option("--profile <name>", "certificate profile (default: the station's default profile)")
    .option("--device-id <id>", "the device id; must match the CSR's CN when it has one")
    .option("--out <file>", "write the certificate here (default: stdout)")
    .option("--chain", "append the issuer chain up to the root")
    .action(
      async (o: {
        csr: string;
        profile?: string;
        deviceId?: string;
        out?: string;
        chain?: boolean;
      }) => {
        const csr = readInput(o.csr, "the CSR file");
        await withStation(async (s) => {
          const issued = await s.issuance.issue({
            csr,
            profile: o.profile,
            deviceId: o.deviceId ?? null,
            origin: o.out ? `file:${o.out}` : "stdout",
          });
          const ders = o.chain
            ? [issued.issuance.certDer, ...issued.chainDer]
            : [issued.issuance.certDer];
          const pem = ders.map(pemCertificate).join("");
          try {
            if (o.out) s.home.writeFile(o.out, pem, 0o644);
            else if (!json) io.out(pem);
          } catch (e) {
            await s.issuance.markDeliveryFailed(
              issued.issuance.id,
              "the output file could not be written",
            );
            throw e;
          }
          const rec = await s.issuance.markDelivered(issued.issuance.id);
          const summary = {
            ok: true,
            issuance: rec.id,
            deviceId: rec.deviceId,
            serial: rec.serial,
            fingerprint: rec.fingerprint,
            notAfter: rec.notAfter,
            validityCut: rec.validityCut,
            state: rec.state,
            redelivery: issued.redelivery,
            ...(o.out ? { out: o.out } : { pem }),
          };
          if (json) emit(summary, "");
          else if (o.out)
            emit(
              summary,
              `Issued ${rec.deviceId} (serial ${rec.serial}) to ${o.out}${rec.validityCut ? "; validity was cut at the CA's own end of validity" : ""}.`,
            );
        });
      },
    );

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
          if (json || o.format === "json") io.out(JSON.stringify({ ok: true, rows }) + "\n");
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
    .addOption(
      new Option("--format <format>", "with --bundle: text, json, or the events as csv")
        .choices(["text", "json", "csv"])
        .default("text"),
    )
    .action(async (o: { bundle?: string; trust?: string; format: string }) => {
      if (o.bundle) {
        const bytes = readInput(o.bundle, "the audit export");
        const trust = o.trust
          ? Buffer.from(readInput(o.trust, "the station certificate")).toString("utf8")
          : undefined;
        const verdict = await verifyAuditBundle(bytes, trust);
        if (o.format === "csv") {
          const events = (JSON.parse(Buffer.from(bytes).toString("utf8")) as AuditBundle).events;
          io.out(eventsCsv(events));
        } else if (json || o.format === "json") io.out(JSON.stringify(verdict) + "\n");
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
        if (!verdict.ok) exitCode = 1;
        return;
      }
      await withStation(async (s) => {
        const verdict = await s.audit.verify();
        emit({ ...verdict }, verdict.message);
        if (!verdict.ok) exitCode = 1;
      });
    });
  audit
    .command("report")
    .description(
      "per work order, operator and port: issued, confirmed, unconfirmed (listed), rejected by reason, re-issued, revoked, uploaded per target",
    )
    .option("--since <time>", "from this time (ISO 8601)")
    .option("--until <time>", "before this time (ISO 8601)")
    .action(async (o: { since?: string; until?: string }) => {
      await withStation(async (s) => {
        const r = buildReport(s.ctx, {
          since: isoTime(o.since, "--since"),
          until: isoTime(o.until, "--until"),
        });
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
            ? "Delivered but never confirmed (possibly on a device without confirmation):"
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

  registerServeCommand(program, {
    io,
    json: () => json || Boolean(globals().json),
    home: () => globals().home,
  });

  registerLineCommands(program, {
    io,
    json: () => json || Boolean(globals().json),
    withStation,
    emit,
    setExitCode: (c) => (exitCode = c),
    liveTerminal: Boolean(io.terminal),
  });

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
                `${u.name}  ${u.role}${u.disabled ? "  DISABLED" : ""}${u.locked ? "  LOCKED" : ""}`,
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

  const wo = program
    .command("work-order")
    .description("what the line may provision: a profile, a quantity, device ids, a window");
  wo.command("create")
    .description("open a work order")
    .requiredOption("--profile <name>", "certificate profile")
    .requiredOption("--quantity <n>", "how many devices")
    .option("--id <id>", "its id (default wo-NNNN)")
    .option("--pattern <regex>", "device ids must match this in full")
    .option("--devices <file>", "only these device ids (one per line)")
    .option("--from <time>", "not before (ISO 8601)")
    .option("--until <time>", "not after (ISO 8601)")
    .action(
      async (o: {
        profile: string;
        quantity: string;
        id?: string;
        pattern?: string;
        devices?: string;
        from?: string;
        until?: string;
      }) => {
        const devices = o.devices
          ? Buffer.from(readInput(o.devices, "the device list"))
              .toString("utf8")
              .split(/\r?\n/)
              .map((l) => l.trim())
              .filter(Boolean)
          : undefined;
        await withStation(async (s) => {
          const view = await s.workOrders.create({
            profile: o.profile,
            quantity: Number(o.quantity),
            ...(o.id ? { id: o.id } : {}),
            ...(o.pattern ? { pattern: o.pattern } : {}),
            ...(devices ? { devices } : {}),
            ...(o.from ? { notBefore: isoTime(o.from, "--from")! } : {}),
            ...(o.until ? { notAfter: isoTime(o.until, "--until")! } : {}),
          });
          emit(
            { ok: true, workOrder: view },
            `Work order ${view.id} is open: ${view.quantity} device(s) under profile "${view.profile}".`,
          );
        });
      },
    );
  wo.command("list")
    .description("work orders with their counts")
    .action(async () => {
      await withStation(async (s) => {
        const list = s.workOrders.list();
        emit(
          { ok: true, workOrders: list },
          list.length
            ? list
                .map(
                  (w) =>
                    `${w.id}  ${w.status}  profile ${w.profile}  ${w.issued}/${w.quantity} issued${w.pattern ? `  ids ${w.pattern}` : ""}${w.notAfter ? `  until ${w.notAfter}` : ""}`,
                )
                .join("\n")
            : "No work orders.",
        );
      });
    });
  wo.command("close")
    .description("close a work order (the line stops taking its devices)")
    .requiredOption("--id <id>", "the work order")
    .action(async (o: { id: string }) => {
      await withStation(async (s) => {
        const view = await s.workOrders.close(o.id);
        emit(
          { ok: true, workOrder: view },
          `Work order ${view.id} is closed (${view.issued} issued).`,
        );
      });
    });

  program
    .command("revoke")
    .description(
      "revoke a certificate (or a device's certificates): recorded, queued for every target where it was registered, and in the next CRL",
    )
    .option("--serial <hex>", "the certificate's serial number")
    .option("--device-id <id>", "every certificate of this device that is not revoked yet")
    .requiredOption(
      "--reason <reason>",
      `RFC 5280 reason: ${Object.keys(REVOCATION_REASONS).join(", ")}`,
    )
    .action(async (o: { serial?: string; deviceId?: string; reason: string }) => {
      if (Boolean(o.serial) === Boolean(o.deviceId))
        throw new LinesignError("USAGE", "Give exactly one of --serial S or --device-id ID.");
      const reason = parseRevocationReason(o.reason);
      await withStation(async (s) => {
        const r = await s.revocation.revoke(
          o.serial ? { serial: o.serial } : { deviceId: o.deviceId! },
          reason,
        );
        emit(
          { ok: true, reason, ...r },
          r.revoked
            .map((x) => `Revoked ${x.deviceId} (serial ${x.serial}, CA ${x.ca}): ${reason}.`)
            .join("\n") +
            "\nIt goes to AWS IoT at the next sync, and into the next CRL (linesign crl --ca LABEL).",
        );
      });
    });

  const reissue = program
    .command("reissue")
    .description("approve one more certificate for a device that has a live one");
  reissue
    .command("approve")
    .description(
      "let the device's next issuance supersede its live certificate once, where its profile does not allow re-issue",
    )
    .requiredOption("--device-id <id>", "the device")
    .requiredOption("--reason <text>", "why it needs another certificate (recorded)")
    .action(async (o: { deviceId: string; reason: string }) => {
      await withStation(async (s) => {
        const a = await s.reissue.approve(o.deviceId, o.reason);
        emit(
          { ok: true, approval: a },
          `Approved one re-issue for ${a.deviceId} (approval ${a.id}): its next certificate supersedes the live one.`,
        );
      });
    });
  reissue
    .command("list")
    .description("re-issue approvals, used and unused")
    .action(async () => {
      await withStation(async (s) => {
        const all = s.reissue.list();
        emit(
          { ok: true, approvals: all },
          all.length === 0
            ? "No re-issue approvals."
            : all
                .map(
                  (a) =>
                    `${String(a.id).padStart(4)}  ${a.deviceId}  by ${a.approvedBy} at ${a.approvedAt}: ${a.reason}  ${a.usedAt ? `used by issuance ${a.issuanceId} at ${a.usedAt}` : "UNUSED"}`,
                )
                .join("\n"),
        );
      });
    });

  program
    .command("crl")
    .description(
      "sign the CA's next certificate revocation list in the token (RFC 5280, with reason codes)",
    )
    .requiredOption("--ca <label>", "the CA")
    .option("--out <file>", "write the CRL (PEM) to a file instead of stdout")
    .option("--days <n>", "until the next update", "7")
    .action(async (o: { ca: string; out?: string; days: string }) => {
      await withStation(async (s) => {
        const r = await s.revocation.crl(o.ca, Number(o.days));
        if (o.out) {
          s.home.writeFile(o.out, r.pem, 0o644);
          emit(
            {
              ok: true,
              out: o.out,
              ca: r.ca,
              number: r.number,
              entries: r.entries,
              thisUpdate: r.thisUpdate,
              nextUpdate: r.nextUpdate,
            },
            `Wrote CRL number ${r.number} of CA "${r.ca}" (${r.entries} revoked) to ${o.out}; next update ${r.nextUpdate}.`,
          );
        } else if (json) emit({ ok: true, ...r }, r.pem);
        else io.out(r.pem);
      });
    });

  registerSyncCommands(program, {
    io,
    json: () => json || Boolean(globals().json),
    withStation,
    emit,
    setExitCode: (c) => (exitCode = c),
  });

  program
    .command("bench")
    .description(
      "measure HSM signing and end-to-end issuance on a throwaway token (figures only, never a pass/fail)",
    )
    .option("--count <n>", "issuances per CA key type", "1000")
    .option(
      "--line-devices <n>",
      "simulated devices per port for the serial line figures (0 skips them)",
      "50",
    )
    .option(
      "--sync-certs <n>",
      "device certificates registered with the AWS IoT emulator at 200 requests/s (0 skips)",
      "10000",
    )
    .action(async (o: { count: string; lineDevices: string; syncCerts: string }) => {
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 10 || count > 1_000_000)
        throw new LinesignError("USAGE", "--count must be a whole number from 10 to 1000000.");
      const lineDevices = Number(o.lineDevices);
      if (!Number.isInteger(lineDevices) || lineDevices < 0 || lineDevices > 10_000)
        throw new LinesignError("USAGE", "--line-devices must be a whole number from 0 to 10000.");
      const syncCerts = Number(o.syncCerts);
      if (!Number.isInteger(syncCerts) || syncCerts < 0 || syncCerts > 1_000_000)
        throw new LinesignError("USAGE", "--sync-certs must be a whole number from 0 to 1000000.");
      await runBench(io, { json, count, lineDevices, syncCerts });
    });

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
