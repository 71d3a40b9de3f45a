/** `linesign ca ...`: the CA lifecycle (keys stay in the token). */
import { Option, type Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { KEY_TYPES, parseKeyType } from "../domain/keys.js";
import { viewCa, type CaSigning } from "../app/ca.js";
import { formatCaTable } from "./output.js";
import { readInput, type CommandDeps } from "./io.js";

export function registerCaCommands(program: Command, d: CommandDeps): void {
  const { io, withStation, emit } = d;
  const ca = program.command("ca").description("CA lifecycle (keys stay in the token)");

  ca.command("create")
    .description("generate a CA key in the token and certify it")
    .requiredOption("--label <label>", "name of the CA (and of its key in the token)")
    .addOption(new Option("--key <type>", "key type to generate").choices([...KEY_TYPES]))
    .option(
      "--key-uri <uri>",
      "adopt a key made with the HSM vendor's tool (pkcs11: URI) instead of generating one; its attributes are checked",
    )
    .requiredOption("--subject <dn>", 'distinguished name, e.g. "CN=Line 3 Issuing CA,O=Example"')
    .option("--self-signed", "self-signed CA certificate")
    .option("--csr-out <file>", "write a PKCS#10 request for an offline root instead")
    .option("--root <label>", "have another CA known to the station sign it (key ceremony)")
    .option("--token <label>", "token to generate the key in (default: the station's)")
    .option("--days <n>", "validity in days (default 3650 self-signed, 1825 otherwise)")
    .action(
      async (o: {
        label: string;
        key?: string;
        keyUri?: string;
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
          if (!o.key === !o.keyUri)
            throw new LinesignError(
              "USAGE",
              "Give exactly one of --key TYPE (generate the key in the token) or --key-uri URI (adopt a key there).",
            );
          const result = await s.ca.create({
            label: o.label,
            ...(o.key ? { keyType: parseKeyType(o.key) } : {}),
            ...(o.keyUri ? { keyUri: o.keyUri } : {}),
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
        const cas = s.ca.views();
        emit({ ok: true, cas }, formatCaTable(cas));
      });
    });

  for (const name of ["activate", "deactivate"] as const) {
    ca.command(name)
      .description(
        name === "activate"
          ? "let a CA sign here again (a retired one too)"
          : "stop a CA signing here AND mark it INACTIVE at AWS IoT at the next sync (devices it signed then fail just-in-time registration; to keep them registering use ca retire); refused while a profile issues under it",
      )
      .requiredOption("--label <label>", "the CA")
      .option(
        "--stop-profiles",
        "deactivate: even though profiles issue under it (they stop until rotated; for a compromised CA)",
      )
      .action(async (o: { label: string; stopProfiles?: boolean }) => {
        await withStation(async (s) => {
          const rec =
            name === "activate"
              ? await s.ca.activate(o.label)
              : await s.ca.deactivate(o.label, { stopProfiles: Boolean(o.stopProfiles) });
          emit({ ok: true, ca: viewCa(rec) }, `CA "${rec.label}" is now ${rec.status}.`);
        });
      });
  }

  ca.command("rotate")
    .description(
      "move a profile to another intermediate from its next device on (the old CA keeps its certificates and CRLs)",
    )
    .requiredOption("--profile <name>", "the profile")
    .requiredOption("--to <label>", "the new issuing CA (an active intermediate for devices)")
    .action(async (o: { profile: string; to: string }) => {
      await withStation(async (s) => {
        const before = s.profiles.show(o.profile);
        const p = await s.profiles.rotate(o.profile, o.to);
        const left = s.ca.profilesUsing(before.ca);
        emit(
          { ok: true, profile: p, from: before.ca, to: o.to },
          `Profile "${p.name}" now issues under CA "${o.to}" (was "${before.ca}") from its next device on.
` +
            (left.length
              ? `CA "${before.ca}" still issues for ${left.join(", ")}.`
              : `CA "${before.ca}" issues for no profile now: "linesign ca retire --label ${before.ca}" stops it signing here and keeps it ACTIVE at AWS IoT for devices already shipped; "ca deactivate" also marks it INACTIVE there.`),
        );
      });
    });

  ca.command("retire")
    .description(
      "stop a CA signing here; it stays ACTIVE at AWS IoT so devices it signed keep registering (just-in-time)",
    )
    .requiredOption("--label <label>", "the CA")
    .action(async (o: { label: string }) => {
      await withStation(async (s) => {
        const rec = await s.ca.retire(o.label);
        emit(
          { ok: true, ca: viewCa(rec) },
          `CA "${rec.label}" no longer signs here; it stays ACTIVE at AWS IoT and still signs its CRLs.`,
        );
      });
    });

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
        } else if (d.json()) {
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
        } else if (d.json()) {
          emit({ ok: true, pem }, pem);
        } else {
          io.out(pem);
        }
      });
    });
}
