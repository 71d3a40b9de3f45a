/**
 * The kiosk: what operators and security officers touch. It talks only to
 * `window.linesign` (Electron's preload, or the loopback bridge in a browser).
 */
import type {
  ChannelName,
  Args,
  LinesignApi,
  Reply,
  Result,
} from "../../../src/domain/kiosk-api.js";
import { httpBridge } from "./bridge.js";
import { field, form, formValues, h, replace, shortPort, takeSecret, when } from "./dom.js";

declare global {
  interface Window {
    linesign?: LinesignApi;
  }
}

// In Electron the preload put the contract here; in a browser the loopback bridge implements it.
window.linesign ??= httpBridge();
const api: LinesignApi = window.linesign;
type User = NonNullable<Result<"auth.whoami">>;
type LineView = Result<"line.watch">;
type Tile = LineView["tiles"][number];
type OfficerTab = "line" | "session" | "work-orders" | "cas" | "targets" | "audit" | "revoke";

const bar = document.getElementById("bar")!;
const app = document.getElementById("app")!;
const announce = document.getElementById("announce")!;

let user: User | null = null;
let tab: OfficerTab = "line";
let station: Result<"station.status"> | null = null;
let line: LineView | null = null;
let watching = 0;

async function call<K extends ChannelName>(name: K, args: Args<K>): Promise<Reply<Result<K>>> {
  const reply = await api[name](args);
  if (!reply.ok && reply.error.code === "AUTH_REQUIRED" && name !== "auth.login") {
    user = null;
    render();
  }
  return reply;
}

function errorBox(message: string, code?: string): HTMLElement {
  return h(
    "div",
    { class: "alert", role: "alert" },
    h("span", { class: "icon", "aria-hidden": "true" }, "⚠"),
    h("span", {}, message),
    code ? h("span", { class: "code" }, ` (${code})`) : null,
  );
}

