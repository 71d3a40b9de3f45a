/**
 * The shift at a glance, for operators, officers and auditors: devices
 * confirmed per hour, first-pass yield, failures by reason over time and per
 * port, and each work order's progress toward its quantity. The figures come
 * from the station (line.shift, counted from the log); the charts are drawn
 * on canvases by Chart.js, bundled into the page, and every figure is also
 * in a table as text.
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";
import type { Args, Result } from "../../../../src/domain/kiosk-api.js";
import { refusalText } from "../../../../src/domain/operator-text.js";
import { field, form, h, replace, shortPort, when } from "../dom.js";
import { call, errorBox, section, session, table, type Screen } from "../kiosk.js";
import "./shift.css";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);
// Readable at arm's length, like the rest of the kiosk.
Chart.defaults.font.size = 14;
Chart.defaults.font.family = '"DejaVu Sans", "Noto Sans", system-ui, sans-serif';
Chart.defaults.color = "#333";

type Shift = Result<"line.shift">;

/** Colours for reasons, told apart also by their order in the legend and the tables. */
const REASON_COLOURS = ["#a4000f", "#b35c00", "#6a3d9a", "#1f78b4", "#33a02c", "#555555"];

const css = (name: string, fallback: string): string =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

const percent = (y: number | null): string =>
  y === null ? "none tried" : `${Math.round(y * 100)}%`;

/** "2026-12-02 14:00" in the station's local time, as every screen writes times. */
const hourLabel = (iso: string): string => when(iso).slice(0, 16);

/** A reason as the person signed in reads it: operators get words only; others also the code. */
function reasonLabel(code: string): string {
  const title = refusalText(code).title;
  return session.user?.role === "operator" ? title : `${title} (${code})`;
}

/** "2026-12-02 06:00" (local time, as typed) as ISO 8601, or null when it is not such a time. */
export function localTime(text: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})$/.exec(text.trim());
  if (!m) return null;
  const [y, mo, d, hh, mm] = m.slice(1).map(Number) as [number, number, number, number, number];
  const t = new Date(y, mo - 1, d, hh, mm);
  if (t.getMonth() !== mo - 1 || t.getDate() !== d || hh > 23 || mm > 59) return null;
  return t.toISOString();
}

