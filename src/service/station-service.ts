/**
 * The station service: the one process that holds the token, the serial
 * ports and the database while the kiosk runs. It answers the calls of the
 * kiosk contract (src/domain/kiosk-api.ts) and nothing else: each call's
 * channel is checked against the contract, its arguments parsed, its caller's
 * login and role checked against the channel's rule, and its result parsed
 * on the way out. Refusals go to the event log. Transport-free: the HTTP
 * server (http.ts) and tests call `call()`.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  CHANNELS,
  isChannel,
  parseArgs,
  type ChannelName,
  type Reply,
} from "../domain/kiosk-api.js";
import { isAllowed, type Role, type Rule } from "../domain/roles.js";
import { LinesignError, toLinesignError } from "../domain/errors.js";
import type { EventRecord } from "../domain/event-log.js";
import { cut, isWellFormedDeep, wellFormed } from "../domain/text.js";
import type { Station } from "../compose.js";
import { backupStation } from "../compose-backup.js";
import { exportBundleTo, importReceiptFrom, listExports, publishCrl } from "../compose-exports.js";
import type { CaRecord } from "../domain/ports.js";
import { LineBoard } from "../app/line/board.js";
import type { Line } from "../app/line/line.js";
import { viewCa } from "../app/ca.js";
import { countEvents, exportAudit } from "../app/audit-export.js";
import { RefusalLog } from "../app/refusal-log.js";
import { SIGN_IN_FAILED } from "../app/users.js";
import { buildShift } from "../app/shift.js";
import type { ShiftWindowInput } from "../domain/shift.js";

interface Login {
  name: string;
  role: Role;
  /** The last act of the person (not a poll). */
  lastSeen: number;
  /** The passphrase hash at sign-in: a reset (or a disable) ends the sign-in. */
  hash: string;
}

/**
 * Calls a page makes by itself, not by a person: they never extend a
 * sign-in or a signing session (an officer who walks away is signed out on time).
 */
const PASSIVE: ReadonlySet<ChannelName> = new Set<ChannelName>([
  "line.watch",
  "auth.whoami",
  "station.status",
  "line.shift",
]);

export interface ServiceOptions {
  /** The serial ports the line runs on (default: station.json's line.ports). */
  ports?: string[];
  /** Milliseconds; default from station.json's sessions.loginIdleSeconds. */
  loginIdleMs?: number;
  /** The clock logins are timed by (tests move it). Default Date.now. */
  now?: () => number;
  /** Refusals are aggregated per source and reason over this many milliseconds. Default 60,000. */
  refusalIntervalMs?: number;
  /** How often the users' record is looked at for a change made by another process. Default 1,000. */
  accountCheckMs?: number;
}

/** A reply with, for a login, the token the transport keeps (never the renderer). */
export interface ServiceReply {
  reply: Reply<unknown>;
  loginToken?: string;
}

type Handler = (args: never, who: Login | null, token: string | null) => Promise<unknown>;

export class StationService {
  /** The station's standing fault (storage, log head), also when no port has met it yet. */
  private pausedView(): { by: string; code: string; message: string; since: string } | null {
    const f = this.station.ctx.health.current();
    return f ? { by: "station", code: f.code, message: f.message, since: f.since } : null;
  }

  private readonly logins = new Map<string, Login>();
  readonly board = new LineBoard();
  private line: Line | null = null;
  private lineWorkOrder: string | null = null;
  private lineStartedBy: string | null = null;
  private stopping = false;
  readonly ports: string[];
  private readonly loginIdleMs: number;
  private readonly now: () => number;
  private readonly handlers: Record<ChannelName, Handler>;
  /** api.refused entries, one per source and reason per interval with a count. */
  readonly refusals: RefusalLog;
  /** The officer of the open kiosk signing session, with their passphrase hash when they opened it. */
  private sessionAccount: { name: string; hash: string } | null = null;
  /** The database's data_version when the users were last looked at. */
  private seenVersion: number | null = null;
  private readonly accountTimer: NodeJS.Timeout;

