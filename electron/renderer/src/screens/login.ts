/** Sign-in: a name and a passphrase, read raw and cleared from the page at once. */
import { field, form, h, replace, takeSecret } from "../dom.js";
import { act, call, session, type Screen, type User } from "../kiosk.js";

export function loginScreen(signedIn: (u: User) => void): Screen {
  return {
    show(root) {
      const msg = h("div", { class: "messages" });
      // Said once: why the kiosk is back at the sign-in (the service restarted).
      const notice = session.notice
        ? h(
            "p",
            { class: "banner warn", role: "status", "data-notice": "restarted" },
            session.notice,
          )
        : null;
      session.notice = null;
      const welcome = h("div", { class: "welcome", "aria-live": "polite" });
      // After a hand-over the officer is gone but the session is not: say so, and who opened it.
      void call("kiosk.welcome", {}).then((r) => {
        if (!r.ok) return;
        const sg = r.result.signing;
        replace(
          welcome,
          sg.open
            ? h(
                "p",
                { class: "banner ok", "data-welcome": "session-open" },
                h("span", { "aria-hidden": "true" }, "✓ "),
                `A signing session is open (opened by ${sg.officer}) and waiting for an operator. Sign in to run the line.`,
              )
            : h(
                "p",
                { class: "banner warn", "data-welcome": "no-session" },
                h("span", { "aria-hidden": "true" }, "⚠ "),
                "No signing session is open: a security officer signs in first to open one.",
              ),
        );
      });
      const f = form(
        { class: "card login", "aria-labelledby": "login-title" },
        [
          h("h2", { id: "login-title" }, "Sign in"),
          notice,
          welcome,
          ...field(
            "Name",
            h("input", {
              id: "login-name",
              name: "name",
              autocomplete: "username",
              required: true,
            }),
          ),
          ...field(
            "Passphrase",
            h("input", {
              id: "login-pass",
              name: "passphrase",
              type: "password",
              autocomplete: "current-password",
              required: true,
            }),
          ),
          h("button", { type: "submit", class: "primary" }, "Sign in"),
          msg,
        ],
        (v, f) =>
          void act(
            msg,
            "auth.login",
            { name: v.name ?? "", passphrase: takeSecret(f, "passphrase") },
            signedIn,
          ),
      );
      replace(root, f);
      (f.querySelector("#login-name") as HTMLInputElement).focus();
    },
  };
}
