/**
 * The kiosk's contract: every channel the renderer may call, with its
 * argument and result schemas and the roles allowed. The station service
 * validates against it, Electron's main process validates again before
 * relaying, the preload exposes exactly these names on `window.linesign`,
 * and the browser bridge implements the same names over loopback HTTP.
 * Results are parsed on the way out too: a field not declared here never
 * leaves the service.
 */
import { z } from "zod";
import { ROLES, type Rule } from "./roles.js";
import { REVOCATION_REASONS, type RevocationReason } from "./revocation.js";
import { CHANNEL_NAMES, type ChannelName } from "./kiosk-channels.js";
import { MAX_SHIFT_HOURS } from "./shift.js";

export { CHANNEL_NAMES, type ChannelName };

const Name = z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, "letters, digits, . _ @ - (1 to 64)");
const Id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "letters, digits, . _ - (1 to 64)");
const Time = z.string().datetime({ offset: true });
const None = z.object({}).strict();
const Ok = z.object({ done: z.literal(true) });

export const User = z.object({ name: z.string(), role: z.enum(ROLES) });

export const SigningView = z.object({
  open: z.boolean(),
  officer: z.string().nullable(),
  kind: z.enum(["kiosk", "process"]).nullable(),
  openedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  idleTimeoutSeconds: z.number(),
  idleEndsAt: z.string().nullable(),
  uses: z.number(),
});

/** A device's progress on one port, as the operator sees it. */
export const TILE_STATES = [
  "offline",
  "waiting",
  "identified",
  "signing",
  "injecting",
  "confirmed",
  "failed",
] as const;

export const Failure = z.object({
  code: z.string(),
  title: z.string(),
  message: z.string(),
  action: z.string(),
  deviceId: z.string().nullable(),
  at: z.string(),
});

export const Tile = z.object({
  port: z.string(),
  state: z.enum(TILE_STATES),
  deviceId: z.string().nullable(),
  serial: z.string().nullable(),
  /** The last failure on this port, until someone acknowledges it. */
  failure: Failure.nullable(),
  confirmed: z.number(),
  failed: z.number(),
  /** The port floods the station with refused exchanges: what is wrong and what to do. */
  misbehaving: z.string().nullable(),
});

export const LineView = z.object({
  /** Grows with every change; `line.watch` waits for a larger one. */
  version: z.number(),
  running: z.boolean(),
  stopping: z.boolean(),
  workOrder: z.string().nullable(),
  startedBy: z.string().nullable(),
  tiles: z.array(Tile),
  /** Devices that identified themselves as the line paused: they wait, unanswered. */
  waiting: z.array(z.object({ port: z.string(), deviceId: z.string() })),
  shift: z.object({ confirmed: z.number(), failed: z.number(), since: z.string().nullable() }),
  /**
   * Why the line waits (devices are not greeted, none is failed): a fault of the
   * station itself (storage, log head; `by` "station") or a hold such as the end
   * of the signing session (`by` "signing"). Null when it takes devices.
   */
  paused: z
    .object({ by: z.string(), code: z.string(), message: z.string(), since: z.string() })
    .nullable(),
  workOrderCounts: z
    .object({ issued: z.number(), quantity: z.number(), remaining: z.number() })
    .nullable(),
  signing: SigningView,
});

export const WorkOrderView = z.object({
  id: z.string(),
  profile: z.string(),
  quantity: z.number(),
  pattern: z.string().nullable(),
  devices: z.array(z.string()).nullable(),
  notBefore: z.string().nullable(),
  notAfter: z.string().nullable(),
  status: z.enum(["open", "closed"]),
  createdBy: z.string(),
  issued: z.number(),
  remaining: z.number(),
});

export const EventView = z.object({
  seq: z.number(),
  ts: z.string(),
  actor: z.string(),
  action: z.string(),
  subject: z.string().nullable(),
  outcome: z.enum(["ok", "refused", "failed"]),
  code: z.string().nullable(),
  message: z.string().nullable(),
});

const FirstPassView = z.object({
  tried: z.number(),
  firstPass: z.number(),
  passed: z.number(),
  yield: z.number().nullable(),
});