export function shiftScreen(): Screen {
  let charts: Chart[] = [];
  let query: Args<"line.shift"> = {};
  let hours = 12;

  const clear = () => {
    for (const c of charts) c.destroy();
    charts = [];
  };

  function chart(label: string, key: string, config: ChartConfiguration<"bar">): HTMLElement {
    const canvas = h("canvas", { role: "img", "aria-label": label, "data-chart": key });
    const box = h("div", { class: "chart" }, canvas);
    // Drawn once the canvas is on the page (Chart.js sizes it from its box).
    queueMicrotask(() => {
      if (!canvas.isConnected) return;
      charts.push(new Chart(canvas as HTMLCanvasElement, config));
    });
    return box;
  }

  const base = (stacked: boolean): ChartConfiguration<"bar">["options"] => ({
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { position: "bottom" } },
    scales: {
      x: { stacked },
      y: { stacked, beginAtZero: true, ticks: { precision: 0 } },
    },
  });

  function windowForm(root: HTMLElement, msg: HTMLElement): HTMLElement {
    return form(
      { class: "row shift-window", "aria-label": "Shift window" },
      [
        ...field(
          "Last",
          h(
            "select",
            { id: "shift-hours", name: "hours" },
            ...[4, 8, 12, 24, 168].map((n) =>
              h(
                "option",
                { value: n, selected: n === hours && !query.from },
                n === 168 ? "7 days" : `${n} hours`,
              ),
            ),
          ),
        ),
        ...field(
          "or from",
          h("input", {
            id: "shift-from",
            name: "from",
            placeholder: "2026-12-02 06:00",
            size: 16,
            value: query.from ? hourLabel(query.from) : "",
          }),
        ),
        ...field(
          "to",
          h("input", {
            id: "shift-to",
            name: "to",
            placeholder: "now",
            size: 16,
            value: query.to ? when(query.to).slice(0, 16) : "",
          }),
        ),
        h("button", { type: "submit", class: "primary", "data-focus": "shift-show" }, "Show"),
      ],
      (v) => {
        msg.replaceChildren();
        const from = v.from ? localTime(v.from) : undefined;
        const to = v.to ? localTime(v.to) : undefined;
        if (from === null || to === null)
          return void msg.append(
            errorBox("Write times as year-month-day hour:minute, e.g. 2026-12-02 06:00."),
          );
        hours = Number(v.hours ?? 12);
        query = { ...(from ? { from } : { hours }), ...(to ? { to } : {}) };
        load(root);
      },
    );
  }

  function draw(root: HTMLElement, f: Shift): void {
    clear();
    const msg = h("div", { class: "messages" });
    const ok = css("--ok", "#0b6b2e");
    const bad = css("--bad", "#a4000f");
    const labels = f.hours.map((x) => hourLabel(x).slice(11));
    const fp = f.firstPass;
    const figure = (label: string, key: string, value: string) =>
      h(
        "div",
        { class: "figure" },
        h("span", { class: "label" }, label),
        h("span", { class: "value", "data-figure": key }, value),
      );
    replace(
      root,
      section(
        "Shift",
        windowForm(root, msg),
        msg,
        h(
          "p",
          { class: "counts", "data-shift": "window" },
          `From ${when(f.from).slice(0, 16)} to ${when(f.to).slice(0, 16)}`,
        ),
        h(
          "div",
          { class: "summary", "data-shift": "figures" },
          figure("Confirmed", "confirmed", String(f.totals.confirmed)),
          figure("Failed", "failed", String(f.totals.failed)),
          figure(
            "First-pass yield",
            "first-pass",
            fp.tried === 0
              ? percent(null)
              : `${percent(fp.yield)} (${fp.firstPass} of ${fp.tried} devices)`,
          ),
          h(
            "button",
            { class: "secondary", "data-focus": "shift-refresh", onclick: () => load(root) },
            "Refresh",
          ),
        ),
      ),
      h(
        "div",
        { class: "shift-charts" },
        section(
          "Devices confirmed per hour",
          chart(`Devices confirmed and failed per hour`, "per-hour", {
            type: "bar",
            data: {
              labels,
              datasets: [
                { label: "Confirmed", data: f.confirmed, backgroundColor: ok },
                { label: "Failed", data: f.failed, backgroundColor: bad },
              ],
            },
            options: base(false),
          }),
        ),
        section(
          "Failures by reason over time",
          f.reasons.length
            ? chart("Failures by reason per hour", "reasons", {
                type: "bar",
                data: {
                  labels,
                  datasets: f.reasons.map((r, i) => ({
                    label: reasonLabel(r.code),
                    data: r.perHour,
                    backgroundColor: REASON_COLOURS[i % REASON_COLOURS.length],
                  })),
                },
                options: base(true),
              })
            : h("p", { "data-shift": "no-failures" }, "No failures in this window."),
        ),
        section(
          "Per port",
          f.ports.length
            ? chart("Devices confirmed and failed per port", "ports", {
                type: "bar",
                data: {
                  labels: f.ports.map((p) => shortPort(p.port)),
                  datasets: [
                    {
                      label: "Confirmed",
                      data: f.ports.map((p) => p.confirmed),
                      backgroundColor: ok,
                    },
                    { label: "Failed", data: f.ports.map((p) => p.failed), backgroundColor: bad },
                  ],
                },
                options: base(false),
              })
            : h("p", {}, "No device reached the line in this window."),
        ),
        section(
          "Work orders",
          f.workOrders.length
            ? h(
                "div",
                { class: "work-orders" },
                ...f.workOrders.map((w) =>
                  h(
                    "div",
                    { class: "work-order", "data-work-order": w.id },
                    h("span", { class: "label" }, `${w.id} (${w.status})`),
                    h("progress", {
                      max: w.quantity,
                      value: Math.min(w.issued, w.quantity),
                      "aria-label": `${w.id}: ${w.issued} of ${w.quantity} issued`,
                    }),
                    h(
                      "span",
                      { class: "value", "data-progress": w.id },
                      `${w.issued} / ${w.quantity} issued, ${w.confirmed} confirmed (${w.shiftConfirmed} in this window)`,
                    ),
                  ),
                ),
              )
            : h("p", {}, "No work order is open."),
        ),
      ),
      section(
        "The figures",
        h("h3", {}, "Per hour"),
        table(
          ["Hour", "Confirmed", "Failed"],
          f.hours.map((x, i) => [
            h("span", { "data-hour": x }, hourLabel(x)),
            f.confirmed[i] ?? 0,
            f.failed[i] ?? 0,
          ]),
          "Per hour",
        ),
        f.reasons.length ? h("h3", {}, "Failures by reason") : null,
        f.reasons.length
          ? table(
              ["Reason", "Failures"],
              f.reasons.map((r) => [
                h("span", { "data-reason": r.code }, reasonLabel(r.code)),
                r.total,
              ]),
              "Failures by reason",
            )
          : null,
        f.ports.length ? h("h3", {}, "Per port") : null,
        f.ports.length
          ? table(
              ["Port", "Confirmed", "Failed", "First-pass yield"],
              f.ports.map((p) => [
                h("span", { "data-port": p.port }, p.port),
                p.confirmed,
                p.failed,
                p.tried ? `${percent(p.yield)} (${p.firstPass} of ${p.tried})` : percent(null),
              ]),
              "Per port",
            )
          : null,
      ),
    );
  }

  function load(root: HTMLElement): void {
    void call("line.shift", query).then((r) => {
      if (!r.ok) {
        clear();
        const msg = h("div", { class: "messages" }, errorBox(r.error.message, r.error.code));
        return replace(root, section("Shift", windowForm(root, msg), msg));
      }
      draw(root, r.result);
    });
  }

  return { show: load, leave: clear };
}
