/** Worker thread entry: runs PrepareContext for the station's main thread. */
import { parentPort } from "node:worker_threads";
import { PrepareContext } from "./prepare.js";
import type { WorkerRequest, WorkerReply } from "./preparer.js";

const context = new PrepareContext();
const port = parentPort!;

port.on("message", (msg: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { id: msg.id, ok: true, value: context.prepare(msg.input) };
  } catch (e) {
    reply = { id: msg.id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
