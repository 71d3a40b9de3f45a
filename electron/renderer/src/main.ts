/**
 * The kiosk: what operators and security officers touch. This file is the
 * frame (title bar, tabs, who is signed in) and picks the screen; each
 * screen is its own module under screens/ with its own state, and all of
 * them talk only to `window.linesign` through kiosk.ts.
 */
import { h, replace } from "./dom.js";
import { call, errorBox, session, whenSignedOut, whenUnreachable, type Screen } from "./kiosk.js";
import { loginScreen } from "./screens/login.js";
import { lineScreen } from "./screens/line.js";
import { sessionScreen } from "./screens/session.js";
import { workOrdersScreen } from "./screens/work-orders.js";
import { casScreen } from "./screens/cas.js";
import { targetsScreen } from "./screens/targets.js";
import { auditScreen } from "./screens/audit.js";
import { revokeScreen } from "./screens/revoke.js";
import { shiftScreen } from "./screens/shift.js";
import { mountSigningStrip, signingFor } from "./signing-clock.js";

type OfficerTab =
  "line" | "shift" | "session" | "work-orders" | "cas" | "targets" | "audit" | "revoke";

const bar = document.getElementById("bar")!;
const app = document.getElementById("app")!;
const announce = document.getElementById("announce")!;
// Any officer call counts as use of the session, so "Keep it open" is a read of the station.
mountSigningStrip(document.getElementById("signing-strip")!, () => void call("station.status", {}));

const screens: Record<OfficerTab, Screen> = {
  line: lineScreen(announce),
  shift: shiftScreen(),
  session: sessionScreen(),
  "work-orders": workOrdersScreen(),
  cas: casScreen(),
  targets: targetsScreen(),
  audit: auditScreen(),
  revoke: revokeScreen(),
};
const login = loginScreen((u) => {
  session.user = u;
  tab = u.role === "auditor" ? "audit" : "line";
  render();
  void call("station.status", {}).then((s) => {
    if (!s.ok) return;
    session.station = s.result;
    renderBar();
  });
});
const noScreens: Screen = {
  show: (root) => replace(root, errorBox("The sync service has no kiosk screens.")),
};

let tab: OfficerTab = "line";
let current: Screen | null = null;

const OFFICER_TABS: [OfficerTab, string][] = [
  ["line", "Line"],
  ["shift", "Shift"],
  ["session", "Signing session"],
  ["work-orders", "Work orders"],
  ["cas", "CAs"],
  ["targets", "Targets"],
  ["audit", "Audit"],
  ["revoke", "Revoke"],
];

function renderBar(): void {
  const user = session.user;
  const stationId = session.station?.stationId ?? "";
  if (!user) {
    replace(bar, h("h1", {}, "Linesign"), h("span", { class: "station" }, stationId));
    return;
  }
  const tabs: [OfficerTab, string][] =
    user.role === "officer"
      ? OFFICER_TABS
      : user.role === "auditor"
        ? [
            ["audit", "Audit"],
            ["shift", "Shift"],
          ]
        : user.role === "operator"
          ? [
              ["line", "Line"],
              ["shift", "Shift"],
            ]
          : [];
  replace(
    bar,
    h("h1", {}, "Linesign"),
    h("span", { class: "station" }, stationId),
    tabs.length
      ? h(
          "nav",
          { "aria-label": "Screens" },
          ...tabs.map(([id, label]) =>
            h(
              "button",
              {
                class: `tab${tab === id ? " current" : ""}`,
                "aria-current": tab === id ? "page" : undefined,
                "data-focus": `tab-${id}`,
                onclick: () => {
                  tab = id;
                  render();
                },
              },
              label,
            ),
          ),
        )
      : null,
    h(
      "span",
      { class: "who" },
      `${user.name} (${user.role})`,
      user.role === "officer"
        ? h(
            "button",
            {
              class: "secondary",
              "data-focus": "handover",
              title: "Sign out and leave the signing session open for the operator",
              onclick: handover,
            },
            "Hand over",
          )
        : null,
      h("button", { class: "secondary", "data-focus": "logout", onclick: logout }, "Sign out"),
    ),
  );
}

/** The officer leaves; a signing session they opened keeps running for the line. */
async function handover(): Promise<void> {
  await call("auth.handover", {});
  session.user = null;
  render();
}

async function logout(): Promise<void> {
  await call("auth.logout", {});
  session.user = null;
  render();
}

function screenFor(): Screen {
  const user = session.user;
  if (!user) return login;
  switch (user.role) {
    // Operators and auditors have their own screen and the shift's figures.
    case "operator":
      return tab === "shift" ? screens.shift : screens.line;
    case "auditor":
      return tab === "shift" ? screens.shift : screens.audit;
    case "sync":
      return noScreens;
    case "officer":
      return screens[tab];
  }
}

function render(): void {
  renderBar();
  signingFor(session.user?.role ?? null);
  current?.leave?.();
  current = screenFor();
  current.show(app);
}

whenSignedOut(render);
whenUnreachable(() => void reconnect());

let reconnecting = false;
/**
 * The service went away (a restart, a stop): say so and ask again, more
 * slowly each time, until it answers; then draw the screen again. Its
 * sign-ins went with it, so whoever was signed in signs in again, told why.
 * A browser page holding the kiosk key in memory (adapters/fs/kiosk-key.ts)
 * and Electron's main process reach the new service by themselves: nobody
 * reloads the page.
 */
async function reconnect(): Promise<void> {
  if (reconnecting) return;
  reconnecting = true;
  current?.leave?.();
  current = null;
  const was = session.user;
  replace(
    app,
    h(
      "div",
      { class: "banner warn", role: "status", "data-reconnect": "waiting" },
      h("p", {}, h("strong", {}, "The station service is not answering.")),
      h("p", {}, "The kiosk reconnects by itself as soon as it answers; nothing is lost."),
    ),
  );
  for (let wait = 250; ; wait = Math.min(wait * 2, 4000)) {
    await new Promise((r) => setTimeout(r, wait));
    const who = await call("auth.whoami", {});
    if (!who.ok && who.error.code === "SERVICE_UNREACHABLE") continue;
    session.user = who.ok ? who.result : null;
    break;
  }
  reconnecting = false;
  if (was && !session.user)
    session.notice = "The station service restarted, so everyone was signed out: sign in again.";
  render();
}

/**
 * Who is signed in first, then the station (which needs a sign-in): the
 * screen is drawn once, so a sign-in form being filled is never replaced.
 */
async function start(): Promise<void> {
  const who = await call("auth.whoami", {});
  session.user = who.ok ? who.result : null;
  if (session.user) {
    const s = await call("station.status", {});
    if (s.ok) session.station = s.result;
  }
  render();
}

void start();
