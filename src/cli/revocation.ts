/** `linesign revoke`, `linesign reissue ...` and `linesign crl`. */
import type { Command } from "commander";
import { LinesignError } from "../domain/errors.js";
import { parseRevocationReason, REVOCATION_REASONS } from "../domain/revocation.js";
import type { CommandDeps } from "./io.js";

export function registerRevocationCommands(program: Command, d: CommandDeps): void {
  const { io, withStation, emit } = d;
  program
    .command("revoke")
    .description(
      "revoke a certificate (or a device's certificates): recorded, queued for every target where it was registered, and in the next CRL",
    )
    .option("--serial <hex>", "the certificate's serial number")
    .option("--device-id <id>", "every certificate of this device that is not revoked yet")
    .option(
      "--unconfirmed",
      "revoke what profiles with revokeUnconfirmedAfterHours say is overdue (also done when a line starts)",
    )
    .option("--reason <reason>", `RFC 5280 reason: ${Object.keys(REVOCATION_REASONS).join(", ")}`)
    .action(
      async (o: { serial?: string; deviceId?: string; unconfirmed?: boolean; reason?: string }) => {
        if ([o.serial, o.deviceId, o.unconfirmed].filter(Boolean).length !== 1)
          throw new LinesignError(
            "USAGE",
            "Give exactly one of --serial S, --device-id ID or --unconfirmed.",
          );
        if (o.unconfirmed) {
          await withStation(async (s) => {
            const r = s.revocation.revokeUnconfirmed(s.config.profiles);
            emit(
              { ok: true, ...r },
              r.revoked.length
                ? r.revoked
                    .map(
                      (x) =>
                        `Revoked ${x.deviceId} (serial ${x.serial}, CA ${x.ca}): never confirmed.`,
                    )
                    .join("\n")
                : "Nothing is overdue: no unconfirmed certificate is past its profile's grace period.",
            );
          });
          return;
        }
        if (!o.reason)
          throw new LinesignError(
            "USAGE",
            `Give the reason: --reason ${Object.keys(REVOCATION_REASONS).join("|")}.`,
          );
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
      },
    );

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
        // The file's place is taken before the CRL is signed: a path that cannot take it costs no number.
        const file = o.out ? s.home.reserveFile(o.out, 0o644) : null;
        let r: Awaited<ReturnType<typeof s.revocation.crl>>;
        try {
          r = await s.revocation.crl(o.ca, Number(o.days));
        } catch (e) {
          file?.release();
          throw e;
        }
        if (o.out && file) {
          file.write(r.pem);
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
        } else if (d.json()) emit({ ok: true, ...r }, r.pem);
        else io.out(r.pem);
      });
    });
}
