/**
 * `linesign audit report --format html`: a printable shift report in one
 * self-contained file. The figures as tables with simple inline SVG bars; no
 * script, nothing fetched (its own policy forbids both), readable in any
 * browser and on paper. Every string that comes from the log (device ids,
 * ports, work orders, operators, reasons) is HTML-escaped by the template.
 */
import type { Report, ReportGroup } from "../app/report.js";
import type { ShiftFigures } from "../domain/shift.js";
import { refusalText } from "../domain/operator-text.js";

/** A fragment already made of escaped parts. */
class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text as HTML: safe in element content and in quoted attributes. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

type Part = Html | string | number | null | undefined | Part[];

const part = (v: Part): string =>
  v === null || v === undefined
    ? ""
    : Array.isArray(v)
      ? v.map(part).join("")
      : v instanceof Html
        ? v.text
        : escapeHtml(v);

/** The template: every interpolated value is escaped unless it is already Html. */
function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => (out += part(v) + strings[i + 1]!));
  return new Html(out);
}

const pad = (n: number) => String(n).padStart(2, "0");
/** ISO 8601 date and 24-hour time in the station's local time, as the kiosk shows times. */
function when(iso: string, seconds = false): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const hm = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return seconds ? `${hm}:${pad(d.getSeconds())}` : hm;
}
/** The station's offset from UTC at a time, as ISO 8601 writes it (+01:00). */
function offset(iso: string): string {
  const m = -new Date(iso).getTimezoneOffset();
  return `${m < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(m) / 60))}:${pad(Math.abs(m) % 60)}`;
}

const OK = "#0b6b2e";
const BAD = "#a4000f";
const percent = (y: number | null) => (y === null ? "none tried" : `${Math.round(y * 100)}%`);

/** A horizontal bar of `n` out of `max`, in one colour. */
function bar(n: number, max: number, colour: string, label: string): Html {
  const w = max > 0 ? Math.round((n / max) * 200) : 0;
  return html`<svg class="bar" width="204" height="14" role="img" aria-label="${label}">
    <rect x="0" y="1" width="${w}" height="12" fill="${colour}" />
  </svg>`;
}

/** Devices confirmed and failed per hour, as vertical bars side by side. */
function hourChart(f: ShiftFigures): Html {
  const n = f.hours.length;
  const slot = Math.max(8, Math.min(48, Math.floor(900 / Math.max(1, n))));
  const left = 36;
  const top = 10;
  const plot = 140;
  const width = left + n * slot + 10;
  const height = top + plot + 34;
  const max = Math.max(1, ...f.confirmed, ...f.failed);
  const y = (v: number) => top + plot - Math.round((v / max) * plot);
  const every = Math.ceil(n / 12);
  const bars = f.hours.map((hour, i) => {
    const x = left + i * slot;
    const bw = Math.max(2, Math.floor((slot - 4) / 2));
    const c = f.confirmed[i] ?? 0;
    const b = f.failed[i] ?? 0;
    return html`<g
      ><title>${when(hour)}: ${c} confirmed, ${b} failed</title
      ><rect
        x="${x + 1}"
        y="${y(c)}"
        width="${bw}"
        height="${top + plot - y(c)}"
        fill="${OK}"
      /><rect
        x="${x + 1 + bw}"
        y="${y(b)}"
        width="${bw}"
        height="${top + plot - y(b)}"
        fill="${BAD}"
      />${
        i % every === 0
          ? html`<text x="${x + 1}" y="${top + plot + 14}" font-size="10"
              >${when(hour).slice(11, 13)}</text
            >`
          : ""
      }</g
    >`;
  });
  return html`<svg
    class="chart"
    width="${width}"
    height="${height}"
    viewBox="0 0 ${width} ${height}"
    role="img"
    aria-label="Devices confirmed (green) and failed (red) per hour"
  >
    <line x1="${left}" y1="${top + plot}" x2="${width - 10}" y2="${top + plot}" stroke="#444" />
    <text x="0" y="${top + 8}" font-size="10">${max}</text>
    <text x="0" y="${top + plot}" font-size="10">0</text>
    ${bars}
    <text x="${left}" y="${height - 4}" font-size="10">
      hour of the day (station time); green confirmed, red failed
    </text>
  </svg>`;
}

const reasonName = (code: string) => html`${refusalText(code).title} <code>${code}</code>`;

function groupRow(name: string, g: ReportGroup): Html {
  const rejected = Object.entries(g.rejected)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const uploaded = Object.entries(g.uploaded)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return html`<tr>
    <td>${name}</td>
    <td class="n">${g.issued}</td>
    <td class="n">${g.confirmed}</td>
    <td class="n">${g.unconfirmed}</td>
    <td class="n">${g.reissued}</td>
    <td class="n">${g.revoked}</td>
    <td>${rejected || "none"}</td>
    <td>${uploaded || "none"}</td>
  </tr>`;
}

