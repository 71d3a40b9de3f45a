/**
 * Officer-written patterns (a work order's device-id pattern, a profile's
 * device-id rule), matched against what a device sends. A backtracking
 * engine (JavaScript's RegExp) can take exponential time on a pattern such as
 * `([A-Z0-9]+-?)+`, on the only event loop every port shares; RE2 (here its
 * JavaScript port, re2js) matches in time linear in the id, and refuses the
 * constructs that need backtracking (lookaround, back-references).
 */
import { RE2JS } from "re2js";

/** Longest pattern accepted. */
export const MAX_PATTERN_LENGTH = 1024;

export interface Pattern {
  readonly source: string;
  /** Whether the whole of `s` matches (as if the pattern were anchored at both ends). */
  matchesWhole(s: string): boolean;
}

const cache = new Map<string, Pattern>();

/**
 * Compiles `source` for whole-string matching, or returns why it cannot be
 * used. Compiled patterns are kept (at most 256), so matching a device costs
 * no compilation.
 */
export function compilePattern(
  source: string,
): { ok: true; pattern: Pattern } | { ok: false; why: string } {
  const hit = cache.get(source);
  if (hit) return { ok: true, pattern: hit };
  if (source.length > MAX_PATTERN_LENGTH)
    return { ok: false, why: `it is longer than ${MAX_PATTERN_LENGTH} characters` };
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (e) {
    const text = e instanceof Error ? e.message.replace(/^error parsing regexp: /, "") : String(e);
    return {
      ok: false,
      why: `${text} (patterns are RE2 syntax: no lookahead, lookbehind or back-references)`,
    };
  }
  const pattern: Pattern = { source, matchesWhole: (s) => re.matches(s) };
  if (cache.size >= 256) cache.clear();
  cache.set(source, pattern);
  return { ok: true, pattern };
}