/** A shift's figures (src/domain/shift.ts): per clock hour, per reason, per port, per work order. */
export const ShiftView = z.object({
  from: z.string(),
  to: z.string(),
  hours: z.array(z.string()),
  confirmed: z.array(z.number()),
  failed: z.array(z.number()),
  totals: z.object({ confirmed: z.number(), failed: z.number() }),
  firstPass: FirstPassView,
  reasons: z.array(z.object({ code: z.string(), total: z.number(), perHour: z.array(z.number()) })),
  ports: z.array(
    FirstPassView.extend({
      port: z.string(),
      confirmed: z.number(),
      failed: z.number(),
      reasons: z.record(z.string(), z.number()),
    }),
  ),
  workOrders: z.array(
    z.object({
      id: z.string(),
      status: z.enum(["open", "closed"]),
      quantity: z.number(),
      issued: z.number(),
      confirmed: z.number(),
      shiftConfirmed: z.number(),
    }),
  ),
});

const CaLabel = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/, "letters, digits, . _ - (1 to 32)");

export const CaView = z.object({
  label: z.string(),
  kind: z.string(),
  /** A root signs CAs only, never devices. */
  root: z.boolean(),
  status: z.string(),
  /** When it stopped signing here (still ACTIVE at AWS IoT); null when it signs. */
  retiredAt: z.string().nullable(),
  keyType: z.string(),
  development: z.boolean(),
  subject: z.string(),
  issuer: z.string().nullable(),
  notAfter: z.string().nullable(),
  fingerprint: z.string().nullable(),
  /** The profiles that issue under it now. */
  usedBy: z.array(z.string()),
  /** Its key went with a replaced token (status "key missing"): it signs nothing here. */
  keyMissing: z.boolean(),
});

const Counts = z.object({
  issued: z.number(),
  confirmed: z.number(),
  unconfirmed: z.number(),
  revoked: z.number(),
  rejected: z.number(),
  rejectedByReason: z.record(z.string(), z.number()),
});

interface Channel {
  args: z.ZodType;
  result: z.ZodType;
  rule: Rule;
  /** Plain words for the refusal log and the docs. */
  does: string;
}

const channel = <A extends z.ZodType, R extends z.ZodType>(
  rule: Rule,
  does: string,
  args: A,
  result: R,
): { args: A; result: R; rule: Rule; does: string } => ({ args, result, rule, does });

const OPERATOR_OR_OFFICER = ["operator", "officer"] as const;
const READERS = ["officer", "auditor"] as const;
const OFFICER = ["officer"] as const;

