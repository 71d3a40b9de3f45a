import { z } from "zod";
import { LinesignError } from "./errors.js";
import { KEY_TYPES } from "./keys.js";

/** Where a station keeps its log head (app/head-store.ts). */
export const HEAD_STORE_KINDS = ["data-object", "signed-head"] as const;
import { ProfileSchema } from "./profile.js";

/** Serial line timing (docs/serial-protocol.md, "Timeouts and retries"). */
export const LineTimeoutsSchema = z
  .object({
    /** Silence after which the side awaiting an answer sends its last frame again. */
    retryMs: z.number().int().min(50).max(60_000).default(500),
    /** Times a frame is sent again before the side just waits for its deadline. */
    retries: z.number().int().min(0).max(10).default(3),
    /** Interval of the station's greeting while no device is on the port. */
    helloMs: z.number().int().min(50).max(60_000).default(1000),
    /** Silence allowed while the device makes its key and request. */
    csrMs: z.number().int().min(100).max(600_000).default(60_000),
    /** Silence allowed while the device stores its certificate. */
    storedMs: z.number().int().min(100).max(600_000).default(30_000),
  })
  .strict();
export type LineTimeouts = z.infer<typeof LineTimeoutsSchema>;

const LINE_DEFAULTS = {
  ports: [],
  baudRate: 115200,
  timeouts: { retryMs: 500, retries: 3, helloMs: 1000, csrMs: 60_000, storedMs: 30_000 },
};

export const LineConfigSchema = z
  .object({
    /** Serial ports the line drives when none are named on the command line. */
    ports: z.array(z.string().min(1)).max(64).default([]),
    baudRate: z.number().int().min(300).max(4_000_000).default(115200),
    timeouts: LineTimeoutsSchema.default(LINE_DEFAULTS.timeouts),
  })
  .strict();

/** `backup.copy`: the second copy of the database (app/db-copy.ts). */
export const DatabaseCopySchema = z
  .object({
    /** The copy's file (absolute; on another disk than the home). Its folder must exist. */
    path: z
      .string()
      .min(2)
      .max(4096)
      .refine((p) => p.startsWith("/") && !p.endsWith("/"), "an absolute path of a file"),
    /**
     * "commit": after the issuance path's group commits (and any other change), at most once
     * every `everySeconds`; "interval": every `everySeconds` while the log has moved.
     */
    trigger: z.enum(["commit", "interval"]).default("commit"),
    /** The least time between two copies (commit), or the time between them (interval). Default 10. */
    everySeconds: z.number().int().min(1).max(86_400).default(10),
  })
  .strict();
export type DatabaseCopyConfig = z.infer<typeof DatabaseCopySchema>;

