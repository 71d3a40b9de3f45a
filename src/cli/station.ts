/** `linesign init`, `linesign demo` and `linesign status`: the station as a whole. */
import { basename } from "node:path";
import { Option, type Command } from "commander";
import { KEY_TYPES, type KeyType } from "../domain/keys.js";
import { HEAD_STORE_KINDS } from "../domain/config.js";
import type { HeadStoreKind } from "../app/head-store.js";
import { DEV_OFFICER } from "../app/users.js";
import { describeLineEvent } from "./line.js";
import { checkDemoKiosk, DEMO_OPERATOR, openDemoKiosk, runDemoLine } from "./demo.js";
import { formatStatus } from "./output.js";
import { loadStation, type CommandDeps } from "./io.js";

export function registerStationCommands(program: Command, d: CommandDeps): void {
  const { io, prompt, withStation, emit } = d;
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
    .addOption(
      new Option(
        "--audit-key-type <type>",
        "type of the audit key the token makes for signed checkpoints (a token without elliptic curves needs rsa-2048)",
      ).choices([...KEY_TYPES]),
    )
    .addOption(
      new Option(
        "--head-store <kind>",
        'where the log head is kept: "data-object" on the token (default), or "signed-head" (signed by the audit key, in a file outside the database) for a token that keeps no data objects; token probe says which',
      ).choices([...HEAD_STORE_KINDS]),
    )
    .action(
      async (o: {
        dev?: boolean;
        module?: string;
        tokenLabel?: string;
        stationId?: string;
        auditKeyType?: KeyType;
        headStore?: HeadStoreKind;
      }) => {
        const { initStation } = await loadStation();
        const result = await initStation({
          home: d.home(),
          env: io.env,
          prompt,
          dev: Boolean(o.dev),
          module: o.module,
          tokenLabel: o.tokenLabel,
          stationId: o.stationId,
          auditKeyType: o.auditKeyType,
          headStore: o.headStore,
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
      const { initStation } = await loadStation();
      const result = await initStation({ home: d.home(), env: io.env, prompt, dev: true });
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
      if (!d.json()) io.out(lines.join("\n") + "\n");
      const demo = await withStation((s) => {
        // The development main job runs as the development officer, in that officer's session.
        s.signInProcess({ name: DEV_OFFICER.name, role: "officer" });
        return runDemoLine(s, (e) => {
          if (!d.json()) io.out(`  ${basename(e.port).padEnd(14)} ${describeLineEvent(e)}\n`);
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
      const failed = Boolean(summary && summary.failed > 0);
      if (failed) d.setExitCode(1);
      if (!o.kiosk || failed) {
        emit({ ok: !failed, ...result, line: demo }, after.join("\n"));
        return;
      }
      if (!d.json()) io.out(after.slice(0, 2).join("\n") + "\n");
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
        `The kiosk (${kiosk.shell === "electron" ? "opened in Electron's window" : "Electron's runtime is not installed here: open it in Chromium with npx linesign kiosk"}):`,
        `  npx linesign kiosk   (Chromium's kiosk mode on a one-time address: the service's secret is on no command line and in no browser profile)`,
        `  The page is served at ${new URL(kiosk.url).origin}/ (it answers calls only once opened that way).`,
        `  ${kiosk.ports.length} serial ports with simulated devices attached (${kiosk.ports.map((p) => basename(p)).join(", ")}).`,
        `  1. Sign in as ${DEV_OFFICER.name} / ${DEV_OFFICER.passphrase}; Signing session: enter the token PIN (development: 246810).`,
        `  2. Hand over (the session stays open), sign in as ${DEMO_OPERATOR.name} / ${DEMO_OPERATOR.passphrase}; start the line on work order "dev".`,
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
        const status = { ...s.status(), tokenFacts: await s.tokenFacts() };
        emit({ ok: true, home: s.home.dir, ...status }, formatStatus(status));
      });
    });
}
