/**
 * The signing session's idle clock as the page knows it, and the strip under
 * the bar that warns before the session ends: a countdown the operator can
 * see, and for an officer a way to keep it open. The service ends the
 * session after its idle time without signing or officer activity; every
 * call an officer makes counts as activity there, so the page moves its
 * copy of the clock on with each one.
 */
import type { Result } from "../../../src/domain/kiosk-api.js";
import { h, minutes, replace } from "./dom.js";

type SigningView = Result<"signing.open">;

/** How long before the end the warning shows: two minutes, or half the idle time if shorter. */
export function warnSeconds(idleTimeoutSeconds: number): number {
  return Math.min(120, idleTimeoutSeconds / 2);
}

let view: SigningView | null = null;
let endsAt: number | null = null;
let strip: HTMLElement | null = null;
let role: string | null = null;
let keepOpen: () => void = () => {};

/** What the service said of the session. */
export function knowSigning(v: SigningView): void {
  view = v;
  endsAt = v.open && v.idleEndsAt ? Date.parse(v.idleEndsAt) : null;
  draw();
}

/** An officer's call reached the service at `startedAt`: the session's idle time starts again. */
export function officerActed(startedAt: number): void {
  if (!view?.open || endsAt === null) return;
  endsAt = Math.max(endsAt, startedAt + view.idleTimeoutSeconds * 1000);
  draw();
}

/** Shows the warning in `el` for whoever is signed in; `keep` is an officer's "keep it open". */
export function mountSigningStrip(el: HTMLElement, keep: () => void): void {
  strip = el;
  keepOpen = keep;
  setInterval(draw, 1000);
}

export function signingFor(who: string | null): void {
  role = who;
  draw();
}

function draw(): void {
  if (!strip) return;
  if (!role || !view?.open || endsAt === null) return replace(strip);
  const left = (endsAt - Date.now()) / 1000;
  if (left > warnSeconds(view.idleTimeoutSeconds)) return replace(strip);
  const officer = role === "officer";
  replace(
    strip,
    h(
      "div",
      { class: "banner warn countdown", role: "timer", "aria-live": "polite" },
      h("span", { "aria-hidden": "true" }, "⌛ "),
      h(
        "span",
        {},
        left > 0 ? "The signing session ends in " : "The signing session is ending",
        left > 0 ? h("strong", { "data-countdown": "signing" }, minutes(left)) : null,
        officer
          ? " without use. Keep it open if the line goes on."
          : ". Call an officer now to keep the line signing.",
      ),
      officer
        ? h(
            "button",
            { class: "primary", "data-focus": "keep-open", onclick: () => keepOpen() },
            "Keep it open",
          )
        : null,
    ),
  );
}