/** The header of a table of groupRow rows. */
function groupHead(): Html {
  return html`<thead>
    <tr>
      <th></th>
      <th>Issued</th>
      <th>Confirmed</th>
      <th>Unconfirmed</th>
      <th>Re-issued</th>
      <th>Revoked</th>
      <th>Rejected by reason</th>
      <th>Uploaded per target</th>
    </tr>
  </thead>`;
}

function groupTable(title: string, groups: Record<string, ReportGroup>): Html {
  const rows = Object.entries(groups);
  if (rows.length === 0)
    return html`<h3>${title}</h3>
      <p>None in this window.</p>`;
  return html`<h3>${title}</h3>
    <table>
      ${groupHead()}
      <tbody>
        ${rows.map(([k, g]) => groupRow(k, g))}
      </tbody>
    </table>`;
}

const STYLE = `body{font-family:"DejaVu Sans","Noto Sans",sans-serif;font-size:11pt;color:#111;margin:1.5em}
h1{font-size:16pt;margin:0 0 .2em}h2{font-size:13pt;margin:1.2em 0 .4em;border-bottom:1px solid #999}h3{font-size:11pt}
table{border-collapse:collapse;margin:.4em 0 1em}th,td{border-bottom:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}.figures{display:flex;gap:2.5em;margin:.6em 0}.figures div{display:flex;flex-direction:column}
.figures b{font-size:18pt}code{font-size:9pt;color:#444}.muted{color:#555}svg.chart{display:block;margin:.4em 0}
@media print{body{margin:0}h2{break-after:avoid}table,svg{break-inside:avoid}}`;

export interface ShiftReportInput {
  stationId: string;
  report: Report;
  shift: ShiftFigures;
  /** When the report was made. */
  at: Date;
}