/** Runs a call from a form or button and shows its refusal beside it. */
async function act<K extends ChannelName>(
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

// ---------------------------------------------------------------- frame

function renderBar(): void {
  if (!user) {
    replace(
      bar,
      h("h1", {}, "Linesign"),
      h("span", { class: "station" }, station?.stationId ?? ""),
    );
    return;
  }
  const tabs: [OfficerTab, string][] =
    user.role === "officer"
      ? [
          ["line", "Line"],
          ["session", "Signing session"],
          ["work-orders", "Work orders"],
          ["cas", "CAs"],
          ["targets", "Targets"],
          ["audit", "Audit"],
          ["revoke", "Revoke"],
        ]
      : user.role === "auditor"
        ? [["audit", "Audit"]]
        : [];
  replace(
    bar,
    h("h1", {}, "Linesign"),
    h("span", { class: "station" }, station?.stationId ?? ""),
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
  user = null;
  line = null;
  render();
}

async function logout(): Promise<void> {
  await call("auth.logout", {});
  user = null;
  line = null;
  render();
}

function render(): void {
  renderBar();
  watching++; // any earlier watch loop stops at its next turn
  if (!user) return renderLogin();
  if (user.role === "operator") return renderLine();
  if (user.role === "auditor") return renderAudit();
  if (user.role === "sync") return replace(app, errorBox("The sync service has no kiosk screens."));
  switch (tab) {
    case "line":
      return renderLine();
    case "session":
      return renderSession();
    case "work-orders":
      return renderWorkOrders();
    case "cas":
      return renderCas();
    case "targets":
      return renderTargets();
    case "audit":
      return renderAudit();
    case "revoke":
      return renderRevoke();
  }
}

// ---------------------------------------------------------------- sign-in

function renderLogin(): void {
  const msg = h("div", { class: "messages" });
  const f = form(
    { class: "card login", "aria-labelledby": "login-title" },
    [
      h("h2", { id: "login-title" }, "Sign in"),
      ...field(
        "Name",
        h("input", { id: "login-name", name: "name", autocomplete: "username", required: true }),
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
        (u) => {
          user = u;
          tab = "line";
          render();
        },
      ),
  );
  replace(app, f);
  (f.querySelector("#login-name") as HTMLInputElement).focus();
}

// ---------------------------------------------------------------- the line

const STEPS: [Tile["state"], string][] = [
  ["waiting", "Waiting"],
  ["identified", "Identified"],
  ["signing", "CSR received, signing"],
  ["injecting", "Injecting"],
  ["confirmed", "Confirmed"],
];
const STATE_TEXT: Record<Tile["state"], [string, string]> = {
  offline: ["⏻", "Port not connected"],
  waiting: ["…", "Waiting for a device"],
  identified: ["◐", "Identified"],
  signing: ["✎", "CSR received, signing"],
  injecting: ["⇩", "Injecting certificate"],
  confirmed: ["✓", "Confirmed"],
  failed: ["⚠", "Failed"],
};

function tileView(t: Tile): HTMLElement {
  const at = STEPS.findIndex(([s]) => s === t.state);
  const [icon, text] = STATE_TEXT[t.state];
  return h(
    "section",
    {
      class: `tile state-${t.state}${t.failure ? " has-failure" : ""}`,
      "aria-label": `Port ${shortPort(t.port)}`,
      "data-port": t.port,
    },
    h("h3", {}, shortPort(t.port)),
    h(
      "p",
      { class: "state", "data-state": t.state },
      h("span", { class: "icon", "aria-hidden": "true" }, icon),
      " ",
      text,
    ),
    h("p", { class: "device" }, t.deviceId ?? "—"),
    h(
      "ol",
      { class: "steps" },
      ...STEPS.map(([, label], i) =>
        h(
          "li",
          { class: at > i || t.state === "confirmed" ? "done" : at === i ? "now" : "" },
          label,
        ),
      ),
    ),
    t.failure
      ? h(
          "div",
          { class: "failure", role: "alert" },
          h(
            "p",
            { class: "failure-title" },
            h("span", { class: "icon", "aria-hidden": "true" }, "⚠ "),
            t.failure.title,
          ),
          h(
            "p",
            { class: "failure-device" },
            t.failure.deviceId ? `Device ${t.failure.deviceId}` : "",
          ),
          h("p", { class: "failure-message" }, t.failure.message),
          h("p", { class: "failure-action" }, h("strong", {}, "What to do: "), t.failure.action),
          h(
            "button",
            {
              class: "primary ack",
              "data-focus": `ack-${t.port}`,
              onclick: () => void acknowledge(t.port),
            },
            `Acknowledge ${shortPort(t.port)}`,
          ),
        )
      : null,
    h("p", { class: "counts" }, `${t.confirmed} confirmed · ${t.failed} failed`),
  );
}

async function acknowledge(port: string): Promise<void> {
  const r = await call("line.acknowledge", { port });
  if (r.ok) showLine(r.result);
}

const lineRoot = h("div", { class: "line" });

function showLine(v: LineView): void {
  const before = line;
  line = v;
  const fresh = v.tiles.filter(
    (t) =>
      t.failure && !before?.tiles.find((b) => b.port === t.port && b.failure?.at === t.failure?.at),
  );
  for (const t of fresh)
    announce.textContent = `Port ${shortPort(t.port)} failed: ${t.failure!.title}`;
  const msg = h("div", { class: "messages" });
  const session = v.signing.open
    ? h(
        "p",
        { class: "banner ok" },
        h("span", { "aria-hidden": "true" }, "✓ "),
        `Signing session open (${v.signing.officer})`,
      )
    : h(
        "p",
        { class: "banner warn", role: "status" },
        h("span", { "aria-hidden": "true" }, "⚠ "),
        "No signing session: the security officer must open one before devices can be signed.",
      );
  if (!v.running) {
    replace(lineRoot, session, msg, h("p", { class: "muted" }, "Loading work orders…"));
    void call("workOrders.list", {}).then((r) => {
      if (!r.ok) return replace(lineRoot, session, errorBox(r.error.message, r.error.code));
      const open = r.result.filter((w) => w.status === "open");
      replace(
        lineRoot,
        session,
        h("h2", {}, "Choose a work order"),
        open.length === 0
          ? h("p", {}, "No work order is open. Ask the security officer for one.")
          : null,
        h(
          "div",
          { class: "choices" },
          ...open.map((w) =>
            h(
              "button",
              {
                class: "choice",
                "data-focus": `wo-${w.id}`,
                onclick: () =>
                  void act(msg, "line.start", { workOrder: w.id }, (lv) => showLine(lv)),
              },
              h("span", { class: "choice-title" }, `Start line: ${w.id}`),
              h("span", {}, `profile ${w.profile} · ${w.issued} of ${w.quantity} issued`),
            ),
          ),
        ),
        msg,
      );
    });
    return;
  }
  const wo = v.workOrderCounts;
  replace(
    lineRoot,
    session,
    h(
      "div",
      { class: "summary" },
      h(
        "div",
        { class: "figure" },
        h("span", { class: "label" }, "Work order"),
        h("span", { class: "value", "data-count": "work-order" }, v.workOrder ?? ""),
      ),
      wo
        ? h(
            "div",
            { class: "figure" },
            h("span", { class: "label" }, "Issued"),
            h("span", { class: "value", "data-count": "issued" }, `${wo.issued} / ${wo.quantity}`),
          )
        : null,
      h(
        "div",
        { class: "figure" },
        h("span", { class: "label" }, "Confirmed this shift"),
        h("span", { class: "value", "data-count": "shift-confirmed" }, String(v.shift.confirmed)),
      ),
      h(
        "div",
        { class: "figure" },
        h("span", { class: "label" }, "Failed this shift"),
        h("span", { class: "value", "data-count": "shift-failed" }, String(v.shift.failed)),
      ),
      h(
        "button",
        {
          class: "secondary",
          "data-focus": "stop",
          disabled: v.stopping,
          onclick: () => void act(msg, "line.stop", {}, (lv) => showLine(lv)),
        },
        v.stopping ? "Stopping…" : "Stop line",
      ),
    ),
    msg,
    h("div", { class: "tiles" }, ...v.tiles.map(tileView)),
  );
}

async function watchLine(turn: number): Promise<void> {
  let after = -1;
  while (turn === watching && user) {
    const r = await call("line.watch", { after, waitMs: 20_000 });
    if (turn !== watching) return;
    if (!r.ok) {
      replace(lineRoot, errorBox(r.error.message, r.error.code));
      return;
    }
    // Redraw the chooser only when the line starts or stops; the board on every change.
    if (r.result.running || line?.running !== false || after === -1) showLine(r.result);
    else line = r.result;
    after = r.result.version;
  }
}

function renderLine(): void {
  line = null;
  replace(app, lineRoot);
  replace(lineRoot, h("p", { class: "muted" }, "Connecting to the line…"));
  void watchLine(watching);
}

// ---------------------------------------------------------------- officer

function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

function table(headers: string[], rows: (string | number | Node)[][], label: string): HTMLElement {
  return h(
    "table",
    { "aria-label": label },
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}

function renderSession(): void {
  const msg = h("div", { class: "messages" });
  void call("station.status", {}).then((r) => {
    if (!r.ok) return replace(app, errorBox(r.error.message, r.error.code));
    const s = r.result.signing;
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
        void act(msg, "signing.open", { pin: takeSecret(f, "pin") }, () => renderSession()),
    );
    replace(
      app,
      section(
        "Signing session",
        h(
          "p",
          { class: `banner ${s.open ? "ok" : "warn"}`, "data-session": s.open ? "open" : "closed" },
          s.open
            ? `Open, by ${s.officer}, since ${when(s.openedAt)}; ${s.uses} signature(s). It closes after ${Math.round(s.idleTimeoutSeconds / 60)} min without use (at ${when(s.idleEndsAt)}).`
            : "Closed: nothing can be signed. The PIN is kept in the station's memory only while a session is open.",
        ),
        s.open
          ? h(
              "button",
              {
                class: "secondary",
                onclick: () => void act(msg, "signing.close", {}, () => renderSession()),
              },
              "Close signing session",
            )
          : pinForm,
        msg,
      ),
    );
  });
}

function renderWorkOrders(): void {
  const msg = h("div", { class: "messages" });
  void call("workOrders.list", {}).then((r) => {
    if (!r.ok) return replace(app, errorBox(r.error.message, r.error.code));
    const create = form(
      { class: "grid-form" },
      [
        ...field("Id (optional)", h("input", { id: "wo-id", name: "id" })),
        ...field(
          "Profile",
          h("input", { id: "wo-profile", name: "profile", required: true, value: "default" }),
        ),
        ...field(
          "Quantity",
          h("input", {
            id: "wo-quantity",
            name: "quantity",
            type: "number",
            min: 1,
            required: true,
          }),
        ),
        ...field("Device id pattern (optional)", h("input", { id: "wo-pattern", name: "pattern" })),
        h("button", { type: "submit", class: "primary" }, "Create work order"),
      ],
      (v) =>
        void act(
          msg,
          "workOrders.create",
          {
            profile: v.profile ?? "",
            quantity: Number(v.quantity),
            ...(v.id ? { id: v.id } : {}),
            ...(v.pattern ? { pattern: v.pattern } : {}),
          },
          () => renderWorkOrders(),
        ),
    );
    replace(
      app,
      section(
        "Work orders",
        table(
          ["Id", "Profile", "Issued", "Quantity", "Status", "Created by", ""],
          r.result.map((w) => [
            w.id,
            w.profile,
            w.issued,
            w.quantity,
            w.status,
            w.createdBy,
            w.status === "open"
              ? h(
                  "button",
                  {
                    class: "secondary",
                    onclick: () =>
                      void act(msg, "workOrders.close", { id: w.id }, () => renderWorkOrders()),
                  },
                  `Close ${w.id}`,
                )
              : "",
          ]),
          "Work orders",
        ),
      ),
      section("New work order", create, msg),
    );
  });
}

function renderCas(): void {
  void call("cas.list", {}).then((r) => {
    if (!r.ok) return replace(app, errorBox(r.error.message, r.error.code));
    replace(
      app,
      section(
        "Certificate authorities",
        table(
          ["Label", "Status", "Kind", "Key", "Subject", "Valid until"],
          r.result.map((c) => [
            c.label,
            h(
              "span",
              { class: `status status-${c.status}` },
              c.status + (c.development ? " (development)" : ""),
            ),
            c.kind,
            c.keyType,
            c.subject,
            when(c.notAfter),
          ]),
          "Certificate authorities",
        ),
      ),
    );
  });
}

function renderTargets(): void {
  void call("targets.list", {}).then((r) => {
    if (!r.ok) return replace(app, errorBox(r.error.message, r.error.code));
    replace(
      app,
      section(
        "AWS IoT targets",
        r.result.length === 0 ? h("p", {}, "No targets yet (linesign target add).") : null,
        table(
          ["Target", "Region", "CA mode", "Devices", "Pending", "Uploaded", "Failed", "Last sync"],
          r.result.map((t) => [
            t.name,
            t.region,
            t.caMode,
            t.deviceRegistration,
            t.pending,
            t.uploaded,
            t.failed,
            t.lastSync ? `${when(t.lastSync.at)}: ${t.lastSync.outcome}` : "never",
          ]),
          "AWS IoT targets",
        ),
      ),
    );
  });
}

function renderAudit(): void {
  const verdict = h("div", { class: "verdict", "aria-live": "polite" });
  const msg = h("div", { class: "messages" });
  const logBox = h("div", { class: "log" });
  const filters = form(
    { class: "row" },
    [
      ...field(
        "Action",
        h("input", {
          id: "f-action",
          name: "action",
          placeholder: "e.g. issuance.reject or signing.",
        }),
      ),
      ...field("Who", h("input", { id: "f-actor", name: "actor" })),
      ...field(
        "Outcome",
        h(
          "select",
          { id: "f-outcome", name: "outcome" },
          ...["any", "ok", "refused", "failed"].map((o) =>
            h("option", { value: o === "any" ? "" : o }, o),
          ),
        ),
      ),
      h("button", { type: "submit", class: "secondary" }, "Show"),
    ],
    () => load(),
  );
  const load = () => {
    const v = formValues(filters);
    void act(
      logBox,
      "audit.log",
      {
        limit: 200,
        ...(v.action ? { action: v.action } : {}),
        ...(v.actor ? { actor: v.actor } : {}),
        ...(v.outcome ? { outcome: v.outcome as "ok" | "refused" | "failed" } : {}),
      },
      (rows) =>
        logBox.replaceChildren(
          table(
            ["#", "When", "Who", "Action", "Subject", "Outcome", "Message"],
            rows.map((e) => [
              e.seq,
              when(e.ts),
              e.actor,
              e.action,
              e.subject ?? "",
              h(
                "span",
                { class: `outcome outcome-${e.outcome}` },
                e.outcome + (e.code ? ` ${e.code}` : ""),
              ),
              e.message ?? "",
            ]),
            "Event log",
          ),
        ),
    );
  };
  replace(
    app,
    section(
      "Verify the log",
      h(
        "div",
        { class: "row" },
        h(
          "button",
          {
            class: "primary",
            onclick: () =>
              void act(msg, "audit.verify", {}, (v) => {
                const c = v.counts;
                verdict.replaceChildren(
                  h(
                    "p",
                    {
                      class: `banner ${v.ok ? "ok" : "bad"}`,
                      "data-verdict": v.ok ? "intact" : "broken",
                    },
                    h("span", { "aria-hidden": "true" }, v.ok ? "✓ " : "⚠ "),
                    v.message,
                  ),
                  h(
                    "dl",
                    { class: "counts-list" },
                    ...(
                      [
                        ["Issued", c.issued],
                        ["Confirmed", c.confirmed],
                        ["Unconfirmed", c.unconfirmed],
                        ["Rejected", c.rejected],
                        ["Revoked", c.revoked],
                      ] as [string, number][]
                    ).flatMap(([k, n]) => [
                      h("dt", {}, k),
                      h("dd", { "data-count": k.toLowerCase() }, String(n)),
                    ]),
                  ),
                  Object.keys(c.rejectedByReason).length
                    ? table(
                        ["Rejected because", "Count"],
                        Object.entries(c.rejectedByReason).map(([k, n]) => [k, n]),
                        "Rejections by reason",
                      )
                    : "",
                );
                load();
              }),
          },
          "Verify now",
        ),
        h(
          "button",
          {
            class: "secondary",
            onclick: () =>
              void act(msg, "audit.export", {}, (x) => {
                const bytes = Uint8Array.from(atob(x.base64), (ch) => ch.charCodeAt(0));
                const a = h("a", {
                  href: URL.createObjectURL(new Blob([bytes], { type: "application/json" })),
                  download: x.fileName,
                }) as HTMLAnchorElement;
                a.click();
                msg.replaceChildren(
                  h("p", { class: "banner ok" }, `Exported ${x.events} entries as ${x.fileName}.`),
                );
              }),
          },
          "Export audit bundle",
        ),
      ),
      verdict,
      msg,
    ),
    section("Event log", filters, logBox),
  );
  load();
}

function renderRevoke(): void {
  const msg = h("div", { class: "messages" });
  const reasons = [
    "keyCompromise",
    "superseded",
    "cessationOfOperation",
    "affiliationChanged",
    "cACompromise",
    "privilegeWithdrawn",
    "unspecified",
  ];
  const revoke = form(
    { class: "grid-form", id: "revoke-form" },
    [
      ...field("Serial (hex)", h("input", { id: "rv-serial", name: "serial" })),
      ...field("or device id", h("input", { id: "rv-device", name: "deviceId" })),
      ...field(
        "Reason",
        h(
          "select",
          { id: "rv-reason", name: "reason" },
          ...reasons.map((r) => h("option", { value: r }, r)),
        ),
      ),
      h("button", { type: "submit", class: "danger" }, "Revoke"),
    ],
    (v, f) =>
      void act(
        msg,
        "revocation.revoke",
        {
          reason: v.reason as Args<"revocation.revoke">["reason"],
          ...(v.serial ? { serial: v.serial } : {}),
          ...(v.deviceId ? { deviceId: v.deviceId } : {}),
        },
        (r) => {
          msg.replaceChildren(
            h(
              "p",
              { class: "banner ok" },
              `Revoked: ${r.revoked.map((x) => `${x.serial} (${x.deviceId})`).join(", ")}. Publish a new CRL and sync.`,
            ),
          );
          f.reset();
        },
      ),
  );
  const reMsg = h("div", { class: "messages" });
  const reissue = form(
    { class: "grid-form", id: "reissue-form" },
    [
      ...field("Device id", h("input", { id: "ri-device", name: "deviceId", required: true })),
      ...field(
        "Why",
        h("input", { id: "ri-reason", name: "reason", required: true, maxlength: 500 }),
      ),
      h("button", { type: "submit", class: "primary" }, "Approve one re-issue"),
    ],
    (v, f) =>
      void act(
        reMsg,
        "reissue.approve",
        { deviceId: v.deviceId ?? "", reason: v.reason ?? "" },
        (a) => {
          reMsg.replaceChildren(
            h(
              "p",
              { class: "banner ok" },
              `Approved: the next certificate for ${a.deviceId} supersedes its live one (approval ${a.id}).`,
            ),
          );
          f.reset();
        },
      ),
  );
  replace(
    app,
    section("Revoke a certificate", revoke, msg),
    section("Approve a re-issue", reissue, reMsg),
  );
}

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  const s = await call("station.status", {});
  if (s.ok) station = s.result;
  const who = await call("auth.whoami", {});
  user = who.ok ? who.result : null;
  render();
}

void start();
