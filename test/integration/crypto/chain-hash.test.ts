import { createHash, randomBytes } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { expect, it } from "vitest";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import { GENESIS_HASH } from "../../../src/domain/event-log.js";

// The pure-JavaScript hash step the log used before: existing logs were hashed with it.
function before(prev: string, body: string): string {
  const p = hexToBytes(prev);
  const b = utf8ToBytes(body);
  const buf = new Uint8Array(p.length + b.length);
  buf.set(p, 0);
  buf.set(b, p.length);
  return bytesToHex(sha256(buf));
}

it("hashes exactly the bytes the log always hashed, at every size and in any script", () => {
  const bodies = [
    "",
    '[1,1,"2026-01-01T00:00:00.000Z","a","b",null,"ok",null,null,{}]',
    "Prüfstand 3 — ライン 7 🔐",
    "x".repeat(64 * 1024 - 32), // just fills the reused buffer
    "é".repeat(40_000), // 80,000 bytes: more than the reused buffer
    "🔐".repeat(30_000),
  ];
  for (const prev of [GENESIS_HASH, randomBytes(32).toString("hex")]) {
    for (const body of bodies) {
      const expected = createHash("sha256")
        .update(Buffer.from(prev, "hex"))
        .update(body, "utf8")
        .digest("hex");
      expect(nodeChainHash(prev, body)).toBe(expected);
      expect(before(prev, body)).toBe(expected);
    }
  }
  // The reused buffer holds nothing over from a longer body.
  expect(nodeChainHash(GENESIS_HASH, "a")).toBe(before(GENESIS_HASH, "a"));
});
