/**
 * What every screen shares: the contract on `window.linesign`, who is signed
 * in, and the few building blocks (a refusal box, a card, a table). Screens
 * keep their own state; this module holds only the signed-in user and the
 * station, which the frame and every screen read.
 */
import type {
  ChannelName,
  Args,
  LinesignApi,
  Reply,
  Result,
} from "../../../src/domain/kiosk-api.js";
import { refusalText } from "../../../src/domain/operator-text.js";
import { httpBridge } from "./bridge.js";
import { h } from "./dom.js";
import { knowSigning, officerActed } from "./signing-clock.js";

declare global {
  interface Window {
    linesign?: LinesignApi;
  }
}

// In Electron the preload put the contract here; in a browser the loopback bridge implements it.
window.linesign ??= httpBridge();
const api: LinesignApi = window.linesign;

export type User = NonNullable<Result<"auth.whoami">>;
export type StationStatus = Result<"station.status">;

/** The signed-in user and the station, shared by the frame and the screens. */
export const session: {
  user: User | null;
  station: StationStatus | null;
  /** Said on the sign-in screen once (the service restarted and the sign-in went with it). */
  notice: string | null;
} = {
  user: null,
  station: null,
  notice: null,
};

let onSignedOut: () => void = () => {};
let onUnreachable: () => void = () => {};

/** Told when a call finds the service gone (restarting, stopped): the page reconnects. */
export function whenUnreachable(f: () => void): void {
  onUnreachable = f;
}

/** Told when a call finds the sign-in gone (timed out, service restarted). */
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

export async function call<K extends ChannelName>(
  name: K,
  args: Args<K>,
): Promise<Reply<Result<K>>> {
  const startedAt = Date.now();
  const reply = await api[name](args);
  if (reply.ok) {
    const r = reply.result as { signing?: Result<"signing.open"> } | null;
    if (name === "signing.open" || name === "signing.close")
      knowSigning(reply.result as Result<"signing.open">);
    else if (name !== "kiosk.welcome" && r && typeof r === "object" && r.signing)
      knowSigning(r.signing);
  }
  if (session.user?.role === "officer") officerActed(startedAt);
  if (!reply.ok && reply.error.code === "SERVICE_UNREACHABLE") onUnreachable();
  // Only a sign-in that was there and has gone redraws: nobody signed in is already the sign-in screen.
  if (
    !reply.ok &&
    (reply.error.code === "AUTH_REQUIRED" || reply.error.code === "KIOSK_NOT_CONNECTED") &&
    name !== "auth.login" &&
    session.user
  ) {
    session.user = null;
    onSignedOut();
  }
  return reply;
}

/**
 * A refusal as the signed-in person should read it. An operator (or a
 * kiosk nobody has signed in to) gets plain words and one thing to do; the
 * station's own message, which may name a command, a file or a setting, and
 * the code are for officers and auditors.
 */
export function errorBox(message: string, code?: string): HTMLElement {
  // Without a code the words are the page's own.
  if (!code)
    return h(
      "div",
      { class: "alert", role: "alert" },
      h("span", { class: "icon", "aria-hidden": "true" }, "⚠"),
      h("span", {}, message),
    );
  const words = refusalText(code);
  const expert = session.user !== null && session.user.role !== "operator";
  return h(
    "div",
    { class: "alert", role: "alert", "data-code": code },
    h("span", { class: "icon", "aria-hidden": "true" }, "⚠"),
    h(
      "div",
      { class: "alert-text" },
      h("p", { class: "alert-title" }, words.title),
      h(
        "p",
        { class: "alert-action" },
        h("strong", {}, "What to do: "),
        expert ? words.officer : words.action,
      ),
      expert
        ? h("p", { class: "alert-detail" }, message, h("span", { class: "code" }, ` (${code})`))
        : null,
    ),
  );
}

/** Runs a call from a form or button and shows its refusal beside it. */
export async function act<K extends ChannelName>(
  where: HTMLElement,
  name: K,
  args: Args<K>,
  then: (r: Result<K>) => void,
): Promise<void> {
  where.replaceChildren();
  const r = await call(name, args);
  if (r.ok) then(r.result);
  else where.append(errorBox(r.error.message, r.error.code));
}

export function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function table(
  headers: string[],
  rows: (string | number | Node)[][],
  label: string,
): HTMLElement {
  // A wide table scrolls inside its card instead of pushing the page sideways.
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "aria-label": label },
      h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
    ),
  );
}

/**
 * A screen draws into the page's main area and keeps its own state. `leave`
 * runs when another screen takes over (a watch loop stops there).
 */
export interface Screen {
  show(root: HTMLElement): void;
  leave?(): void;
}
