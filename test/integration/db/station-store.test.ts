import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { nodeChainHash } from "../../../src/adapters/crypto/chain-hash.js";
import { SqliteStationStore } from "../../../src/adapters/db/station-store.js";
import { storedBody } from "../../../src/domain/event-log.js";

it("encodes each entry for the walk exactly as the domain encodes its stored columns", () => {
  const store = SqliteStationStore.open(join(mkdtempSync(join(tmpdir(), "linesign-db-")), "s.db"), {
    create: true,
    hash: nodeChainHash,
  });
  // Every BMP character but the surrogates, the astral planes, and text JSON escapes.
  const chars: string[] = [];
  for (let c = 0; c < 0x10000; c += c < 0x800 ? 1 : 97)
    if (c < 0xd800 || c > 0xdfff) chars.push(String.fromCharCode(c));
  const texts = [
    chars.join(""),
    'quote " backslash \\ slash / tab \t newline \n nul \u0000 \u2028 \u2029 \u007f',
    "Prüfstand — ライン 🔐 𝄞",
    "",
  ];
  for (const [i, t] of texts.entries())
    store.appendEvent({
      actor: t,
      action: `a.${i}`,
      subject: i % 2 ? null : t,
      outcome: i % 3 ? "ok" : "failed",
      code: i % 2 ? t : null,
      message: i === 3 ? null : t,
      details: { t, n: i, nested: { z: [t, null, 1.5], a: true } },
    });
  const stored = store.storedEvents(0, 100);
  const encoded = store.encodedEvents(0, 100);
  expect(encoded).toHaveLength(texts.length);
  for (const [i, e] of encoded.entries()) {
    const r = stored[i]!;
    expect([e[0], e[1], e[2], e[4]]).toEqual([r[0], r[9], r[10], r[11]]);
    expect(e[3]).toBe(storedBody(r));
    expect(nodeChainHash(e[1], e[3]!)).toBe(e[2]);
  }
  // Pages continue after the position they were given.
  expect(store.encodedEvents(encoded[1]![4], 2).map((e) => e[0])).toEqual([3, 4]);
  store.close();
});
