// Issues one certificate and is killed with SIGKILL after signing, before the
// record commits: what it would have printed must never appear.
import { readFileSync, writeSync } from "node:fs";
import { openStation } from "../../dist/src/compose.js";

const [home, csrPath] = process.argv.slice(2);
const station = openStation({
  home,
  officer: "test-officer",
  hooks: {
    beforeCommit: () => {
      writeSync(1, "signed, about to commit\n");
      process.kill(process.pid, "SIGKILL");
      // Nothing after the signal may run; block in case it is delivered late.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
    },
  },
});
const issued = await station.issuance.issue({
  csr: new Uint8Array(readFileSync(csrPath)),
  origin: "stdout",
});
process.stdout.write(
  Buffer.from(issued.issuance.certDer).toString("base64") + "\n-----BEGIN CERTIFICATE-----\n",
);
