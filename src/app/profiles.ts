/**
 * Profiles as recorded configuration. station.json stays the place profiles
 * live, but every change the station makes to it is an event with the before
 * and the after, and the configuration as last written or accepted is kept in
 * the database: a hand edit is found at the next start (its hash differs) and
 * recorded naming each changed field, or refused until an officer accepts it.
 * A profile's content hash (SHA-256 of its canonical JSON, defaults filled)
 * goes with every issuance and every line start.
 */
import { createHash } from "node:crypto";
import { parseStationConfig, type StationConfig } from "../domain/config.js";
import { LinesignError } from "../domain/errors.js";
import type { Profile } from "../domain/profile.js";
import type { CaRecord, StationConfigFile } from "../domain/ports.js";
import { act, type AppContext } from "./context.js";
import { x509 } from "./pki/x509.js";

const PROFILE_NAME = /^[A-Za-z0-9._-]{1,32}$/;
/** Changes named in one event or refusal; the rest are counted. */
const MAX_CHANGES = 50;

/** JSON with object keys sorted, so equal content always has equal bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(",")}]`;
  if (value && typeof value === "object") {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** Hex SHA-256 of a value's canonical JSON: a profile's or a configuration's content hash. */
export function contentSha256(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

const profileHashCache = new WeakMap<object, string>();

/** A profile's content hash, computed once per loaded profile object. */
export function profileSha256(profile: Readonly<Profile>): string {
  let h = profileHashCache.get(profile);
  if (h === undefined) profileHashCache.set(profile, (h = contentSha256(profile)));
  return h;
}

export interface ConfigChange {
  /** Dotted path of the field, e.g. "profiles.default.validityDays". */
  path: string;
  /** Absent (undefined) when the field was added. */
  before?: unknown;
  /** Absent (undefined) when the field was removed. */
  after?: unknown;
}

/** Fields where two JSON values differ (arrays compare whole), in path order. */
export function diffJson(before: unknown, after: unknown, path = ""): ConfigChange[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    Boolean(v) && typeof v === "object" && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diffJson(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (canonicalJson(before) === canonicalJson(after)) return [];
  const change: ConfigChange = { path: path || "(top level)" };
  if (before !== undefined) change.before = before;
  if (after !== undefined) change.after = after;
  return [change];
}

/** One line per change, for a refusal or a terminal. */
export function describeChanges(changes: ConfigChange[], max = 5): string {
  const show = (v: unknown) =>
    v === undefined ? "(absent)" : JSON.stringify(v).slice(0, 60).replace(/\s+/g, " ");
  const named = changes
    .slice(0, max)
    .map((c) => `${c.path}: ${show(c.before)} -> ${show(c.after)}`);
  return (
    named.join("; ") + (changes.length > max ? `; and ${changes.length - max} more change(s)` : "")
  );
}

/**
 * Why a CA cannot sign devices for a profile, or null when it can. Roots never
 * sign leaves; nor does an intermediate that signs other CAs (a policy CA).
 */
export function deviceCaProblem(
  label: string,
  ca: CaRecord | null,
  all: readonly CaRecord[],
): { code: "CA_UNKNOWN" | "CA_NOT_FOR_DEVICES"; message: string } | null {
  if (!ca)
    return {
      code: "CA_UNKNOWN",
      message: `No CA is labelled "${label}". See "linesign ca list".`,
    };
  const selfSigned = ca.certDer
    ? (() => {
        const c = new x509.X509Certificate(ca.certDer);
        return c.subject === c.issuer;
      })()
    : false;
  if (ca.kind === "root" || selfSigned)
    return {
      code: "CA_NOT_FOR_DEVICES",
      message: `CA "${label}" is a root: roots never sign device certificates. Have it sign an intermediate for devices ("linesign ca create --label NAME --root ${label} ...") and use that.`,
    };
  const children = all.filter((c) => c.parentLabel === label).map((c) => c.label);
  if (children.length)
    return {
      code: "CA_NOT_FOR_DEVICES",
      message: `CA "${label}" signs other CAs (${children.join(", ")}), so it is not an intermediate for devices; use one of those, or another intermediate made for devices.`,
    };
  return null;
}

/** A profile as listed. */
export interface ProfileView {
  name: string;
  ca: string;
  sha256: string;
  isDefault: boolean;
  profile: Profile;
}

/** What a change of station.json recorded. */
export interface ConfigChangeResult {
  changes: ConfigChange[];
  sha256: string;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/**
 * The station's configuration file under the log: compares it at start with
 * the recorded one, and makes every change of its own as one recorded act.
 */
export class ConfigRecord {
  private readonly changed: ((config: Readonly<StationConfig>) => void)[] = [];

  constructor(
    private readonly ctx: AppContext,
    readonly file: StationConfigFile,
  ) {}

  /**
   * Told after every change this process writes (a profile created, set or
   * rotated), so a long-running station (the kiosk's service) issues under
   * the configuration it recorded, not the one it started with.
   */
  onChange(f: (config: Readonly<StationConfig>) => void): void {
    this.changed.push(f);
  }

  /**
   * At start: records the configuration the first time; when it differs from
   * the recorded one, records each changed field (handEdits "record") or
   * refuses (handEdits "refuse", unless `accept`, an officer's act).
   * @throws LinesignError CONFIG_CHANGED
   */
  reconcile(config: Readonly<StationConfig>, accept = false): ConfigChangeResult {
    const sha256 = contentSha256(config);
    const recorded = this.ctx.store.recordedConfig();
    const stamp = () => this.ctx.clock.now().toISOString();
    if (!recorded) {
      this.ctx.store.transaction(() => {
        this.ctx.store.setRecordedConfig({ sha256, config, recordedAt: stamp() });
        this.ctx.store.appendEvent({
          actor: this.ctx.actor,
          action: "config.record",
          subject: this.file.path,
          outcome: "ok",
          details: { sha256, profiles: profileHashes(config) },
        });
      });
      return { changes: [], sha256 };
    }
    if (recorded.sha256 === sha256) return { changes: [], sha256 };
    const changes = diffJson(recorded.config, config);
    const details = {
      before: recorded.sha256,
      after: sha256,
      changes: changes.slice(0, MAX_CHANGES),
      changeCount: changes.length,
    };
    if (config.handEdits === "refuse" && !accept) {
      const err = new LinesignError(
        "CONFIG_CHANGED",
        `${this.file.path} was changed outside the station since it last recorded it (${describeChanges(changes)}). ` +
          `The station does not start on it: a security officer checks the change and runs "linesign config accept", or puts the file back as it was.`,
        { details: { path: this.file.path, ...details } },
      );
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: "config.hand-edit",
        subject: this.file.path,
        outcome: "refused",
        code: err.code,
        message: err.message,
        details: err.details,
      });
      throw err;
    }
    this.ctx.store.transaction(() => {
      this.ctx.store.setRecordedConfig({ sha256, config, recordedAt: stamp() });
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action: accept ? "config.accept" : "config.hand-edit",
        subject: this.file.path,
        outcome: "ok",
        details: { ...details, profiles: profileHashes(config) },
      });
    });
    return { changes, sha256 };
  }

  /**
   * Changes station.json as one recorded act: `mutate` edits a copy; the
   * result is validated like the file; `check` sees it (and may refuse) and
   * returns the event's details; then the event, the new record and the file
   * are written together (a failed write leaves neither). A hand edit found
   * first is recorded first.
   * @throws LinesignError CONFIG_INVALID (naming the field), CONFIG_CHANGED, FILE_WRITE_FAILED, what `mutate` or `check` throw
   */
  change(
    action: string,
    subject: string,
    mutate: (raw: StationConfig) => void,
    check: (
      next: Readonly<StationConfig>,
      current: Readonly<StationConfig>,
    ) => Record<string, unknown>,
  ): ConfigChangeResult & { config: Readonly<StationConfig> } {
    const current = this.file.read();
    this.reconcile(current);
    const raw = clone(current) as StationConfig;
    mutate(raw);
    const next = parseStationConfig(raw, this.file.path);
    const details = check(next, current);
    const changes = diffJson(current, next);
    const sha256 = contentSha256(next);
    this.ctx.store.transaction(() => {
      this.ctx.store.appendEvent({
        actor: this.ctx.actor,
        action,
        subject,
        outcome: "ok",
        details: { ...details, configSha256: sha256 },
      });
      this.ctx.store.setRecordedConfig({
        sha256,
        config: next,
        recordedAt: this.ctx.clock.now().toISOString(),
      });
      this.file.write(clone(next) as StationConfig);
    });
    for (const f of this.changed) f(next);
    return { changes, sha256, config: next };
  }
}

