/** `linesign issue`: a one-off issuance from a CSR file. */
import type { Command } from "commander";
import { pemCertificate } from "./output.js";
import { readInput, type CommandDeps } from "./io.js";
import { READ_LIMITS } from "../compose-files.js";

export function registerIssueCommand(program: Command, d: CommandDeps): void {
  const { io, withStation, emit } = d;
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
        const csr = readInput(o.csr, "the CSR file", READ_LIMITS.csr);
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
            else if (!d.json()) io.out(pem);
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
          if (d.json()) emit(summary, "");
          else if (o.out)
            emit(
              summary,
              `Issued ${rec.deviceId} (serial ${rec.serial}) to ${o.out}${rec.validityCut ? "; validity was cut at the CA's own end of validity" : ""}.`,
            );
        });
      },
    );
}
