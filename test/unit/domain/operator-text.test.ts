/**
 * Every code the kiosk can be shown has operator words and officer words, and
 * an operator's words never carry an environment variable, a command, a path,
 * a code or a stack.
 */
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../../src/domain/errors.js";
import {
  ALL_KIOSK_CODES,
  hasWords,
  operatorText,
  refusalText,
} from "../../../src/domain/operator-text.js";
import { DEVELOPER_WORDS } from "../../helpers/developer-words.js";

describe("operator text", () => {
  it("has words of its own for every code the kiosk can receive", () => {
    const missing = ALL_KIOSK_CODES.filter((c) => !hasWords(c));
    expect(missing).toEqual([]);
    expect(ALL_KIOSK_CODES).toEqual(expect.arrayContaining([...ERROR_CODES]));
    expect(hasWords("NOT_A_CODE")).toBe(false);
  });

  it.each(ALL_KIOSK_CODES)("%s: operator words are plain, officer words say what to do", (code) => {
    const r = refusalText(code);
    for (const s of [r.title, r.action, r.officer]) expect(s.trim().length).toBeGreaterThan(8);
    for (const s of [r.title, r.action])
      for (const bad of DEVELOPER_WORDS) expect(s, `${code}: ${s}`).not.toMatch(bad);
    // Officers may be pointed at a command, never at an environment variable.
    expect(r.officer).not.toMatch(/\bLINESIGN_[A-Z_]+/);
    expect(operatorText(code)).toEqual({ title: r.title, action: r.action });
  });

  it("gives general words, not a developer's, for a code it does not know", () => {
    const r = refusalText("SOMETHING_NEW");
    for (const bad of DEVELOPER_WORDS) expect(r.title + " " + r.action).not.toMatch(bad);
  });

  it("tells the operator one thing to do when the signing session is gone", () => {
    expect(operatorText("SIGNING_SESSION_REQUIRED").action).toBe(
      "Call an officer to reopen the signing session.",
    );
  });
});
