import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  chainEvent,
  describeBreak,
  GENESIS_HASH,
  hashEvent,
  verifyChain,
  type EventRecord,
} from "../../../src/domain/event-log.js";

function build(n: number): EventRecord[] {
  const out: EventRecord[] = [];
  for (let i = 0; i < n; i++) {
    const head = out.length ? out[out.length - 1]! : null;
    out.push(
      chainEvent(
        {
          actor: "officer",
          action: "ca.create",
          subject: `ca-${i}`,
          outcome: i % 3 === 0 ? "refused" : "ok",
          details: { i, nested: { b: 1, a: 2 } },
        },
        head,
        new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      ),
    );
  }
  return out;
}

describe("event log hash chain", () => {
  it("chains from the genesis hash and verifies an intact log", () => {
    const log = build(5);
    expect(log[0]!.prevHash).toBe(GENESIS_HASH);
    expect(log[0]!.seq).toBe(1);
    for (let i = 1; i < log.length; i++) expect(log[i]!.prevHash).toBe(log[i - 1]!.hash);
    expect(verifyChain(log)).toEqual({ ok: true, count: 5, head: { seq: 5, hash: log[4]!.hash } });
  });

  it("hashes a fixed entry to a fixed value (the encoding is stable)", () => {
    const e = chainEvent(
      { actor: "a", action: "b", outcome: "ok" },
      null,
      "2026-01-01T00:00:00.000Z",
    );
    // The documented encoding, hashed independently with node's crypto.
    const body = '[1,1,"2026-01-01T00:00:00.000Z","a","b",null,"ok",null,null,{}]';
    const expected = createHash("sha256").update(Buffer.alloc(32)).update(body).digest("hex");
    expect(e.hash).toBe(expected);
    expect(hashEvent({ ...e })).toBe(expected);
    const again = chainEvent(
      { actor: "a", action: "b", outcome: "ok", details: {} },
      null,
      "2026-01-01T00:00:00.000Z",
    );
    expect(again.hash).toBe(e.hash);
  });

  it("detects an edited entry and names it", () => {
    const log = build(6);
    log[3] = { ...log[3]!, outcome: "ok", subject: "forged" };
    const v = verifyChain(log);
    expect(v).toMatchObject({ ok: false, count: 3, firstBad: { kind: "hash", seq: 4 } });
  });

  it("detects an edit that also recomputes the entry's own hash, at the next entry", () => {
    const log = build(6);
    const forged = { ...log[2]!, details: { i: 99 } };
    forged.hash = hashEvent(forged);
    log[2] = forged;
    expect(verifyChain(log)).toMatchObject({ ok: false, firstBad: { kind: "link", seq: 4 } });
  });

  it("detects a deleted entry", () => {
    const log = build(6);
    log.splice(2, 1);
    expect(verifyChain(log)).toMatchObject({
      ok: false,
      firstBad: { kind: "sequence", seq: 4, expected: 3 },
    });
  });

  it("detects a reordered pair", () => {
    const log = build(6);
    [log[1], log[2]] = [log[2]!, log[1]!];
    expect(verifyChain(log)).toMatchObject({
      ok: false,
      firstBad: { kind: "sequence", seq: 3, expected: 2 },
    });
  });

  it("detects a renumbered swap (sequence kept, content swapped)", () => {
    const log = build(6);
    const a = log[1]!;
    const b = log[2]!;
    log[1] = { ...b, seq: a.seq };
    log[2] = { ...a, seq: b.seq };
    const v = verifyChain(log);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.firstBad.seq).toBe(2);
  });

  it("describes each break in words that name the entry", () => {
    expect(describeBreak({ kind: "hash", seq: 7 })).toContain("entry 7");
    expect(describeBreak({ kind: "link", seq: 8 })).toContain("entry 8");
    expect(describeBreak({ kind: "sequence", seq: 9, expected: 5 })).toContain("entry 5");
  });

  it("encodes objects canonically regardless of key order", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ a: undefined, b: 2 })).toBe('{"b":2}');
  });
});
