import Database from "better-sqlite3";
import { join } from "node:path";
import { expect, it } from "vitest";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { deviceKey, makeCsr } from "../../../fixtures/csr-factory.js";
import { engineStation } from "../../helpers/engine.js";

/**
 * The suite issues 1,000; `npm run
 * soak:serials` issues 10,000 (LINESIGN_SERIALS_N sets any other count).
 */
const N = Number(process.env.LINESIGN_SERIALS_N ?? 1_000);

it(`gives ${N} issuances ${N} distinct serials of at least 64 random bits, each recorded`, async () => {
  const es = await engineStation();
  const s = es.open();
  const serials = new Set<string>();
  for (let i = 0; i < N; i++) {
    const out = await s.issuance.issue({
      csr: makeCsr({ key: deviceKey("ec-p256"), subject: [["CN", `serial-${i}`]] }),
      origin: "test",
    });
    serials.add(out.issuance.serial);
    if (i % 250 === 0) {
      // The serial in the certificate is the one recorded.
      expect(new x509.X509Certificate(out.issuance.certDer).serialNumber.toLowerCase()).toBe(
        out.issuance.serial,
      );
    }
  }
  await s.close();
  expect(serials.size).toBe(N);
  for (const serial of serials) expect(serial.length).toBeGreaterThanOrEqual(16);
  const db = new Database(join(es.home, "station.db"), { readonly: true });
  const row = db
    .prepare("SELECT count(*) AS n, count(DISTINCT serial) AS d FROM issuances")
    .get() as { n: number; d: number };
  db.close();
  expect(row).toEqual({ n: N, d: N });
}, 600_000);
