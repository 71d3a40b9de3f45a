/**
 * Whether a profile's SAN templates can only ever make valid names: a URI
 * or dNSName is an IA5String (RFC 5280 4.2.1.6), so every character the
 * device-id rule could put into one must be ASCII and allowed there. The
 * rule's alphabet is over-approximated from its syntax (regexpp's parse):
 * every character any consuming part of it can match; a wildcard, negated
 * class or property escape admits everything.
 */
import { RegExpParser, type AST } from "@eslint-community/regexpp";

/** Characters a device id may bring into a URI (RFC 3986 unreserved, reserved; no '%' on its own). */
const URI_CHARS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]$/;
/** Characters of a dNSName (letters, digits, hyphen, dot: RFC 1034 preferred name syntax). */
const DNS_CHARS = /^[A-Za-z0-9.-]$/;

type Alphabet = { all: true } | { all: false; ranges: [number, number][] };

const ALL: Alphabet = { all: true };

function union(a: Alphabet, b: Alphabet): Alphabet {
  if (a.all || b.all) return ALL;
  return { all: false, ranges: [...a.ranges, ...b.ranges] };
}

const ranges = (...r: [number, number][]): Alphabet => ({ all: false, ranges: r });
const code = (c: string): number => c.codePointAt(0)!;

function setAlphabet(node: AST.CharacterSet): Alphabet {
  if (node.kind === "any" || node.kind === "property" || node.negate) return ALL;
  switch (node.kind) {
    case "digit":
      return ranges([code("0"), code("9")]);
    case "word":
      return ranges(
        [code("0"), code("9")],
        [code("A"), code("Z")],
        [code("a"), code("z")],
        [code("_"), code("_")],
      );
    case "space":
      return ALL; // spaces of every kind, none of which a name may hold
    default:
      return ALL;
  }
}

function classAlphabet(node: AST.Node): Alphabet {
  switch (node.type) {
    case "Character":
      return ranges([node.value, node.value]);
    case "CharacterClassRange":
      return ranges([node.min.value, node.max.value]);
    case "CharacterSet":
      return setAlphabet(node);
    case "CharacterClass":
      if (node.negate) return ALL;
      return node.elements.reduce<Alphabet>((acc, e) => union(acc, classAlphabet(e)), ranges());
    default:
      return ALL; // class set operations (v flag) and string alternatives: not analysed
  }
}

function alphabetOf(node: AST.Node): Alphabet {
  switch (node.type) {
    case "Pattern":
    case "Group":
    case "CapturingGroup":
      return node.alternatives.reduce<Alphabet>((acc, a) => union(acc, alphabetOf(a)), ranges());
    case "Alternative":
      return node.elements.reduce<Alphabet>((acc, e) => union(acc, alphabetOf(e)), ranges());
    case "Quantifier":
      return alphabetOf(node.element);
    case "Assertion":
      return ranges(); // anchors, boundaries and lookarounds consume nothing
    case "Backreference":
      return ranges(); // repeats what a group matched, already counted
    case "Character":
    case "CharacterClass":
    case "CharacterClassRange":
    case "CharacterSet":
      return classAlphabet(node);
    default:
      return ALL;
  }
}

/** The first character the rule may admit that `allowed` refuses, described; null when there is none. */
function firstRefused(alphabet: Alphabet, allowed: RegExp): string | null {
  if (alphabet.all) return "any character";
  for (const [lo, hi] of alphabet.ranges) {
    // Ranges are small in practice; anything past ASCII is refused at its first code point.
    for (let c = lo; c <= Math.min(hi, lo + 0x10000); c++) {
      const ch = String.fromCodePoint(c);
      if (!allowed.test(ch))
        return c >= 0x21 && c < 0x7f
          ? `'${ch}'`
          : `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
    }
  }
  return null;
}

/**
 * Why `template` of `type` could make an invalid name for some id the
 * rule admits; null when every admitted id makes a valid one.
 */
export function sanTemplateProblem(
  type: "uri" | "dns",
  template: string,
  deviceIdRule: string,
): string | null {
  const allowed = type === "uri" ? URI_CHARS : DNS_CHARS;
  const what = type === "uri" ? "a URI" : "a dNSName";
  const fixed = template.split("{deviceId}").join("");
  for (const ch of fixed) {
    if (!allowed.test(ch))
      return `the template "${template}" itself holds ${JSON.stringify(ch)}, which ${what} may not contain`;
  }
  if (type === "uri" && !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(template))
    return `the template "${template}" does not start with a URI scheme (like "urn:")`;
  let alphabet: Alphabet;
  try {
    alphabet = alphabetOf(
      new RegExpParser({ ecmaVersion: 2025 }).parsePattern(deviceIdRule, 0, deviceIdRule.length, {
        unicode: true,
      }),
    );
  } catch {
    alphabet = ALL;
  }
  const bad = firstRefused(alphabet, allowed);
  if (bad === null) return null;
  return `the device-id rule ${deviceIdRule} admits ${bad}, which ${what} (an IA5String) may not contain: narrow the rule to ${type === "uri" ? "letters, digits and -._~:" : "letters, digits, '-' and '.'"}`;
}
