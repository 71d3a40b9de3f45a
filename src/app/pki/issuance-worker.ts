/** Worker thread entry: runs PrepareContext for the station's main thread. */
import { parentPort } from "node:worker_threads";
import { PrepareContext } from "./prepare.js";
import type { WorkerRequest, WorkerReply } from "./preparer.js";

const context = new PrepareContext();
const port = parentPort!;

port.on("message", (msg: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    switch (msg.op) {
      case "prepare":
        reply = { id: msg.id, ok: true, value: context.prepare(msg.job, msg.input) };
        break;
      case "assemble":
        reply = { id: msg.id, ok: true, value: context.assemble(msg.job, msg.signature) };
        break;
      case "drop":
        context.drop(msg.job);
        reply = { id: msg.id, ok: true, value: null };
        break;
      default: {
        const never: never = msg;
        throw new Error(`unknown request ${JSON.stringify(never)}`);
      }
    }
  } catch (e) {
    reply = { id: msg.id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
