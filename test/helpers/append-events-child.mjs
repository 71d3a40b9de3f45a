// Appends events to a station database and reports each committed seq on stdout,
// until killed. Used to check that a committed entry survives SIGKILL.
import { SqliteStationStore } from "../../dist/src/adapters/db/station-store.js";
import { nodeChainHash } from "../../dist/src/adapters/crypto/chain-hash.js";

const store = SqliteStationStore.open(process.argv[2], { create: true, hash: nodeChainHash });
for (let i = 0; ; i++) {
  const e = store.appendEvent({
    actor: "child",
    action: "test.append",
    subject: String(i),
    outcome: "ok",
    details: { pad: "x".repeat(500) },
  });
  process.stdout.write(`${e.seq}\n`);
}