const profileHashes = (config: Readonly<StationConfig>): Record<string, string> =>
  Object.fromEntries(Object.entries(config.profiles).map(([n, p]) => [n, contentSha256(p)]));

/** Parses "a.b=JSON" (a bare word is a string). */
export function parseAssignment(text: string): { path: string[]; value: unknown } {
  const eq = text.indexOf("=");
  const path = (eq > 0 ? text.slice(0, eq) : "").split(".").filter(Boolean);
  if (eq <= 0 || path.length === 0 || path.some((p) => !/^[A-Za-z0-9_]{1,64}$/.test(p)))
    throw new LinesignError(
      "USAGE",
      `"${text.slice(0, 80)}" is not FIELD=VALUE (e.g. validityDays=365, keys.rsaMinBits=null, subject.fixed.O="Example").`,
    );
  const rawValue = text.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(rawValue);
  } catch {
    value = rawValue;
  }
  return { path, value };
}

/** `linesign profile list|show|create|set` and `ca rotate`: officers' acts on profiles. */
export class ProfileService {
  constructor(
    private readonly ctx: AppContext,
    private readonly record: ConfigRecord,
  ) {}

  /** Profiles as station.json has them now (read fresh), with their content hashes. */
  list(): ProfileView[] {
    const config = this.record.file.read();
    return Object.entries(config.profiles).map(([name, profile]) => ({
      name,
      ca: profile.ca,
      sha256: contentSha256(profile),
      isDefault: name === config.defaultProfile,
      profile,
    }));
  }

