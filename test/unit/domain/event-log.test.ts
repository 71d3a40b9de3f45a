import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  chainEvent,
  ChainWalker,
  describeBreak,
  GENESIS_HASH,
  hashEvent,
  joinRangeWalks,
  storedBody,
  storedDetails,
  verifyChain,
  type ChainHash,
  type EncodedEvent,
  type EventRecord,
  type RangeWalk,
  type StoredEvent,
} from "../../../src/domain/event-log.js";

// The documented hash step, written out here with node's crypto (the domain takes it as a parameter).
const h: ChainHash = (prev, body) =>
  createHash("sha256").update(Buffer.from(prev, "hex")).update(body, "utf8").digest("hex");

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
        h,
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
    expect(verifyChain(log, h)).toEqual({
      ok: true,
      count: 5,
      head: { seq: 5, hash: log[4]!.hash },
    });
  });

  it("hashes a fixed entry to a fixed value (the encoding is stable)", () => {
    const e = chainEvent(
      { actor: "a", action: "b", outcome: "ok" },
      null,
      "2026-01-01T00:00:00.000Z",
      h,
    );
    // The documented encoding, hashed independently with node's crypto.
    const body = '[1,1,"2026-01-01T00:00:00.000Z","a","b",null,"ok",null,null,{}]';
    const expected = createHash("sha256").update(Buffer.alloc(32)).update(body).digest("hex");
    expect(e.hash).toBe(expected);
    expect(hashEvent({ ...e }, h)).toBe(expected);
    const again = chainEvent(
      { actor: "a", action: "b", outcome: "ok", details: {} },
      null,
      "2026-01-01T00:00:00.000Z",
      h,
    );
    expect(again.hash).toBe(e.hash);
  });

  it("detects an edited entry and names it", () => {
    const log = build(6);
    log[3] = { ...log[3]!, outcome: "ok", subject: "forged" };
    const v = verifyChain(log, h);
    expect(v).toMatchObject({ ok: false, count: 3, firstBad: { kind: "hash", seq: 4 } });
  });

  it("detects an edit that also recomputes the entry's own hash, at the next entry", () => {
    const log = build(6);
    const forged = { ...log[2]!, details: { i: 99 } };
    forged.hash = hashEvent(forged, h);
    log[2] = forged;
    expect(verifyChain(log, h)).toMatchObject({ ok: false, firstBad: { kind: "link", seq: 4 } });
  });

  it("detects a deleted entry", () => {
    const log = build(6);
    log.splice(2, 1);
    expect(verifyChain(log, h)).toMatchObject({
      ok: false,
      firstBad: { kind: "sequence", seq: 4, expected: 3 },
    });
  });

  it("detects a reordered pair", () => {
    const log = build(6);
    [log[1], log[2]] = [log[2]!, log[1]!];
    expect(verifyChain(log, h)).toMatchObject({
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
    const v = verifyChain(log, h);
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

/** An entry as a store holds it; details text as given, else as the station writes it. */
function stored(e: EventRecord, detailsText = storedDetails(e.details)): StoredEvent {
  return [
    e.seq,
    e.ts,
    e.actor,
    e.action,
    e.subject,
    e.outcome,
    e.code,
    e.message,
    detailsText,
    e.prevHash,
    e.hash,
    e.seq,
  ];
}

function walk(rows: StoredEvent[]) {
  const w = new ChainWalker(h);
  for (const r of rows) if (!w.stored(r)) break;
  return w.verdict();
}

function withColumn(row: StoredEvent, i: number, v: unknown): StoredEvent {
  const copy = [...row] as unknown[];
  copy[i] = v;
  return copy as unknown as StoredEvent;
}

describe("event log walk over stored entries", () => {
  it("verifies an intact stored log, with details stored canonically", () => {
    const log = build(7);
    expect(stored(log[0]!)[8]).toBe('{"i":0,"nested":{"a":2,"b":1}}');
    expect(walk(log.map((e) => stored(e)))).toEqual({
      ok: true,
      count: 7,
      head: { seq: 7, hash: log[6]!.hash },
    });
  });

  it("verifies entries whose details were stored in another form (older logs), alone and mixed", () => {
    const log = build(9);
    // What stations wrote before: JSON.stringify in insertion order, keys unsorted.
    const legacy = log.map((e) => stored(e, JSON.stringify(e.details)));
    expect(legacy[0]![8]).toBe('{"i":0,"nested":{"b":1,"a":2}}');
    expect(walk(legacy)).toMatchObject({ ok: true, count: 9 });
    const mixed = log.map((e, i) => (i < 3 || i === 6 ? legacy[i]! : stored(e)));
    expect(walk(mixed)).toMatchObject({ ok: true, count: 9 });
    const spaced = log.map((e) => stored(e, JSON.stringify(e.details, null, 2)));
    expect(walk(spaced)).toMatchObject({ ok: true, count: 9 });
  });

  it("names an entry with any one column changed, in either storage form", () => {
    const values: [number, unknown][] = [
      [1, "2027-01-01T00:00:00.000Z"],
      [2, "intruder"],
      [3, "ca.delete"],
      [4, null],
      [5, "failed"],
      [6, "SOME_CODE"],
      [7, "a message"],
      [8, '{"i":3,"nested":{"a":2,"b":2}}'],
      [8, '{"i":3,"nested":{"a":2,"b":1},"extra":true}'],
      [8, "not json {"],
      [8, ""],
    ];
    for (const form of ["canonical", "legacy"] as const) {
      for (const [col, v] of values) {
        const rows = build(6).map((e) =>
          stored(e, form === "canonical" ? storedDetails(e.details) : JSON.stringify(e.details)),
        );
        rows[3] = withColumn(rows[3]!, col, v);
        expect(walk(rows), `${form} column ${col} = ${String(v)}`).toEqual({
          ok: false,
          count: 3,
          firstBad: { kind: "hash", seq: 4 },
        });
      }
    }
  });

  it("names an entry whose details text spills into its neighbours' values", () => {
    const log = build(4);
    const e = log[2]!;
    // The message moved into the details column: the same characters, another array.
    const moved = withColumn(
      withColumn(stored(e), 7, null),
      8,
      `${JSON.stringify(e.message)},${storedDetails(e.details)}`,
    );
    const rows = log.map((x) => stored(x));
    rows[2] = moved;
    expect(walk(rows)).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 3 } });
  });

  it("names a replaced hash, a broken link, a deleted and a reordered entry", () => {
    const rows = () => build(6).map((e) => stored(e));
    const replaced = rows();
    replaced[2] = withColumn(replaced[2]!, 10, "0".repeat(64));
    expect(walk(replaced)).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 3 } });

    const relinked = rows();
    const forged = { ...build(6)[2]!, details: { i: 99 } };
    forged.hash = hashEvent(forged, h);
    relinked[2] = stored(forged);
    expect(walk(relinked)).toMatchObject({
      ok: false,
      count: 3,
      firstBad: { kind: "link", seq: 4 },
    });

    const deleted = rows();
    deleted.splice(4, 1);
    expect(walk(deleted)).toMatchObject({
      ok: false,
      count: 4,
      firstBad: { kind: "sequence", seq: 6, expected: 5 },
    });

    const reordered = rows();
    [reordered[0], reordered[1]] = [reordered[1]!, reordered[0]!];
    expect(walk(reordered)).toMatchObject({
      ok: false,
      count: 0,
      firstBad: { kind: "sequence", seq: 2, expected: 1 },
    });
  });

  it("stops at the first break and checks nothing after it", () => {
    const rows = build(5).map((e) => stored(e));
    rows[1] = withColumn(rows[1]!, 2, "intruder");
    const w = new ChainWalker(h);
    expect(w.stored(rows[0]!)).toBe(true);
    expect(w.stored(rows[1]!)).toBe(false);
    expect(w.stored(rows[2]!)).toBe(false);
    expect(w.count).toBe(1);
    expect(w.verdict()).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 2 } });
  });
});

