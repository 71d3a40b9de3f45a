/**
 * A small element builder: text always goes in as text (never as HTML), so
 * nothing a device or a log entry says can become markup.
 */
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, "").toLowerCase(), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(
      typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c,
    );
  }
  return el;
}

/** Replaces a container's content, keeping keyboard focus on the element with the same data-focus key. */
export function replace(container: HTMLElement, ...children: Child[]): void {
  const active = document.activeElement as HTMLElement | null;
  const key = active && container.contains(active) ? active.dataset.focus : undefined;
  container.replaceChildren(
    ...children
      .filter((c): c is Node | string => c !== null && c !== undefined && c !== false)
      .map((c) => (typeof c === "number" ? String(c) : c)),
  );
  if (key) container.querySelector<HTMLElement>(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

/** A label and its control, tied by the control's id. */
export function field(label: string, control: HTMLElement): [HTMLElement, HTMLElement] {
  return [h("label", { for: control.id }, label), control];
}

/**
 * A form whose submit (button, Enter) hands its trimmed values to `onSubmit`
 * instead of reloading the page.
 */
export function form(
  attrs: Attrs,
  children: Child[],
  onSubmit: (values: Record<string, string>, form: HTMLFormElement) => void,
): HTMLFormElement {
  const f = h("form", attrs, ...children) as HTMLFormElement;
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    onSubmit(formValues(f), f);
  });
  return f;
}

/** A secret field's value as typed (not trimmed), cleared from the page at once. */
export function takeSecret(f: HTMLFormElement, name: string): string {
  const input = f.elements.namedItem(name) as HTMLInputElement;
  const value = input.value;
  input.value = "";
  return value;
}

/** Reads a form's named fields as trimmed strings (empty ones left out). */
export function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form).entries()) {
    const s = String(v).trim();
    if (s) out[k] = s;
  }
  return out;
}

export function shortPort(path: string): string {
  return path.split("/").pop() ?? path;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/**
 * A time as people on the floor read it: ISO 8601 date and 24-hour time in
 * the station's local time ("2026-12-01 14:05:09"), the same on every screen
 * whatever the browser's locale. Empty for none; the text as given when it
 * is not a time.
 */
export function when(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Seconds as m:ss (a countdown). */
export function minutes(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}