  /** @throws LinesignError PROFILE_UNKNOWN */
  show(name: string): ProfileView {
    const view = this.list().find((p) => p.name === name);
    if (!view) throw this.unknown(name);
    return view;
  }

  /**
   * Adds a profile (defaults filled, validated like station.json). Its CA must
   * be an intermediate for devices.
   * @throws LinesignError USAGE, PROFILE_EXISTS, CONFIG_INVALID, CA_UNKNOWN, CA_NOT_FOR_DEVICES
   */
  create(name: string, profile: Record<string, unknown>): Promise<ProfileView> {
    return act(this.ctx, "profile.create", name, async () => {
      if (!PROFILE_NAME.test(name))
        throw new LinesignError(
          "USAGE",
          `"${name.slice(0, 40)}" is not a profile name: 1-32 letters, digits, '.', '_' or '-'.`,
        );
      return this.changeProfile("profile.create", name, (profiles) => {
        if (Object.hasOwn(profiles, name))
          throw new LinesignError(
            "PROFILE_EXISTS",
            `A profile named "${name}" exists already: change it with "linesign profile set --name ${name} --field FIELD=VALUE".`,
          );
        profiles[name] = profile;
        return {};
      });
    });
  }

  /**
   * Changes fields of a profile ("validityDays=365", "keys.rsaMinBits=null");
   * recorded with the profile before and after and both content hashes.
   * @throws LinesignError PROFILE_UNKNOWN, USAGE, CONFIG_INVALID, CA_UNKNOWN, CA_NOT_FOR_DEVICES
   */
  set(name: string, assignments: string[]): Promise<ProfileView> {
    return act(this.ctx, "profile.set", name, async () => {
      if (assignments.length === 0)
        throw new LinesignError("USAGE", "Name at least one change: --field FIELD=VALUE.");
      const parsed = assignments.map(parseAssignment);
      return this.changeProfile("profile.set", name, (profiles) => {
        const p = this.existing(profiles, name);
        for (const { path, value } of parsed) {
          let node = p;
          for (const key of path.slice(0, -1)) {
            const next = node[key];
            if (!next || typeof next !== "object" || Array.isArray(next)) node[key] = {};
            node = node[key] as Record<string, unknown>;
          }
          node[path.at(-1)!] = value;
        }
        return {};
      });
    });
  }