describe("event log walk over entries the store encoded", () => {
  const encode = (r: StoredEvent, body: string | null = storedBody(r)): EncodedEvent => [
    r[0],
    r[9],
    r[10],
    body,
    r[11],
  ];

  function walkEncoded(rows: StoredEvent[], encoded = rows.map((r) => encode(r))) {
    const w = new ChainWalker(h);
    const asked: number[] = [];
    const full = (position: number) => {
      asked.push(position);
      return rows.find((r) => r[11] === position) ?? null;
    };
    for (const e of encoded) if (!w.encoded(e, full)) break;
    return { verdict: w.verdict(), asked };
  }

  it("settles each entry with one hash over its body, reading no columns", () => {
    const rows = build(6).map((e) => stored(e));
    const { verdict, asked } = walkEncoded(rows);
    expect(verdict).toMatchObject({ ok: true, count: 6 });
    expect(asked).toEqual([]);
  });

  it("reads the columns of an entry whose body does not match, and decides on them", () => {
    const rows = build(6).map((e, i) =>
      i === 2 ? stored(e, JSON.stringify(e.details)) : stored(e),
    );
    // An older entry (details not canonical): its body does not match, its columns do.
    expect(walkEncoded(rows)).toEqual({
      verdict: { ok: true, count: 6, head: { seq: 6, hash: rows[5]![10] } },
      asked: [3],
    });
    // A body the store got wrong does not decide either way: the columns do.
    const wrongBody = rows.map((r) => encode(r));
    wrongBody[4] = encode(rows[4]!, "[1,5]");
    expect(walkEncoded(rows, wrongBody).verdict).toMatchObject({ ok: true, count: 6 });
    const noBody = rows.map((r, i) => encode(r, i === 1 ? null : storedBody(r)));
    expect(walkEncoded(rows, noBody).verdict).toMatchObject({ ok: true, count: 6 });
  });

  it("names a changed entry, and one whose columns cannot be read back", () => {
    const rows = build(6).map((e) => stored(e));
    const changed = [...rows];
    changed[3] = withColumn(rows[3]!, 2, "intruder");
    expect(walkEncoded(changed).verdict).toEqual({
      ok: false,
      count: 3,
      firstBad: { kind: "hash", seq: 4 },
    });
    const gone = rows.map((r) => encode(r));
    gone[4] = encode(withColumn(rows[4]!, 2, "intruder"));
    const w = new ChainWalker(h);
    for (const e of gone) if (!w.encoded(e, () => null)) break;
    expect(w.verdict()).toMatchObject({ ok: false, firstBad: { kind: "hash", seq: 5 } });
  });

  it("asks for columns while entries need them, and stops asking when they are canonical again", () => {
    const log = build(8);
    const rows = log.map((e, i) => (i < 4 ? stored(e, JSON.stringify(e.details)) : stored(e)));
    const w = new ChainWalker(h);
    const wants: boolean[] = [];
    for (const r of rows) {
      wants.push(w.wantsColumns);
      expect(w.stored(r)).toBe(true);
    }
    expect(wants).toEqual([false, true, true, true, true, false, false, false]);
  });
});