  constructor(
    private readonly station: Station,
    opts: ServiceOptions = {},
  ) {
    this.ports = opts.ports?.length ? opts.ports : [...station.config.line.ports];
    this.loginIdleMs = opts.loginIdleMs ?? station.config.sessions.loginIdleSeconds * 1000;
    this.now = opts.now ?? Date.now;
    this.board.reset(this.ports);
    // The session's state is part of what the operator sees.
    station.signing.onChange(() => this.board.bump());
    station.ctx.health.onChange(() => this.board.bump());
    this.handlers = this.makeHandlers();
    this.refusals = new RefusalLog(station.ctx, {
      intervalMs: opts.refusalIntervalMs ?? 60_000,
      now: this.now,
    });
    // A user disabled or reset from the command line (another process) loses the kiosk at once:
    // looked at before every signature, every call, and every second.
    station.signing.checkBeforeUse(() => this.checkAccounts());
    this.accountTimer = setInterval(() => this.checkAccounts(), opts.accountCheckMs ?? 1000);
    this.accountTimer.unref();
  }

  /**
   * Ends the kiosk sign-ins of every user disabled or given a new passphrase
   * since they signed in, and the signing session of such an officer (also
   * one handed over to the line), which holds the PIN; the line then waits
   * as at any session's end. The command line changes users from another
   * process: the database's data_version says when there is anything to look at.
   */
  private checkAccounts(): void {
    try {
      const v = this.station.ctx.store.dataVersion();
      if (v === this.seenVersion) return;
      this.seenVersion = v;
      for (const [token, l] of this.logins) {
        const why = this.accountChanged(l.name, l.hash);
        if (why) void this.endLogin(token, l, why);
      }
      const a = this.sessionAccount;
      if (a && this.station.signing.kioskOfficer() === a.name) {
        const why = this.accountChanged(a.name, a.hash);
        if (why) void this.station.signing.loggedOut(a.name, why);
      }
    } catch (e) {
      this.fault("accounts", e);
    }
  }

  /** Whether the user was disabled (or removed) or reset since `hash` was theirs. */
  private accountChanged(name: string, hash: string): "disabled" | "reset" | null {
    const u = this.station.ctx.store.getUser(name);
    if (!u || u.disabled) return "disabled";
    return u.hash !== hash ? "reset" : null;
  }

  /**
   * Answers one call. Never throws: every refusal is a reply with a code and
   * plain words, and is logged when it is a refusal of the caller.
   */
  async call(
    channel: unknown,
    rawArgs: unknown,
    loginToken: string | null,
    source = "direct",
  ): Promise<ServiceReply> {
    try {
      return await this.answer(channel, rawArgs, loginToken, source);
    } catch (e) {
      this.fault(source, e);
      return {
        reply: {
          ok: false,
          error: {
            code: "INTERNAL",
            message: "The call could not be answered: the station log has the details.",
          },
        },
      };
    }
  }

  private async answer(
    channel: unknown,
    rawArgs: unknown,
    loginToken: string | null,
    source: string,
  ): Promise<ServiceReply> {
    this.checkAccounts();
    if (!isChannel(channel)) {
      // Never String() what a caller sent: a deeply nested array overflows the stack.
      const shown =
        typeof channel === "string" ? wellFormed(cut(channel, 64)) : `(${typeof channel})`;
      return this.refuse(
        this.loginFor(loginToken),
        shown,
        new LinesignError("API_REQUEST_INVALID", `There is no channel ${JSON.stringify(shown)}.`),
        true,
        source,
      );
    }
    const spec = CHANNELS[channel];
    const who = this.loginFor(loginToken, !PASSIVE.has(channel));
    if (spec.rule !== "none") {
      if (!who)
        return this.refuse(
          null,
          channel,
          new LinesignError("AUTH_REQUIRED", "Sign in first (your sign-in may have timed out)."),
          false,
        );
      if (!isAllowed(spec.rule, who.role)) {
        const rule: Rule = spec.rule;
        const need = typeof rule === "string" ? [] : rule;
        return this.refuse(
          who,
          channel,
          new LinesignError(
            "ROLE_FORBIDDEN",
            `"${spec.does}" needs the ${need.join(" or ")} role; ${who.name} is ${who.role === "sync" ? "the sync service" : `an ${who.role}`}.`,
            { details: { user: who.name, role: who.role, needed: need } },
          ),
          true,
          source,
        );
      }
    }
    // Text that cannot be stored as UTF-8 (a lone surrogate) never reaches a use case or the log.
    if (!isWellFormedDeep(rawArgs))
      return this.refuse(
        who,
        channel,
        new LinesignError(
          "API_REQUEST_INVALID",
          `${channel}: the arguments hold text that is not well-formed Unicode (a lone surrogate).`,
        ),
        true,
        source,
      );
    const parsed = parseArgs(channel, rawArgs);
    if (!parsed.ok)
      return this.refuse(
        who,
        channel,
        new LinesignError("API_REQUEST_INVALID", parsed.message),
        true,
        source,
      );
    if (who?.role === "officer" && !PASSIVE.has(channel)) this.station.signing.touch();
    try {
      const run = () => this.handlers[channel](parsed.args as never, who, loginToken);
      const out = who ? await this.station.asActor(who.name, run) : await run();
      const result = spec.result.parse(out);
      if (channel === "auth.login") {
        const token = (out as { token?: string }).token;
        return { reply: { ok: true, result }, ...(token ? { loginToken: token } : {}) };
      }
      return { reply: { ok: true, result } };
    } catch (e) {
      const err = toLinesignError(e);
      if (err.code === "INTERNAL")
        this.station.ctx.logger.error({ channel, err: e }, "a kiosk call failed");
      return { reply: { ok: false, error: { code: err.code, message: err.message } } };
    }
  }