  /**
   * Moves a profile to another issuing CA from its next device on. The old CA
   * keeps its certificates and CRLs; retire or deactivate it as a separate act.
   * @throws LinesignError PROFILE_UNKNOWN, CA_UNKNOWN, CA_NOT_FOR_DEVICES, CA_INACTIVE, CA_STATE
   */
  rotate(name: string, toLabel: string): Promise<ProfileView> {
    return act(this.ctx, "ca.rotate", name, async () => {
      const to = this.ctx.store.getCa(toLabel);
      if (to && (to.status !== "active" || to.retiredAt))
        throw new LinesignError(
          "CA_INACTIVE",
          `CA "${toLabel}" is ${to.retiredAt ? "retired" : to.status}: activate it before a profile moves to it ("linesign ca activate --label ${toLabel}").`,
        );
      return this.changeProfile("ca.rotate", name, (profiles) => {
        const p = this.existing(profiles, name);
        const from = String(p.ca);
        if (from === toLabel)
          throw new LinesignError(
            "CA_STATE",
            `Profile "${name}" already issues under CA "${toLabel}"; nothing was changed.`,
          );
        p.ca = toLabel;
        return { from, to: toLabel };
      });
    });
  }

  /** One recorded change of one profile: its CA checked, before and after in the event. */
  private changeProfile(
    action: string,
    name: string,
    edit: (profiles: Record<string, Record<string, unknown>>) => Record<string, unknown>,
  ): ProfileView {
    let extra: Record<string, unknown> = {};
    this.record.change(
      action,
      name,
      (raw) => {
        extra = edit(raw.profiles as unknown as Record<string, Record<string, unknown>>);
      },
      (next, current) => {
        const after = next.profiles[name]!;
        const problem = deviceCaProblem(
          after.ca,
          this.ctx.store.getCa(after.ca),
          this.ctx.store.listCas(),
        );
        if (problem)
          throw new LinesignError(problem.code, problem.message, { details: { ca: after.ca } });
        const before = current.profiles[name] ?? null;
        return {
          profile: name,
          ...extra,
          before,
          after,
          beforeSha256: before ? contentSha256(before) : null,
          afterSha256: contentSha256(after),
          changes: diffJson(before ?? {}, after).slice(0, MAX_CHANGES),
        };
      },
    );
    return this.show(name);
  }

  private existing(
    profiles: Record<string, Record<string, unknown>>,
    name: string,
  ): Record<string, unknown> {
    const p = profiles[name];
    if (!p) throw this.unknown(name, Object.keys(profiles));
    return p;
  }

  private unknown(name: string, known = this.list().map((p) => p.name)): LinesignError {
    return new LinesignError(
      "PROFILE_UNKNOWN",
      `No profile is named "${name}". ${known.length ? `Profiles: ${known.join(", ")}.` : 'The station has no profiles yet: "linesign profile create".'}`,
      { details: { profile: name } },
    );
  }
}