describe("event log walk in ranges, joined", () => {
  /** Walks `entries` split before each index of `cuts`, each range on a walker of its own. */
  function walkInRanges(entries: EventRecord[], cuts: number[]): RangeWalk[] {
    const bounds = [0, ...cuts, entries.length];
    return bounds.slice(1).map((end, i) => {
      const w = new ChainWalker(h, "range");
      for (const e of entries.slice(bounds[i], end)) if (!w.record(e)) break;
      const v = w.verdict();
      return {
        count: v.count,
        first: w.first,
        last: w.head,
        atCheckpoints: [],
        firstBad: v.ok ? null : v.firstBad,
      };
    });
  }

  it("gives the verdict of one walk, for a break in a range, at a join or none", () => {
    const log = build(30);
    const edits: [string, (l: EventRecord[]) => EventRecord[]][] = [
      ["intact", (l) => l],
      [
        "changed in the first range",
        (l) => l.map((e) => (e.seq === 5 ? { ...e, subject: "x" } : e)),
      ],
      ["changed at the join", (l) => l.map((e) => (e.seq === 11 ? { ...e, subject: "x" } : e))],
      ["deleted at the join", (l) => l.filter((e) => e.seq !== 11)],
      ["deleted before the join", (l) => l.filter((e) => e.seq !== 10)],
      [
        "relinked at the join",
        (l) => l.map((e) => (e.seq === 11 ? { ...e, prevHash: GENESIS_HASH } : e)),
      ],
      ["first entry gone", (l) => l.slice(1)],
      [
        "changed in the last range",
        (l) => l.map((e) => (e.seq === 25 ? { ...e, subject: "x" } : e)),
      ],
    ];
    for (const [what, edit] of edits) {
      const entries = edit(log);
      expect(joinRangeWalks(walkInRanges(entries, [10, 20])).verdict, what).toEqual(
        verifyChain(entries, h),
      );
    }
  });

  it("goes on from an entry already checked", () => {
    const log = build(12);
    const first = verifyChain(log.slice(0, 7), h);
    if (!first.ok) throw new Error("the first part should chain");
    const w = new ChainWalker(h, { ...first.head!, count: first.count });
    for (const e of log.slice(7)) w.record(e);
    expect(w.verdict()).toEqual(verifyChain(log, h));
  });
});