  /** Records a request the transport refused before it became a call (bad secret, not JSON). */
  refuseRequest(
    why: string,
    source = "transport",
    code: "API_REQUEST_INVALID" | "AUTH_REQUIRED" = "API_REQUEST_INVALID",
  ): void {
    this.refuse(null, "(transport)", new LinesignError(code, why), true, source);
  }

  /** A fault of ours while answering: to the structured log, never past the boundary. */
  fault(source: string, e: unknown): void {
    try {
      this.station.ctx.logger.error({ source, err: e }, "a kiosk request failed");
    } catch {
      // nothing more can be done
    }
  }

  /** Stops the line (finishing devices in flight) and ends every login and the session. */
  async close(): Promise<void> {
    clearInterval(this.accountTimer);
    this.station.signing.checkBeforeUse(() => {});
    if (this.line) await this.line.stop();
    for (const [token, l] of this.logins) await this.endLogin(token, l, "shutdown");
    this.refusals.close();
  }

  /**
   * The sign-in a token names, or null when it has none, has been idle too
   * long, or its user was disabled or reset since (by the kiosk or the
   * command line, which share the database). Only a person's act (`act`)
   * counts as activity.
   */
  private loginFor(token: string | null, act = true): Login | null {
    if (!token) return null;
    const l = this.logins.get(token);
    if (!l) return null;
    const changed = this.accountChanged(l.name, l.hash);
    if (changed) {
      void this.endLogin(token, l, changed);
      return null;
    }
    if (this.now() - l.lastSeen > this.loginIdleMs) {
      void this.endLogin(token, l, "idle");
      return null;
    }
    if (act) l.lastSeen = this.now();
    return l;
  }

  private async endLogin(token: string, l: Login, reason: string): Promise<void> {
    this.logins.delete(token);
    this.station.ctx.store.appendEvent({
      actor: l.name,
      action: "user.logout",
      subject: l.name,
      outcome: "ok",
      details: { via: "kiosk", reason },
    });
    // A hand-over leaves the officer's signing session to the line; a sign-out ends it.
    if (l.role === "officer" && reason !== "handover")
      await this.station.signing.loggedOut(
        l.name,
        reason === "disabled" || reason === "reset" ? reason : "logout",
      );
  }

  private refuse(
    who: Login | null,
    channel: string,
    err: LinesignError,
    log = true,
    source = "direct",
  ): ServiceReply {
    if (log)
      this.refusals.record({
        source: `${source}:${who?.name ?? "anonymous"}`,
        // Unknown channels are one reason, whatever name was tried; transport refusals differ by why.
        reason: `${err.code}:${isChannel(channel) ? channel : channel === "(transport)" ? err.message : "(unknown channel)"}`,
        entry: {
          actor: who?.name ?? "kiosk",
          action: "api.refused",
          subject: channel,
          outcome: "refused",
          code: err.code,
          message: err.message,
          details: { ...err.details, via: source },
        },
      });
    return { reply: { ok: false, error: { code: err.code, message: err.message } } };
  }

