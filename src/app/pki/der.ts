/**
 * A strict X.690 DER reader: walks the TLVs of one encoding and refuses
 * anything BER allows but DER does not (indefinite or non-minimal lengths,
 * long-form tags below 31, constructed strings, non-minimal INTEGERs,
 * BOOLEANs other than 00/FF, BIT STRINGs with unused bits set, unsorted SET
 * OF, times not in their DER form, strings outside their character set) and
 * bytes after the end. It reads structure only: no cryptography.
 *
 * Used on every request before it is decoded, and on every certificate and
 * CRL the station produces before it leaves (see assertDer).
 *
 * derElement frames content already encoded (by asn1js / asn1-schema) in one
 * tag and a minimal definite length, so a certificate's template can splice
 * its per-device parts between parts encoded once.
 */

/** One element: where it is, what it is, and its children when constructed. */
export interface DerNode {
  /** Tag class: 0 universal, 1 application, 2 context-specific, 3 private. */
  cls: number;
  constructed: boolean;
  tag: number;
  /** Offset of the identifier octet. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset just after the last content octet. */
  end: number;
  children: DerNode[];
}

/** Why an encoding is not DER, and at which byte. */
export class DerError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} at byte ${offset}`);
    this.name = "DerError";
  }
}

const MAX_DEPTH = 48;

const UNIVERSAL_NAMES: Record<number, string> = {
  1: "BOOLEAN",
  2: "INTEGER",
  3: "BIT STRING",
  4: "OCTET STRING",
  5: "NULL",
  6: "OBJECT IDENTIFIER",
  10: "ENUMERATED",
  12: "UTF8String",
  16: "SEQUENCE",
  17: "SET",
  18: "NumericString",
  19: "PrintableString",
  20: "TeletexString",
  22: "IA5String",
  23: "UTCTime",
  24: "GeneralizedTime",
  26: "VisibleString",
  28: "UniversalString",
  30: "BMPString",
};

/** Universal types DER encodes primitive (X.690 10.2: strings are never constructed). */
const PRIMITIVE = new Set([
  1, 2, 3, 4, 5, 6, 9, 10, 12, 13, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
]);
const CONSTRUCTED = new Set([8, 11, 16, 17]);

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const NUMERIC = /^[0-9 ]*$/;
// eslint-disable-next-line no-control-regex
const IA5 = /^[\u0000-\u007f]*$/;
const VISIBLE = /^[\u0020-\u007e]*$/;
const UTC_TIME = /^\d{12}Z$/;
const GENERALIZED_TIME = /^\d{14}(\.\d*[1-9])?Z$/;

const utf8 = new TextDecoder("utf-8", { fatal: true });

function name(cls: number, tag: number): string {
  if (cls === 0) return UNIVERSAL_NAMES[tag] ?? `universal tag ${tag}`;
  return `${["universal", "application", "context", "private"][cls]} [${tag}]`;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function checkPrimitive(b: Uint8Array, node: DerNode): void {
  const c = b.subarray(node.contentStart, node.end);
  const at = node.start;
  const what = name(node.cls, node.tag);
  const latin1 = (): string => Buffer.from(c).toString("latin1");
  switch (node.tag) {
    case 1:
      if (c.length !== 1 || (c[0] !== 0x00 && c[0] !== 0xff))
        throw new DerError("a BOOLEAN that is not one octet 00 or FF", at);
      return;
    case 2:
    case 10:
      if (c.length === 0) throw new DerError(`an empty ${what}`, at);
      if (c.length > 1 && ((c[0] === 0x00 && c[1]! < 0x80) || (c[0] === 0xff && c[1]! >= 0x80)))
        throw new DerError(`an ${what} encoded in more octets than needed`, at);
      return;
    case 3: {
      if (c.length === 0) throw new DerError("a BIT STRING without its unused-bits octet", at);
      const unused = c[0]!;
      if (unused > 7) throw new DerError(`a BIT STRING claiming ${unused} unused bits`, at);
      if (c.length === 1 && unused !== 0)
        throw new DerError("an empty BIT STRING claiming unused bits", at);
      if (unused > 0 && (c[c.length - 1]! & ((1 << unused) - 1)) !== 0)
        throw new DerError("a BIT STRING whose unused bits are not zero", at);
      return;
    }
    case 5:
      if (c.length !== 0) throw new DerError("a NULL with content", at);
      return;
    case 6: {
      if (c.length === 0) throw new DerError("an empty OBJECT IDENTIFIER", at);
      let startOfArc = true;
      for (let i = 0; i < c.length; i++) {
        if (startOfArc && c[i] === 0x80)
          throw new DerError("an OBJECT IDENTIFIER arc padded with leading zeros", at);
        startOfArc = (c[i]! & 0x80) === 0;
      }
      if (!startOfArc) throw new DerError("an OBJECT IDENTIFIER cut inside an arc", at);
      return;
    }
    case 12:
      try {
        utf8.decode(c);
      } catch {
        throw new DerError("a UTF8String that is not UTF-8", at);
      }
      return;
    case 18:
      if (!NUMERIC.test(latin1())) throw new DerError("a NumericString with other characters", at);
      return;
    case 19:
      if (!PRINTABLE.test(latin1()))
        throw new DerError("a PrintableString with characters outside its set", at);
      return;
    case 22:
      if (!IA5.test(latin1())) throw new DerError("an IA5String with non-ASCII octets", at);
      return;
    case 26:
      if (!VISIBLE.test(latin1()))
        throw new DerError("a VisibleString with characters outside its set", at);
      return;
    case 23:
      if (!UTC_TIME.test(latin1()))
        throw new DerError("a UTCTime not in the form YYMMDDHHMMSSZ", at);
      return;
    case 24:
      if (!GENERALIZED_TIME.test(latin1()))
        throw new DerError("a GeneralizedTime not in the form YYYYMMDDHHMMSSZ", at);
      return;
    case 28:
      if (c.length % 4 !== 0)
        throw new DerError("a UniversalString not a multiple of 4 octets", at);
      return;
    case 30:
      if (c.length % 2 !== 0) throw new DerError("a BMPString of an odd number of octets", at);
      return;
    default:
      return;
  }
}

function readNode(b: Uint8Array, pos: number, limit: number, depth: number): DerNode {
  if (depth > MAX_DEPTH) throw new DerError(`elements nested more than ${MAX_DEPTH} deep`, pos);
  const start = pos;
  if (pos >= limit) throw new DerError("an element cut short", pos);
  const id = b[pos++]!;
  const cls = id >> 6;
  const constructed = (id & 0x20) !== 0;
  let tag = id & 0x1f;
  if (tag === 0x1f) {
    tag = 0;
    let first = true;
    for (;;) {
      if (pos >= limit) throw new DerError("a tag cut short", start);
      const t = b[pos++]!;
      if (first && t === 0x80) throw new DerError("a tag number padded with leading zeros", start);
      first = false;
      tag = tag * 128 + (t & 0x7f);
      if (tag > 0xffffff) throw new DerError("a tag number too large", start);
      if ((t & 0x80) === 0) break;
    }
    if (tag < 31) throw new DerError("a tag below 31 in the long form", start);
  }
  if (pos >= limit) throw new DerError(`a ${name(cls, tag)} without its length`, start);
  const l0 = b[pos++]!;
  let length: number;
  if (l0 < 0x80) {
    length = l0;
  } else if (l0 === 0x80) {
    throw new DerError(`an indefinite length (${name(cls, tag)})`, start);
  } else {
    const n = l0 & 0x7f;
    if (n > 4) throw new DerError(`a length of ${n} octets`, start);
    if (pos + n > limit) throw new DerError("a length cut short", start);
    if (b[pos] === 0)
      throw new DerError(`a length padded with leading zeros (${name(cls, tag)})`, start);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + b[pos++]!;
    if (length < 0x80)
      throw new DerError(`a length of ${length} in the long form (${name(cls, tag)})`, start);
  }
  const contentStart = pos;
  const end = contentStart + length;
  if (end > limit)
    throw new DerError(
      `a ${name(cls, tag)} of ${length} octets where ${limit - contentStart} remain`,
      start,
    );
  const node: DerNode = { cls, constructed, tag, start, contentStart, end, children: [] };
  if (cls === 0) {
    if (tag === 0) throw new DerError("an end-of-contents marker", start);
    if (constructed && PRIMITIVE.has(tag))
      throw new DerError(`a constructed ${name(cls, tag)}`, start);
    if (!constructed && CONSTRUCTED.has(tag))
      throw new DerError(`a primitive ${name(cls, tag)}`, start);
  }
  if (constructed) {
    let p = contentStart;
    while (p < end) {
      const child = readNode(b, p, end, depth + 1);
      node.children.push(child);
      p = child.end;
    }
    if (cls === 0 && tag === 17) checkSetOrder(b, node);
  } else if (cls === 0) {
    checkPrimitive(b, node);
  }
  return node;
}

/** DER sorts the elements of a SET OF by their encodings (X.690 11.6). */
export function checkSetOrder(b: Uint8Array, node: DerNode): void {
  for (let i = 1; i < node.children.length; i++) {
    const prev = node.children[i - 1]!;
    const cur = node.children[i]!;
    if (compareBytes(b.subarray(prev.start, prev.end), b.subarray(cur.start, cur.end)) > 0)
      throw new DerError("a SET OF whose elements are not in DER order", cur.start);
  }
}

/** Reads exactly one DER element filling `bytes`. Throws DerError saying what is not DER and where. */
export function readDer(bytes: Uint8Array): DerNode {
  const node = readNode(bytes, 0, bytes.length, 0);
  if (node.end !== bytes.length)
    throw new DerError(`${bytes.length - node.end} bytes after the end of the encoding`, node.end);
  return node;
}

/** The bytes of an element (header and content). */
export const bytesOf = (b: Uint8Array, n: DerNode): Uint8Array => b.subarray(n.start, n.end);

/** The content bytes of an element. */
export const contentOf = (b: Uint8Array, n: DerNode): Uint8Array =>
  b.subarray(n.contentStart, n.end);

/** True when the node is the universal type `tag`, primitive or constructed as DER has it. */
export const isUniversal = (n: DerNode | undefined, tag: number): n is DerNode =>
  n !== undefined && n.cls === 0 && n.tag === tag;

/** Throws (for the station's own output) when `der` is not strict DER. */
export function assertDer(der: Uint8Array, what: string): void {
  try {
    readDer(der);
  } catch (e) {
    if (e instanceof DerError)
      throw new Error(`the station built ${what} that is not DER: ${e.message}`, { cause: e });
    throw e;
  }
}

/** Dotted form of an OBJECT IDENTIFIER's content. */
export function oidOf(b: Uint8Array, n: DerNode): string {
  const c = contentOf(b, n);
  const arcs: bigint[] = [];
  let v = 0n;
  for (const byte of c) {
    v = (v << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs[0] ?? 0n;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join(".");
}

/** One element of `tag` (a single identifier octet) around `parts`, in DER's minimal definite length. */
export function derElement(tag: number, parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  let lengthOctets = 0;
  if (length >= 0x80) for (let l = length; l > 0; l = Math.floor(l / 256)) lengthOctets++;
  const out = new Uint8Array(2 + lengthOctets + length);
  out[0] = tag;
  let at = 1;
  if (lengthOctets === 0) {
    out[at++] = length;
  } else {
    out[at++] = 0x80 | lengthOctets;
    for (let i = lengthOctets - 1; i >= 0; i--) out[at++] = Math.floor(length / 256 ** i) % 256;
  }
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A SEQUENCE of elements already encoded. */
export const derSequence = (parts: readonly Uint8Array[]): Uint8Array => derElement(0x30, parts);

/** OBJECT IDENTIFIERs written so far, by dotted form (a station writes a few dozen). */
const oids = new Map<string, Uint8Array>();

/** An OBJECT IDENTIFIER from its dotted form (X.690 8.19); throws on a malformed one. */
export function derOid(dotted: string): Uint8Array {
  const known = oids.get(dotted);
  if (known) return known;
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new Error(`"${dotted}" is not an OID`);
  const arcs = dotted.split(".").map((a) => BigInt(a));
  if (arcs[0]! < 2n && arcs[1]! >= 40n) throw new Error(`"${dotted}" is not an OID`);
  const bytes: number[] = [];
  for (const arc of [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)]) {
    const group: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) group.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  const out = derElement(0x06, [Uint8Array.from(bytes)]);
  if (oids.size < 1024) oids.set(dotted, out);
  return out;
}

/** A lone UTF-16 surrogate: text with one is not a string any encoding can carry. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** A UTF8String (tag 0x0c); throws on text that is not well-formed UTF-16. */
export function derUtf8String(text: string): Uint8Array {
  if (LONE_SURROGATE.test(text)) throw new Error("the text holds a lone surrogate");
  return derElement(0x0c, [Buffer.from(text, "utf8")]);
}

/**
 * A string of one-octet characters under `tag` (PrintableString 0x13, IA5String 0x16, or a
 * context tag implicitly so typed): each UTF-16 unit's low octet, as asn1js writes them.
 */
export const derOctetChars = (tag: number, text: string): Uint8Array =>
  derElement(tag, [Buffer.from(text, "latin1")]);

const two = (n: number): string => String(n).padStart(2, "0");

/** RFC 5280 4.1.2.5: UTCTime (YYMMDDHHMMSSZ) through 2049, GeneralizedTime from 2050; whole seconds. */
export function derTime(d: Date): Uint8Array {
  const y = d.getUTCFullYear();
  const rest =
    two(d.getUTCMonth() + 1) +
    two(d.getUTCDate()) +
    two(d.getUTCHours()) +
    two(d.getUTCMinutes()) +
    two(d.getUTCSeconds()) +
    "Z";
  return y < 2050
    ? derElement(0x17, [Buffer.from(two(y % 100) + rest, "latin1")])
    : derElement(0x18, [Buffer.from(String(y).padStart(4, "0") + rest, "latin1")]);
}

/** An INTEGER holding the unsigned big-endian `bytes`, in its minimal form (X.690 8.3.2). */
export function derUnsignedInteger(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.length === 0 ? Uint8Array.of(0) : bytes.subarray(i);
  return (v[0]! & 0x80) !== 0 ? derElement(0x02, [Uint8Array.of(0), v]) : derElement(0x02, [v]);
}
