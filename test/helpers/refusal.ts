/** What a use case refused with: its code and message (fails the test if it did not refuse). */
import { isLinesignError } from "../../src/domain/errors.js";

export async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isLinesignError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected a refusal");
}

/** The code a use case refused with. */
export const refusalCode = async (p: Promise<unknown>): Promise<string> => (await refusal(p)).code;
