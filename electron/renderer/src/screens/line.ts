/**
 * The line: one tile per port with each step ticked, a failure in colour,
 * icon and words with what to do, and the shift's counts. Follows the
 * service with `line.watch` while it is on screen.
 */
import type { Result } from "../../../../src/domain/kiosk-api.js";
import { h, replace, shortPort, when } from "../dom.js";
import { refusalText } from "../../../../src/domain/operator-text.js";
import { act, call, errorBox, session, type Screen } from "../kiosk.js";

type LineView = Result<"line.watch">;
type Tile = LineView["tiles"][number];

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

export function lineScreen(announce: HTMLElement): Screen {
  const lineRoot = h("div", { class: "line" });
  let line: LineView | null = null;
  let watching = 0;

  function tileView(t: Tile, waits: string | undefined): HTMLElement {
    const at = STEPS.findIndex(([s]) => s === t.state);
    const [icon, text] = waits ? ["‖", "Device waits for the line"] : STATE_TEXT[t.state];
    return h(
      "section",
      {
        class: `tile state-${t.state}${t.failure ? " has-failure" : ""}`,
        "aria-label": `Port ${shortPort(t.port)}`,
        "data-port": t.port,
        "data-waiting": waits,
      },
      h("h3", {}, shortPort(t.port)),
      h(
        "p",
        { class: "state", "data-state": t.state },
        h("span", { class: "icon", "aria-hidden": "true" }, icon),
        " ",
        text,
      ),
      h("p", { class: "device" }, waits ?? t.deviceId ?? "—"),
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
      t.misbehaving
        ? h(
            "p",
            { class: "alert misbehaving", role: "alert", "data-misbehaving": "" },
            t.misbehaving,
          )
        : null,
      t.failure ? failureView(t.failure, t.port) : null,
      h("p", { class: "counts" }, `${t.confirmed} confirmed · ${t.failed} failed`),
    );
  }

  /**
   * One failure, one instruction: the title and what to do. The station's
   * own message (which may say what an officer or a developer would do) and
   * the code are shown to officers only.
   */
  function failureView(f: NonNullable<Tile["failure"]>, port: string): HTMLElement {
    const words = refusalText(f.code);
    const expert = session.user?.role !== "operator";
    return h(
      "div",
      { class: "failure", role: "alert", "data-code": f.code },
      h(
        "p",
        { class: "failure-title" },
        h("span", { class: "icon", "aria-hidden": "true" }, "⚠ "),
        words.title,
      ),
      h("p", { class: "failure-device" }, f.deviceId ? `Device ${f.deviceId}` : ""),
      h(
        "p",
        { class: "failure-action" },
        h("strong", {}, "What to do: "),
        expert ? words.officer : words.action,
      ),
      expert
        ? h(
            "p",
            { class: "failure-message" },
            f.message,
            h("span", { class: "code" }, ` (${f.code})`),
          )
        : null,
      h(
        "button",
        {
          class: "primary ack",
          "data-focus": `ack-${port}`,
          onclick: () => void acknowledge(port),
        },
        `Acknowledge ${shortPort(port)}`,
      ),
    );
  }

  async function acknowledge(port: string): Promise<void> {
    const r = await call("line.acknowledge", { port });
    if (r.ok) showLine(r.result);
  }

  function showLine(v: LineView): void {
    const before = line;
    line = v;
    const fresh = v.tiles.filter(
      (t) =>
        t.failure &&
        !before?.tiles.find((b) => b.port === t.port && b.failure?.at === t.failure?.at),
    );
    for (const t of fresh)
      announce.textContent = `Port ${shortPort(t.port)} failed: ${refusalText(t.failure!.code).title}`;
    // A notice of a failure nobody has left on screen any more is stale: take it back.
    if (!fresh.length && !v.tiles.some((t) => t.failure)) announce.textContent = "";
    const msg = h("div", { class: "messages" });
    const banner = sessionBanner(v);
    if (!v.running) {
      replace(lineRoot, banner, msg, h("p", { class: "muted" }, "Loading work orders…"));
      void call("workOrders.list", {}).then((r) => {
        if (!r.ok) return replace(lineRoot, banner, errorBox(r.error.message, r.error.code));
        const open = r.result.filter((w) => w.status === "open");
        replace(
          lineRoot,
          banner,
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
      banner,
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
              h(
                "span",
                { class: "value", "data-count": "issued" },
                `${wo.issued} / ${wo.quantity}`,
              ),
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
      h(
        "div",
        { class: "tiles" },
        ...v.tiles.map((t) => tileView(t, v.waiting.find((w) => w.port === t.port)?.deviceId)),
      ),
    );
  }

  /**
   * The line waits: a station fault (what is wrong and what to do) or the end
   * of the signing session. Devices are not failed meanwhile. Operators get
   * the title and one next step; officers also the station's message and code.
   */
  function pausedBanner(p: NonNullable<LineView["paused"]>, running: boolean): HTMLElement {
    const words = refusalText(p.code);
    const expert = session.user?.role !== "operator";
    return h(
      "div",
      {
        class: "banner bad held",
        role: "status",
        "data-line": "paused",
        "data-paused-by": p.by,
        "data-code": p.code,
      },
      h(
        "p",
        {},
        h("span", { "aria-hidden": "true" }, "‖ "),
        h("strong", {}, running ? "Line paused: " : "The line cannot run: "),
        words.title,
      ),
      running ? h("p", {}, "Devices wait on their ports; none is failed.") : null,
      h("p", {}, h("strong", {}, "What to do: "), expert ? words.officer : words.action),
      expert
        ? h(
            "p",
            { class: "failure-message" },
            p.message,
            h("span", { class: "code" }, ` (${p.code})`),
          )
        : null,
      h("p", { class: "muted" }, `Since ${when(p.since)}`),
    );
  }

  function sessionBanner(v: LineView): HTMLElement {
    if (v.paused) return pausedBanner(v.paused, v.running);
    if (v.signing.open)
      return h(
        "p",
        { class: "banner ok", "data-session": "open" },
        h("span", { "aria-hidden": "true" }, "✓ "),
        `Signing session open (${v.signing.officer})`,
      );
    return h(
      "p",
      { class: "banner warn", role: "status", "data-session": "closed" },
      h("span", { "aria-hidden": "true" }, "⚠ "),
      `No signing session is open. ${refusalText("SIGNING_SESSION_REQUIRED").action}`,
    );
  }

  async function watchLine(turn: number): Promise<void> {
    let after = -1;
    while (turn === watching && session.user) {
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

  return {
    show(root) {
      line = null;
      replace(root, lineRoot);
      replace(lineRoot, h("p", { class: "muted" }, "Connecting to the line…"));
      void watchLine(++watching);
    },
    leave() {
      watching++; // the watch loop stops at its next turn
    },
  };
}