  private lineView() {
    // Only the line's own work order is counted: a watcher is answered after every step.
    const wo = this.lineWorkOrder ? this.station.workOrders.show(this.lineWorkOrder) : undefined;
    return {
      version: this.board.version,
      running: this.line !== null,
      stopping: this.stopping,
      workOrder: this.lineWorkOrder,
      startedBy: this.lineStartedBy,
      tiles: this.board.view(),
      waiting: this.line?.waitingDevices() ?? [],
      shift: { ...this.board.shift },
      paused: this.line?.pausedFor() ?? this.pausedView(),
      workOrderCounts: wo
        ? { issued: wo.issued, quantity: wo.quantity, remaining: wo.remaining }
        : null,
      signing: this.station.signing.view(),
    };
  }

  /** A CA as the kiosk shows it: with the profiles that issue under it, and whether it is a root. */
  private caView(c: CaRecord) {
    const v = viewCa(c, this.station.ca.keysMissing().has(c.label));
    // A CA whose key went with a replaced token is not shown as active.
    return {
      ...v,
      status: v.keyMissing ? "key missing" : v.status,
      usedBy: this.station.ca.profilesUsing(c.label),
    };
  }

  private makeHandlers(): Record<ChannelName, Handler> {
    const s = this.station;
    const h: {
      [K in ChannelName]: (
        args: never,
        who: Login | null,
        token: string | null,
      ) => Promise<unknown>;
    } = {
      "auth.login": async (a: { name: string; passphrase: string }) => {
        const user = await s.users.signIn(a, "any", "kiosk sign-in");
        if (!user) throw new LinesignError("AUTH_FAILED", SIGN_IN_FAILED);
        const token = randomBytes(32).toString("base64url");
        // The hash as stored now (a sign-in may have just upgraded it).
        const hash = s.ctx.store.getUser(user.name)?.hash ?? user.hash;
        this.logins.set(token, { name: user.name, role: user.role, lastSeen: this.now(), hash });
        return { name: user.name, role: user.role, token };
      },
      "auth.logout": async (_a, who, token) => {
        if (who && token) await this.endLogin(token, who, "logout");
        return { done: true };
      },
      "auth.handover": async (_a, who, token) => {
        if (who && token) await this.endLogin(token, who, "handover");
        return { done: true };
      },
      "auth.whoami": async (_a, who) => (who ? { name: who.name, role: who.role } : null),
      "kiosk.welcome": async () => {
        const v = s.signing.view();
        return {
          stationId: s.config.station.id,
          signing: { open: v.open, officer: v.officer, idleEndsAt: v.idleEndsAt },
        };
      },
      "station.status": async () => {
        const guard = s.ctx.store.pinGuard(s.ctx.tokenLabel);
        const max = s.config.pkcs11.maxPinAttempts;
        return {
          stationId: s.config.station.id,
          development: s.config.development,
          token: s.ctx.tokenLabel,
          ports: this.ports,
          signing: s.signing.view(),
          profiles: Object.entries(s.profilesNow()).map(([name, p]) => ({ name, ca: p.ca })),
          defaultProfile: s.config.defaultProfile,
          pin: {
            failures: guard.failures,
            maxAttempts: max,
            attemptsLeft: guard.lockedAt ? 0 : Math.max(0, max - guard.failures),
          },
        };
      },
      "signing.open": async (a: { pin: string }, who) => {
        const v = await s.signing.open(who!, a.pin);
        this.sessionAccount = { name: who!.name, hash: who!.hash };
        return v;
      },
      "signing.close": async () => s.signing.close("closed"),
      "workOrders.list": async () => s.workOrders.list(),
      "workOrders.create": async (a: Parameters<Station["workOrders"]["create"]>[0]) => {
        const wo = await s.workOrders.create(a);
        this.board.bump();
        return wo;
      },
      "station.backup": async () => {
        const dir = s.config.backup.dir;
        if (!dir)
          throw new LinesignError(
            "BACKUP_DIR_UNSET",
            'No backup folder is set for this station: set "backup.dir" in station.json to a folder on another disk or removable media, or run "linesign backup --out FILE".',
          );
        const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
        return backupStation(s, join(dir, `linesign-backup-${s.config.station.id}-${stamp}.tar`));
      },
      "workOrders.close": async (a: { id: string }) => {
        const wo = await s.workOrders.close(a.id);
        this.board.bump();
        return wo;
      },
      "line.start": async (a: { workOrder?: string }, who) => {
        if (this.line)
          throw new LinesignError(
            "USAGE",
            `The line is already running (work order ${this.lineWorkOrder}, started by ${this.lineStartedBy}).`,
          );
        const line = s.line({ ports: this.ports, workOrder: a.workOrder ?? null });
        this.board.reset(this.ports);
        line.onEvent((e) => this.board.apply(e));
        line.onHoldChange(() => this.board.bump());
        this.line = line;
        this.lineWorkOrder = line.workOrder;
        this.lineStartedBy = who!.name;
        line.start();
        void line.finished().then(() => {
          this.line = null;
          this.stopping = false;
          this.board.bump();
        });
        return this.lineView();
      },
      "line.stop": async () => {
        if (this.line && !this.stopping) {
          this.stopping = true;
          this.board.bump();
          void this.line.stop();
        }
        return this.lineView();
      },
      "line.watch": async (a: { after: number; waitMs: number }) => {
        await this.board.waitFor(a.after, a.waitMs);
        return this.lineView();
      },
      "line.acknowledge": async (a: { port: string }, who) => {
        const t = this.board.view().find((x) => x.port === a.port);
        if (!t) throw new LinesignError("USAGE", `There is no port ${a.port} on this line.`);
        if (t.failure) {
          this.board.acknowledge(a.port);
          s.ctx.store.appendEvent({
            actor: who!.name,
            action: "line.acknowledge",
            subject: a.port,
            outcome: "ok",
            details: { code: t.failure.code, deviceId: t.failure.deviceId },
          });
        }
        return this.lineView();
      },
      "line.shift": async (a: ShiftWindowInput) => buildShift(s.ctx, a),
      "cas.list": async () => s.ca.list().map((c) => this.caView(c)),
      // The CLI's own use cases (ca activate|deactivate|rotate, crl), recorded as they record them.
      "cas.activate": async (a: { label: string }) => this.caView(await s.ca.activate(a.label)),
      "cas.deactivate": async (a: { label: string; stopProfiles?: boolean }) =>
        this.caView(await s.ca.deactivate(a.label, { stopProfiles: Boolean(a.stopProfiles) })),
      "cas.rotate": async (a: { profile: string; to: string }) => {
        // An unknown profile is refused (and recorded) by the rotation itself, as from the CLI.
        const from = s.profiles.list().find((q) => q.name === a.profile)?.ca ?? null;
        const p = await s.profiles.rotate(a.profile, a.to);
        this.board.bump();
        return {
          profile: p.name,
          from,
          to: p.ca,
          stillUsing: from === null ? [] : s.ca.profilesUsing(from),
        };
      },
      "cas.publishCrl": async (a: { ca: string; days?: number }) => publishCrl(s, a.ca, a.days),
      "exports.list": async () => listExports(s),
      "targets.exportBundle": async (a: { target: string; registrationCode?: string }) =>
        exportBundleTo(s, a.target, a.registrationCode),
      "targets.importReceipt": async (a: { name: string }) => importReceiptFrom(s, a.name),
      "targets.list": async () => {
        // A target is synced directly (sync.run) or by a bundle's round trip (bundle.receipt).
        const runs = [
          ...s.ctx.store.queryEvents({ action: "sync.run" }),
          ...s.ctx.store.queryEvents({ action: "bundle.receipt" }),
        ].sort((a, b) => a.seq - b.seq);
        return s.sync.listTargets().map((t) => {
          const last = runs.findLast((e) => e.subject === t.name);
          return {
            name: t.name,
            region: t.region,
            awsProfile: t.awsProfile ?? null,
            caMode: t.caMode,
            deviceRegistration: t.deviceRegistration,
            pending: t.queue.pending,
            uploaded: t.queue.uploaded,
            failed: t.queue.failed,
            lastSync: last ? lastSyncView(last) : null,
          };
        });
      },
      "audit.verify": async () => {
        // verify() records its own entry.
        const v = await s.audit.verify();
        const c = countEvents([...s.ctx.store.events()]);
        return {
          ok: v.ok,
          checked: v.checked,
          message: v.message,
          counts: {
            issued: c.issued,
            confirmed: c.confirmed,
            unconfirmed: c.unconfirmed,
            revoked: c.revoked,
            rejected: Object.values(c.rejectedByReason).reduce((a, b) => a + b, 0),
            rejectedByReason: c.rejectedByReason,
          },
        };
      },
      "audit.log": async (a: Parameters<Station["ctx"]["store"]["queryEvents"]>[0]) =>
        s.ctx.store.queryEvents(a).reverse(),
      "audit.export": async () => {
        const bundle = await exportAudit(s.ctx, s.checkpointer);
        const stamp = bundle.exportedAt.replace(/[-:]/g, "").slice(0, 15);
        return {
          fileName: `linesign-audit-${s.config.station.id}-${stamp}.json`,
          base64: Buffer.from(JSON.stringify(bundle) + "\n").toString("base64"),
          events: bundle.events.length,
        };
      },
      "reissue.approve": async (a: { deviceId: string; reason: string }) =>
        s.reissue.approve(a.deviceId, a.reason),
      "certificates.find": async (a: { serial?: string; deviceId?: string }) => {
        const store = s.ctx.store;
        const found = a.serial
          ? [store.getIssuanceBySerial(a.serial.toLowerCase())].filter((i) => i !== null)
          : store.queryIssuances({ deviceId: a.deviceId! });
        const device = a.deviceId ?? found[0]?.deviceId;
        const serials = new Set(found.map((i) => i.serial));
        const about = (e: { subject: string | null; details: Record<string, unknown> }) =>
          (device !== undefined && e.subject === device) ||
          (e.subject !== null && serials.has(e.subject)) ||
          (typeof e.details.serial === "string" && serials.has(e.details.serial)) ||
          (device !== undefined && e.details.deviceId === device);
        return {
          certificates: found.map((i) => ({
            serial: i.serial,
            deviceId: i.deviceId,
            state: i.state,
            ca: i.caLabel,
            profile: i.profile,
            workOrder: i.workOrder,
            operator: i.operator,
            issuedAt: i.createdAt,
          })),
          events: [...store.events()].filter(about).reverse().slice(0, 500),
        };
      },
      "revocation.revoke": async (a: { serial?: string; deviceId?: string; reason: never }) => {
        const r = await s.revocation.revoke(a, a.reason);
        const serials = new Set(r.revoked.map((x) => x.serial));
        const targets = s.sync
          .listTargets()
          .filter((t) =>
            s.ctx.store.revocationsDue(t.name).some((d) => serials.has(d.issuance.serial)),
          )
          .map((t) => t.name);
        const cas = [...new Set(r.revoked.map((x) => x.ca))];
        return {
          ...r,
          targets,
          crls: cas.map((ca) => ({ ca, number: (s.ctx.store.lastCrl(ca)?.number ?? 0) + 1 })),
        };
      },
    };
    return h as Record<ChannelName, Handler>;
  }
}

/** A target's last sync as the kiosk shows it: a direct run, or a bundle's receipt imported. */
function lastSyncView(e: EventRecord): {
  at: string;
  outcome: string;
  message: string | null;
  via: "sync" | "bundle";
} {
  if (e.action !== "bundle.receipt")
    return { at: e.ts, outcome: e.outcome, message: e.message, via: "sync" };
  const d = (e.details ?? {}) as { bundle?: unknown; done?: unknown; failed?: unknown };
  const n = (v: unknown) => (typeof v === "number" && Number.isSafeInteger(v) ? v : 0);
  const failed = n(d.failed);
  return {
    at: e.ts,
    outcome: failed > 0 ? "failed" : e.outcome,
    message: `Bundle ${typeof d.bundle === "string" ? cut(d.bundle, 64) : "?"}: ${n(d.done)} registered, ${failed} failed (receipt imported).`,
    via: "bundle",
  };
}