/** Station configuration, as stored in `<home>/station.json`. */
export const StationConfigSchema = z
  .object({
    version: z.literal(1),
    station: z
      .object({
        /** Names this station in every log entry and export. */
        id: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,64}$/, "letters, digits, '.', '_' or '-', at most 64"),
      })
      .strict(),
    pkcs11: z
      .object({
        /** Path of the PKCS#11 module (shared library). */
        module: z.string().min(1),
        /** Label of the token that holds the station's CA keys (at most 32 bytes of UTF-8). */
        tokenLabel: z
          .string()
          .min(1)
          .refine((l) => new TextEncoder().encode(l).length <= 32, "at most 32 bytes (UTF-8)"),
        /** The token's serial number, where several tokens share its label (YubiHSMs all say "YubiHSM"). */
        tokenSerial: z.string().min(1).max(16).optional(),
        /** Extra C_Initialize arguments for modules that need them (NSS softokn: "configdir='sql:/path'"). */
        initArgs: z.string().min(1).max(1024).optional(),
        /** Consecutive wrong user PINs after which the station stops presenting PINs (default 5). */
        maxPinAttempts: z.number().int().min(1).max(100).default(5),
        /**
         * Consecutive wrong SO PINs after which the station stops presenting SO PINs (default 3).
         * Keep it below the token's own SO limit: some HSMs erase themselves when it is reached.
         */
        maxSoPinAttempts: z.number().int().min(1).max(100).default(3),
        /** SoftHSM2 config used when SOFTHSM2_CONF is not set (development stations). */
        softhsmConf: z.string().min(1).optional(),
      })
      .strict(),
    /** True for a development station made by `init --dev`. */
    development: z.boolean().default(false),
    /** Certificate profiles by name. */
    profiles: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,32}$/), ProfileSchema).default({}),
    /** The profile used when none is named. */
    defaultProfile: z.string().default("default"),
    /**
     * What the station does when it finds station.json changed by hand (not by
     * one of its own commands) since it last recorded it: "record" the change
     * in the log and go on (default), or "refuse" to start until an officer
     * accepts it ("linesign config accept").
     */
    handEdits: z.enum(["record", "refuse"]).default("record"),
    issuance: z
      .object({
        /** Worker threads for parsing, checking and building certificates: "auto" = cores - 1 (at most 4); 0 = in the main thread. */
        workers: z.union([z.literal("auto"), z.number().int().min(0).max(16)]).default("auto"),
      })
      .strict()
      .default({ workers: "auto" }),
    line: LineConfigSchema.default(LINE_DEFAULTS),
    sessions: z
      .object({
        /** A signing session ends after this long with neither signing nor officer activity. */
        signingIdleSeconds: z.number().int().min(1).max(86_400).default(900),
        /** A kiosk login ends after this long without a call from it (an officer's lasts while its signing session is used). */
        loginIdleSeconds: z.number().int().min(1).max(86_400).default(1800),
      })
      .strict()
      .default({ signingIdleSeconds: 900, loginIdleSeconds: 1800 }),
    audit: z
      .object({
        /** Sign a checkpoint of the log head with the audit key every this many entries (and at shutdown). */
        checkpointEvery: z.number().int().min(1).max(1_000_000).default(1000),
        /** Label of the audit key in the station's token. */
        keyLabel: z.string().min(1).max(32).default("linesign-audit"),
        /** Type of the audit key (a token without elliptic curves needs an RSA one). */
        keyType: z.enum(KEY_TYPES).default("ec-p256"),
        /**
         * Where the log head is kept: "data-object", a private data object on the token (catches
         * every older database), or "signed-head", for tokens that keep no data objects: the head
         * signed by the audit key in a file outside the database (see hsm/README.md for what it
         * cannot catch). `linesign token probe --record` sets it from what the token keeps.
         */
        headStore: z.enum(HEAD_STORE_KINDS).default("data-object"),
        /**
         * The public copy of the log head (data-object store: a public data object, signed by the
         * audit key, that an auditor reads without the user PIN) follows the issuance path's head
         * moves at most once per this many ms, and at once at every checkpoint and command's end
         * (0: every move; each copy costs a token write and an audit-key signature). Default 1000.
         */
        publicHeadEveryMs: z.number().int().min(0).max(3_600_000).optional(),
        /** The signed head's file (absolute path; default <home>/log-head.json). Best on other media than the database. */
        headFile: z
          .string()
          .min(2)
          .max(4096)
          .refine((p) => p.startsWith("/"), "an absolute path")
          .optional(),
      })
      .strict()
      .default({
        checkpointEvery: 1000,
        keyLabel: "linesign-audit",
        keyType: "ec-p256",
        headStore: "data-object",
      }),
    backup: z
      .object({
        /**
         * Where a backup made from the kiosk is written (absolute; another disk or removable
         * media, never inside the home). Unset: the kiosk cannot make one.
         */
        dir: z
          .string()
          .min(2)
          .max(4096)
          .refine((p) => p.startsWith("/"), "an absolute path")
          .optional(),
        /**
         * A second copy of the database kept current on another path (another disk): SQLite's
         * online backup, written to a temporary file and renamed, so the copy is always whole.
         * It guards against losing the station's disk, not against losing the machine.
         */
        copy: DatabaseCopySchema.optional(),
      })
      .strict()
      .default({}),
    /**
     * The station's export folder: where the kiosk writes CRLs and offline bundles and
     * takes receipts from (absolute; a removable medium's mount point, for instance).
     * Absent: <home>/exports. Absent, not defaulted, so stations that never set it
     * keep the configuration they recorded.
     */
    export: z
      .object({
        dir: z
          .string()
          .min(2)
          .max(4096)
          .refine((p) => p.startsWith("/"), "an absolute path"),
      })
      .strict()
      .optional(),
  })
  .strict();

export type StationConfig = z.infer<typeof StationConfigSchema>;
export type StationConfigInput = z.input<typeof StationConfigSchema>;

/**
 * Validates raw config, naming the first bad field, and returns a frozen copy.
 * Throws CONFIG_INVALID.
 */
export function parseStationConfig(raw: unknown, source: string): Readonly<StationConfig> {
  const result = StationConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue && issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    throw new LinesignError(
      "CONFIG_INVALID",
      `${source}: field "${field}" is invalid: ${issue?.message ?? "unknown problem"}. Fix it and run again.`,
      { details: { field } },
    );
  }
  return deepFreeze(result.data);
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
