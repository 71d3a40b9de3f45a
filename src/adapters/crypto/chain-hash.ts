/**
 * The event log's hash step on node's native SHA-256 (OpenSSL, with the
 * CPU's SHA extensions where it has them): what src/compose.ts passes to the
 * domain's hash chain. One-shot `crypto.hash` over a reused buffer, so a
 * million entries cost a million native calls and no hash objects.
 */
import { hash } from "node:crypto";
import type { ChainHash } from "../../domain/event-log.js";

const scratch = Buffer.allocUnsafe(64 * 1024);

/** SHA-256(bytes of `prevHashHex` || UTF-8 of `body`) as lowercase hex. */
export const nodeChainHash: ChainHash = (prevHashHex, body) => {
  // A UTF-16 code unit never takes more than 3 bytes in UTF-8.
  const room = 32 + body.length * 3;
  const buf = room <= scratch.length ? scratch : Buffer.allocUnsafe(room);
  const p = buf.write(prevHashHex, 0, 32, "hex");
  const n = buf.write(body, p, "utf8");
  return hash("sha256", buf.subarray(0, p + n), "hex");
};