export const CHANNELS = {
  "auth.login": channel(
    "none",
    "sign in",
    z.object({ name: Name, passphrase: z.string().min(1).max(1024) }).strict(),
    User,
  ),
  "auth.logout": channel("any", "sign out", None, Ok),
  // Signs out but leaves a signing session the caller opened running, for the operator who takes over.
  "auth.handover": channel("any", "hand the kiosk over", None, Ok),
  "auth.whoami": channel("none", "who is signed in", None, User.nullable()),
  // What the sign-in screen says before anyone signs in: the station, and a session left open at hand-over.
  "kiosk.welcome": channel(
    "none",
    "greet the kiosk",
    None,
    z.object({
      stationId: z.string(),
      signing: z.object({
        open: z.boolean(),
        officer: z.string().nullable(),
        idleEndsAt: z.string().nullable(),
      }),
    }),
  ),
  "station.status": channel(
    "any",
    "the station at a glance",
    None,
    z.object({
      stationId: z.string(),
      development: z.boolean(),
      token: z.string(),
      ports: z.array(z.string()),
      signing: SigningView,
      profiles: z.array(z.object({ name: z.string(), ca: z.string() })),
      defaultProfile: z.string(),
      /** The station's wrong-PIN guard for the token: attempts left before it stops presenting PINs. */
      pin: z.object({ failures: z.number(), maxAttempts: z.number(), attemptsLeft: z.number() }),
    }),
  ),
  "signing.open": channel(
    OFFICER,
    "open the signing session",
    z.object({ pin: z.string().min(1).max(256) }).strict(),
    SigningView,
  ),
  "signing.close": channel(OFFICER, "close the signing session", None, SigningView),
  "workOrders.list": channel("any", "list work orders", None, z.array(WorkOrderView)),
  "workOrders.create": channel(
    OFFICER,
    "create a work order",
    z
      .object({
        id: Id.optional(),
        profile: z.string().min(1).max(32),
        quantity: z.number().int().min(1).max(100_000_000),
        pattern: z.string().min(1).max(256).optional(),
        devices: z.array(z.string().min(1).max(64)).min(1).max(100_000).optional(),
        notBefore: Time.optional(),
        notAfter: Time.optional(),
      })
      .strict(),
    WorkOrderView,
  ),
  "station.backup": channel(
    OFFICER,
    "back the station up into the configured backup folder",
    None,
    z.object({
      out: z.string(),
      id: z.string(),
      head: z.object({ seq: z.number(), hash: z.string() }).nullable(),
      files: z.number(),
    }),
  ),
  "workOrders.close": channel(
    OFFICER,
    "close a work order",
    z.object({ id: Id }).strict(),
    WorkOrderView,
  ),
  "line.start": channel(
    OPERATOR_OR_OFFICER,
    "start the line",
    z.object({ workOrder: Id.optional() }).strict(),
    LineView,
  ),
  "line.stop": channel(OPERATOR_OR_OFFICER, "stop the line", None, LineView),
  "line.watch": channel(
    ["operator", "officer", "auditor"],
    "follow the line",
    z
      .object({ after: z.number().int().min(-1), waitMs: z.number().int().min(0).max(25_000) })
      .strict(),
    LineView,
  ),
  "line.acknowledge": channel(
    OPERATOR_OR_OFFICER,
    "acknowledge a port's failure",
    z.object({ port: z.string().min(1).max(256) }).strict(),
    LineView,
  ),
  // The shift's figures, counted from the log over a bounded window (default the last 12 hours).
  "line.shift": channel(
    ["operator", "officer", "auditor"],
    "read the shift's figures",
    z
      .object({
        from: Time.optional(),
        to: Time.optional(),
        hours: z.number().int().min(1).max(MAX_SHIFT_HOURS).optional(),
      })
      .strict(),
    ShiftView,
  ),
  "cas.list": channel(READERS, "list CAs", None, z.array(CaView)),
  "cas.activate": channel(OFFICER, "activate a CA", z.object({ label: CaLabel }).strict(), CaView),
  // Refused while a profile issues under the CA, unless those profiles are stopped (a compromised CA).
  "cas.deactivate": channel(
    OFFICER,
    "deactivate a CA",
    z.object({ label: CaLabel, stopProfiles: z.boolean().optional() }).strict(),
    CaView,
  ),
  "cas.rotate": channel(
    OFFICER,
    "move a profile to another CA",
    z.object({ profile: z.string().min(1).max(32), to: CaLabel }).strict(),
    z.object({
      profile: z.string(),
      from: z.string(),
      to: z.string(),
      /** Profiles the old CA still issues for. */
      stillUsing: z.array(z.string()),
    }),
  ),
  "cas.publishCrl": channel(
    OFFICER,
    "publish a CA's CRL into the export folder",
    z.object({ ca: CaLabel, days: z.number().int().min(1).max(366).optional() }).strict(),
    z.object({
      out: z.string(),
      ca: z.string(),
      number: z.number(),
      entries: z.number(),
      thisUpdate: z.string(),
      nextUpdate: z.string(),
    }),
  ),
  "exports.list": channel(
    OFFICER,
    "list the export folder",
    None,
    z.object({
      dir: z.string(),
      /** Set in station.json (removable media), not the home's own exports folder. */
      configured: z.boolean(),
      files: z.array(z.object({ name: z.string(), size: z.number(), modifiedAt: z.string() })),
    }),
  ),
  "targets.exportBundle": channel(
    OFFICER,
    "export a target's bundle into the export folder",
    z
      .object({
        target: Id,
        registrationCode: z.string().min(1).max(128).optional(),
      })
      .strict(),
    z.object({
      out: z.string(),
      bundle: z.string(),
      cas: z.number(),
      devices: z.number(),
      revocations: z.number(),
      verificationExpiry: z.string().nullable(),
    }),
  ),
  // A file's name in the export folder, never a path: the service refuses anything else.
  "targets.importReceipt": channel(
    OFFICER,
    "import a receipt from the export folder",
    z.object({ name: z.string().min(1).max(255) }).strict(),
    z.object({
      file: z.string(),
      bundleId: z.string(),
      receiptId: z.string(),
      done: z.number(),
      failed: z.number(),
      cas: z.number(),
      uploader: z.string(),
    }),
  ),
  "targets.list": channel(
    READERS,
    "list AWS IoT targets with their queues",
    None,
    z.array(
      z.object({
        name: z.string(),
        region: z.string(),
        awsProfile: z.string().nullable(),
        caMode: z.string(),
        deviceRegistration: z.string(),
        pending: z.number(),
        uploaded: z.number(),
        failed: z.number(),
        lastSync: z
          .object({
            at: z.string(),
            outcome: z.string(),
            message: z.string().nullable(),
            /** A direct sync run, or a bundle's round trip (its receipt imported). */
            via: z.enum(["sync", "bundle"]),
          })
          .nullable(),
      }),
    ),
  ),
  "audit.verify": channel(
    READERS,
    "verify the log",
    None,
    z.object({ ok: z.boolean(), checked: z.number(), message: z.string(), counts: Counts }),
  ),
  "audit.log": channel(
    READERS,
    "read the log",
    z
      .object({
        action: z.string().max(64).optional(),
        actor: z.string().max(64).optional(),
        outcome: z.enum(["ok", "refused", "failed"]).optional(),
        since: Time.optional(),
        until: Time.optional(),
        beforeSeq: z.number().int().min(1).optional(),
        limit: z.number().int().min(1).max(500),
      })
      .strict(),
    z.array(EventView),
  ),
  "audit.export": channel(
    READERS,
    "export the audit bundle",
    None,
    z.object({ fileName: z.string(), base64: z.string(), events: z.number() }),
  ),
  "certificates.find": channel(
    READERS,
    "look a device or a certificate up",
    z
      .object({
        serial: z
          .string()
          .regex(/^[0-9A-Fa-f]{2,64}$/, "hexadecimal")
          .optional(),
        deviceId: z.string().min(1).max(64).optional(),
      })
      .strict()
      .refine((a) => (a.serial === undefined) !== (a.deviceId === undefined), {
        message: "name either a serial or a device id",
      }),
    z.object({
      certificates: z.array(
        z.object({
          serial: z.string(),
          deviceId: z.string(),
          state: z.string(),
          ca: z.string(),
          profile: z.string(),
          workOrder: z.string().nullable(),
          operator: z.string(),
          issuedAt: z.string(),
        }),
      ),
      /** Everything the log records about the device and its certificates, newest first (at most 500). */
      events: z.array(EventView),
    }),
  ),
  "revocation.revoke": channel(
    OFFICER,
    "revoke a certificate",
    z
      .object({
        serial: z
          .string()
          .regex(/^[0-9A-Fa-f]{2,64}$/, "hexadecimal")
          .optional(),
        deviceId: z.string().min(1).max(64).optional(),
        reason: z.enum(
          Object.keys(REVOCATION_REASONS) as [RevocationReason, ...RevocationReason[]],
        ),
      })
      .strict()
      .refine((a) => (a.serial === undefined) !== (a.deviceId === undefined), {
        message: "name either a serial or a device id",
      }),
    z.object({
      revoked: z.array(z.object({ serial: z.string(), deviceId: z.string(), ca: z.string() })),
      /** Targets the certificate was registered with: their next sync revokes it there. */
      targets: z.array(z.string()),
      /** The CRL each revocation goes into when it is next published. */
      crls: z.array(z.object({ ca: z.string(), number: z.number() })),
    }),
  ),
  "reissue.approve": channel(
    OFFICER,
    "approve a re-issue",
    z.object({ deviceId: z.string().min(1).max(64), reason: z.string().min(1).max(500) }).strict(),
    z.object({ id: z.number(), deviceId: z.string(), approvedBy: z.string(), reason: z.string() }),
  ),
} satisfies Record<ChannelName, Channel>;
export type Args<K extends ChannelName> = z.input<(typeof CHANNELS)[K]["args"]>;
export type Result<K extends ChannelName> = z.output<(typeof CHANNELS)[K]["result"]>;

/** What every call answers: a result, or a refusal with its code and plain words. */
export type Reply<T> =
  { ok: true; result: T } | { ok: false; error: { code: string; message: string } };

/** `window.linesign`: one named function per channel. */
export type LinesignApi = { [K in ChannelName]: (args: Args<K>) => Promise<Reply<Result<K>>> };

export function isChannel(name: unknown): name is ChannelName {
  return typeof name === "string" && Object.prototype.hasOwnProperty.call(CHANNELS, name);
}

/**
 * Validates a call's arguments. Returns the parsed arguments, or a message
 * naming the first bad field.
 */
export function parseArgs<K extends ChannelName>(
  name: K,
  raw: unknown,
): { ok: true; args: z.output<(typeof CHANNELS)[K]["args"]> } | { ok: false; message: string } {
  const r = CHANNELS[name].args.safeParse(raw ?? {});
  if (r.success) return { ok: true, args: r.data as z.output<(typeof CHANNELS)[K]["args"]> };
  const issue = r.error.issues[0];
  const field = issue && issue.path.length ? issue.path.join(".") : "(arguments)";
  return {
    ok: false,
    message: `${name}: "${field}" is invalid: ${issue?.message ?? "unknown problem"}.`,
  };
}
