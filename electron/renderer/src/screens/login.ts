/** Sign-in: a name and a passphrase, read raw and cleared from the page at once. */
import { field, form, h, replace, takeSecret } from "../dom.js";
import { act, type Screen, type User } from "../kiosk.js";

export function loginScreen(signedIn: (u: User) => void): Screen {
  return {
    show(root) {
      const msg = h("div", { class: "messages" });
      const f = form(
        { class: "card login", "aria-labelledby": "login-title" },
        [
          h("h2", { id: "login-title" }, "Sign in"),
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
