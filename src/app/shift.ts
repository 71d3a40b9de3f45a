/**
 * A shift's figures (the kiosk's Shift screen, the printed shift report):
 * the window validated and bounded, the counting done by the store in SQL
 * over the log's line.session entries, the figures shaped in the domain.
 */
import {
  shiftFigures,
  shiftWindow,
  type ShiftFigures,
  type ShiftWindowInput,
} from "../domain/shift.js";
import type { AppContext } from "./context.js";

/**
 * The figures of the window `input` names (default: the last 12 hours, by
 * the station's clock). Throws LinesignError USAGE for a window that is not
 * valid or longer than 168 hours (see shiftWindow).
 */
export function buildShift(ctx: AppContext, input: ShiftWindowInput = {}): ShiftFigures {
  const w = shiftWindow(input, ctx.clock.now());
  return shiftFigures(w, ctx.store.lineShift(w.from, w.to));
}