/** The shift report as one HTML document (UTF-8), with no script and nothing to fetch. */
export function shiftReportHtml({ stationId, report, shift: f, at }: ShiftReportInput): string {
  const fp = f.firstPass;
  const maxPort = Math.max(1, ...f.ports.map((p) => Math.max(p.confirmed, p.failed)));
  const maxReason = Math.max(1, ...f.reasons.map((r) => r.total));
  const failedHours = f.hours.map((_, i) => i).filter((i) => (f.failed[i] ?? 0) > 0);
  const doc = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta
          http-equiv="Content-Security-Policy"
          content="default-src 'none'; style-src 'unsafe-inline'"
        />
        <title>Shift report: ${stationId}, ${when(f.from)} to ${when(f.to)}</title>
        <style>
          ${new Html(STYLE)}
        </style>
      </head>
      <body>
        <h1>Shift report: station ${stationId}</h1>
        <p class="muted" data-window>
          From ${when(f.from)} to ${when(f.to)} (station time, UTC${offset(f.from)}). Made
          ${when(at.toISOString(), true)}.
        </p>

        <h2>The line</h2>
        <div class="figures">
          <div><span>Confirmed</span><b data-figure="confirmed">${f.totals.confirmed}</b></div>
          <div><span>Failed</span><b data-figure="failed">${f.totals.failed}</b></div>
          <div>
            <span>First-pass yield</span
            ><b data-figure="first-pass"
              >${fp.tried === 0 ? percent(null) : `${percent(fp.yield)} (${fp.firstPass} of ${fp.tried} devices)`}</b
            >
          </div>
        </div>
        <p class="muted">
          First-pass yield: devices confirmed at their first exchange in this window, of the devices
          the line saw; ${fp.passed} of ${fp.tried} were confirmed in the end.
        </p>

        <h3>Devices confirmed per hour</h3>
        ${hourChart(f)}
        <table data-table="hours">
          <thead>
            <tr>
              <th>Hour</th>
              <th>Confirmed</th>
              <th>Failed</th>
            </tr>
          </thead>
          <tbody>
            ${f.hours.map(
              (h, i) =>
                html`<tr>
                  <td>${when(h)}</td>
                  <td class="n">${f.confirmed[i] ?? 0}</td>
                  <td class="n">${f.failed[i] ?? 0}</td>
                </tr>`,
            )}
          </tbody>
        </table>

        <h3>Failures by reason</h3>
        ${
          f.reasons.length === 0
            ? html`<p>No failures in this window.</p>`
            : html`<table data-table="reasons">
                  <thead>
                    <tr>
                      <th>Reason</th>
                      <th>Failures</th>
                      <th></th>
                    </tr>
                  </thead>
                  <tbody>
                    ${f.reasons.map(
                      (r) =>
                        html`<tr>
                          <td>${reasonName(r.code)}</td>
                          <td class="n">${r.total}</td>
                          <td>${bar(r.total, maxReason, BAD, `${r.total} failures`)}</td>
                        </tr>`,
                    )}
                  </tbody>
                </table>
                <table data-table="reasons-over-time">
                  <thead>
                    <tr>
                      <th>Reason</th>
                      ${failedHours.map((i) => html`<th>${when(f.hours[i]!).slice(11)}</th>`)}
                    </tr>
                  </thead>
                  <tbody>
                    ${f.reasons.map(
                      (r) =>
                        html`<tr>
                          <td><code>${r.code}</code></td>
                          ${failedHours.map((i) => html`<td class="n">${r.perHour[i] ?? 0}</td>`)}
                        </tr>`,
                    )}
                  </tbody>
                </table>`
        }

        <h3>Per port</h3>
        ${
          f.ports.length === 0
            ? html`<p>No device reached the line in this window.</p>`
            : html`<table data-table="ports">
                <thead>
                  <tr>
                    <th>Port</th>
                    <th>Confirmed</th>
                    <th>Failed</th>
                    <th>First-pass yield</th>
                    <th>Failures by reason</th>
                    <th></th>
                  </tr>
                </thead>
                <tbody>
                  ${f.ports.map(
                    (p) =>
                      html`<tr>
                        <td>${p.port}</td>
                        <td class="n">${p.confirmed}</td>
                        <td class="n">${p.failed}</td>
                        <td>
                          ${p.tried ? `${percent(p.yield)} (${p.firstPass} of ${p.tried})` : percent(null)}
                        </td>
                        <td>
                          ${
                            Object.entries(p.reasons)
                              .map(([k, v]) => `${k} ${v}`)
                              .join(", ") || "none"
                          }
                        </td>
                        <td>
                          ${bar(p.confirmed, maxPort, OK, `${p.confirmed} confirmed`)}<br />${bar(p.failed, maxPort, BAD, `${p.failed} failed`)}
                        </td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
        }

        <h3>Work orders</h3>
        ${
          f.workOrders.length === 0
            ? html`<p>No work order is open.</p>`
            : html`<table data-table="work-orders">
                <thead>
                  <tr>
                    <th>Work order</th>
                    <th>Status</th>
                    <th>Quantity</th>
                    <th>Issued</th>
                    <th>Confirmed</th>
                    <th>Confirmed in this window</th>
                    <th>Progress</th>
                  </tr>
                </thead>
                <tbody>
                  ${f.workOrders.map(
                    (w) =>
                      html`<tr>
                        <td>${w.id}</td>
                        <td>${w.status}</td>
                        <td class="n">${w.quantity}</td>
                        <td class="n">${w.issued}</td>
                        <td class="n">${w.confirmed}</td>
                        <td class="n">${w.shiftConfirmed}</td>
                        <td>
                          ${bar(Math.min(w.issued, w.quantity), w.quantity, OK, `${w.issued} of ${w.quantity} issued`)}
                        </td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
        }

        <h2>Certificates in this window</h2>
        <table data-table="totals">
          ${groupHead()}
          <tbody>
            ${groupRow("all", report.totals)}
          </tbody>
        </table>
        ${groupTable("By work order", report.byWorkOrder)}
        ${groupTable("By operator", report.byOperator)}
        ${groupTable("By port or origin", report.byPort)}

        <h3>Rejected requests</h3>
        ${
          report.rejections.length === 0
            ? html`<p>None in this window.</p>`
            : html`<table data-table="rejections">
                  <thead>
                    <tr>
                      <th>Time</th>
                      <th>Device</th>
                      <th>Reason</th>
                      <th>Origin</th>
                      <th>Work order</th>
                      <th>Operator</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${report.rejections.map(
                      (r) =>
                        html`<tr>
                          <td>${when(r.at, true)}</td>
                          <td>${r.deviceId ?? ""}</td>
                          <td>${reasonName(r.reason)}</td>
                          <td>${r.origin}</td>
                          <td>${r.workOrder ?? "manual"}</td>
                          <td>${r.operator}</td>
                        </tr>`,
                    )}
                  </tbody>
                </table>
                ${report.rejectionsLeftOut > 0 ? html`<p class="muted">${report.rejectionsLeftOut} earlier rejections are left out: see "linesign audit log --status REJECTED".</p>` : ""}`
        }

        <h3>Left the station and never confirmed</h3>
        ${
          report.unconfirmed.length === 0
            ? html`<p>Every certificate that left was confirmed.</p>`
            : html`<p>Possibly on a device nobody checked: revoke, or provision again.</p>
                <table data-table="unconfirmed">
                  <thead>
                    <tr>
                      <th>Device</th>
                      <th>Serial</th>
                      <th>State</th>
                      <th>Origin</th>
                      <th>Work order</th>
                      <th>Issued</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${report.unconfirmed.map(
                      (u) =>
                        html`<tr>
                          <td>${u.deviceId}</td>
                          <td><code>${u.serial}</code></td>
                          <td>${u.state}</td>
                          <td>${u.origin}</td>
                          <td>${u.workOrder ?? "manual"}</td>
                          <td>${when(u.at, true)}</td>
                        </tr>`,
                    )}
                  </tbody>
                </table>`
        }
      </body>
    </html> `;
  return doc.text;
}
