/** The signing session: the officer opens it with the token's PIN, or closes it. */
import { field, form, h, replace, takeSecret, when } from "../dom.js";
import { act, call, errorBox, section, type Screen } from "../kiosk.js";

export function sessionScreen(): Screen {
  function show(root: HTMLElement, refusal: HTMLElement | null = null): void {
    const msg = h("div", { class: "messages" }, refusal);
    void call("station.status", {}).then((r) => {
      if (!r.ok) return replace(root, errorBox(r.error.message, r.error.code));
      const s = r.result.signing;
      const pin = r.result.pin;
      const attempts = h(
        "p",
        {
          class: `banner ${pin.failures ? "bad" : "muted"}`,
          "data-pin-attempts": pin.attemptsLeft,
        },
        pin.attemptsLeft === 0
          ? "The station has stopped presenting this token's PIN after too many wrong attempts: unlock it with the SO PIN (linesign token unlock)."
          : pin.failures
            ? `${pin.failures} wrong PIN${pin.failures === 1 ? "" : "s"} in a row: ${pin.attemptsLeft} attempt${pin.attemptsLeft === 1 ? "" : "s"} left before the station stops presenting the PIN.`
            : `${pin.attemptsLeft} attempts allowed before the station stops presenting the PIN.`,
      );
      const pinForm = form(
        { class: "row" },
        [
          ...field(
            `User PIN of token ${r.result.token}`,
            h("input", {
              id: "pin",
              name: "pin",
              type: "password",
              autocomplete: "off",
              inputmode: "numeric",
              required: true,
            }),
          ),
          h("button", { type: "submit", class: "primary" }, "Open signing session"),
        ],
        (_v, f) =>
          void call("signing.open", { pin: takeSecret(f, "pin") }).then((o) => {
            // Drawn again either way: a wrong PIN changes the attempts left.
            show(root, o.ok ? null : errorBox(o.error.message, o.error.code));
          }),
      );
      replace(
        root,
        section(
          "Signing session",
          h(
            "p",
            {
              class: `banner ${s.open ? "ok" : "warn"}`,
              "data-session": s.open ? "open" : "closed",
            },
            s.open
              ? `Open, by ${s.officer}, since ${when(s.openedAt)}; ${s.uses} signature(s). It closes after ${Math.round(s.idleTimeoutSeconds / 60)} min without use (at ${when(s.idleEndsAt)}).`
              : "Closed: nothing can be signed. The PIN is kept in the station's memory only while a session is open.",
          ),
          s.open
            ? h(
                "button",
                {
                  class: "secondary",
                  onclick: () => void act(msg, "signing.close", {}, () => show(root)),
                },
                "Close signing session",
              )
            : pinForm,
          s.open ? null : attempts,
          msg,
        ),
      );
    });
  }
  return { show };
}
