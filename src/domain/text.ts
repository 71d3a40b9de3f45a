/**
 * Well-formed text. A JavaScript string may hold a lone surrogate (half of a
 * UTF-16 pair); written to SQLite or a file as UTF-8 it cannot be encoded,
 * and reads back as something else, so a hash taken over the string no
 * longer matches what is stored. Every string entering the log is checked
 * here: refused at the boundary (`isWellFormed`), or made well-formed
 * (`wellFormed`, each lone surrogate replaced by U+FFFD) where refusing is
 * not possible (a message quoting what a caller sent).
 */

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ANY_LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether a string encodes to UTF-8 and back unchanged (no lone surrogate). */
export function isWellFormed(s: string): boolean {
  return !ANY_LONE_SURROGATE.test(s);
}

/** The string with every lone surrogate replaced by U+FFFD. */
export function wellFormed(s: string): string {
  return isWellFormed(s) ? s : s.replace(LONE_SURROGATE, "\uFFFD");
}

/**
 * Cuts a string to at most `max` UTF-16 units without splitting a surrogate
 * pair (the cut falls before the pair).
 */
export function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const c = s.charCodeAt(max - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? max - 1 : max);
}

/** Whether every string in a value (keys too) is well-formed; false past 64 levels. */
export function isWellFormedDeep(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return isWellFormed(value);
  if (value === null || typeof value !== "object") return true;
  if (depth > 64) return false;
  if (Array.isArray(value)) return value.every((v) => isWellFormedDeep(v, depth + 1));
  return Object.entries(value).every(([k, v]) => isWellFormed(k) && isWellFormedDeep(v, depth + 1));
}

/** A value with every string in it (keys too) made well-formed; other values as they are. */
export function wellFormedDeep(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return wellFormed(value);
  if (value === null || typeof value !== "object") return value;
  if (depth > 32) return "(nested too deep)";
  if (Array.isArray(value)) return value.map((v) => wellFormedDeep(v, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[wellFormed(k)] = wellFormedDeep(v, depth + 1);
  return out;
}
