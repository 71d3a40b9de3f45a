/**
 * The only place that picks adapters and wires services. The CLI (and later
 * the kiosk's station service) asks this module for a Station and never
 * touches a driver.
 */
import { isAbsolute, join, relative, resolve } from "node:path";
import { loadKioskKey } from "./adapters/fs/kiosk-key.js";
import { AsyncLocalStorage } from "node:async_hooks";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { availableParallelism, hostname, userInfo } from "node:os";
import { fileURLToPath } from "node:url";
import {
  parseStationConfig,
  type StationConfig,
  type StationConfigInput,
} from "./domain/config.js";
import type { ProfileInput } from "./domain/profile.js";
import { LinesignError, toLinesignError } from "./domain/errors.js";
import type { Logger } from "./domain/logger.js";
import type { KeyStore, Signer } from "./domain/ports.js";
import { Pkcs11KeyStore, type PinSource } from "./adapters/pkcs11/key-store.js";
import { acquireModule, releaseModule } from "./adapters/pkcs11/module.js";
import { SqliteStationStore } from "./adapters/db/station-store.js";
import { ThreadedLogWalker } from "./adapters/db/threaded-log-walker.js";
import { nodeChainHash } from "./adapters/crypto/chain-hash.js";
import type { DiskSync } from "./adapters/db/station-store.js";
import { SCHEMA_VERSION } from "./adapters/db/database.js";
import { StationHome } from "./adapters/fs/home.js";
import { FileSoftwareKeyStore } from "./adapters/fs/software-keys.js";
import type { KeyType } from "./domain/keys.js";
import { fileLogger } from "./adapters/log/logger.js";
import type { AppContext } from "./app/context.js";
import { CaService } from "./app/ca.js";
import { ConfigRecord, ProfileService } from "./app/profiles.js";
import { AuditService, verifySignature } from "./app/audit.js";
import {
  assessToken,
  DEFAULT_MAX_PIN_ATTEMPTS,
  pinGuard,
  TokenService,
  probeFacts,
  tokenFacts,
  type TokenAssessment,
  type TokenFacts,
} from "./app/token.js";
import { parseTokenSelector, selectorMatches } from "./domain/pkcs11-uri.js";
import { Checkpointer } from "./app/checkpoint.js";
import { auditKeyRollover, type RolloverResult } from "./app/station-cert.js";
import { CopyStateSchema, DatabaseCopy, type CopyState } from "./app/db-copy.js";
import { readTextBounded } from "./adapters/fs/bounded-read.js";
import {
  DataObjectHeadStore,
  SignedHeadStore,
  type HeadStore,
  type HeadStoreKind,
} from "./app/head-store.js";
import { fileHeadFile } from "./adapters/fs/head-file.js";
import { StationHealth } from "./app/health.js";
import { IssuanceEngine, type IssuanceHooks } from "./app/issuance.js";
import { InlinePreparer, WorkerPreparer } from "./app/pki/preparer.js";
import { Line, type LineOptions } from "./app/line/line.js";
import type { SerialPorts } from "./domain/ports.js";
import { NodeSerialPorts } from "./adapters/serial/serial-ports.js";
import { SyncService } from "./app/sync/sync.js";
import { RevocationService } from "./app/revocation.js";
import { DEV_WORK_ORDER, WorkOrderService } from "./app/work-orders.js";
import { DEV_OFFICER, UserService } from "./app/users.js";
import { SigningSessions } from "./app/signing-session.js";
import { ReissueService } from "./app/reissue.js";
import type { Role } from "./domain/roles.js";
import { sdkIotGateway } from "./adapters/aws-iot/gateway.js";
export { loadAwsSdk } from "./adapters/aws-iot/gateway.js";
import {
  DEV,
  provisionDevelopment,
  stationStatus,
  type DevProvisionResult,
  type StationStatus,
} from "./app/station.js";

/** The development token's defaults, stated in README.md. Never used on a production station. */
export const DEV_DEFAULTS = {
  module: "/usr/lib/softhsm/libsofthsm2.so",
  tokenLabel: "linesign-dev",
  userPin: "246810",
  soPin: "13572468",
} as const;

/** The development station's profile: devices under dev-ica, re-provisioning on the bench allowed. */
export const DEV_PROFILE: ProfileInput = {
  ca: "dev-ica",
  validityDays: 1095,
  subject: { fixed: { O: "Linesign Development" } },
  san: [{ type: "uri", template: "urn:linesign:dev:device:{deviceId}" }],
  allowReissue: true,
};

/** Asks a person for a secret on the terminal; absent when there is none. */
export type SecretPrompt = (question: string) => Promise<string>;

export interface StationOptions {
  /**
   * "process" (default): a one-shot command; the signed-in officer's process is
   * its signing session (see `Station.signInProcess`). "service": the station
   * service; the token's PIN comes only from a signing session an officer opened.
   */
  mode?: "process" | "service";
  /** `--home`; else LINESIGN_HOME; else ~/.linesign. */
  home?: string;
  env?: NodeJS.ProcessEnv;
  /** Used when a PIN is not in the environment and a terminal is attached. */
  prompt?: SecretPrompt;
  /** Test seams of the issuance engine. */
  hooks?: IssuanceHooks;
  /**
   * Leave station.json's comparison with the recorded configuration to the
   * caller ("linesign config accept" makes it after signing its officer in).
   */
  skipConfigCheck?: boolean;
  /**
   * For in-process tools (the bench, tests): the process acts as this officer
   * and is its signing session. The CLI signs its caller in instead.
   */
  officer?: string;
  /**
   * The signed head file when station.json names none (audit.headFile); by
   * default `<home>/log-head.json`. A restore's staged station reads and
   * writes the head file of the home it becomes, not its staging folder's.
   */
  headFile?: string;
  /**
   * Test seam: the disk's sync of the database's log (default fdatasync on
   * libuv's thread pool), to hold a commit before the disk or fail it as a
   * failing disk does.
   */
  diskSync?: DiskSync;
}

export interface Station {
  home: StationHome;
  config: Readonly<StationConfig>;
  ctx: AppContext;
  /** station.json under the log: hand edits found at start, the station's own changes recorded. */
  configRecord: ConfigRecord;
  /** Officers' acts on profiles (and CA rotation). */
  profiles: ProfileService;
  /** The profiles as this station last wrote or read them (`config.profiles` is the start's). */
  profilesNow(): Readonly<StationConfig["profiles"]>;
  ca: CaService;
  audit: AuditService;
  tokens: TokenService;
  issuance: IssuanceEngine;
  /** Worker threads building certificates (0: in the main thread). */
  workers: number;
  checkpointer: Checkpointer;
  /** The second copy of the database (backup.copy), or null when none is configured. */
  copy: DatabaseCopy | null;
  /**
   * `linesign audit rollover`: introduces a replaced token's audit key (the
   * ceremony with the offline root, or the old token's key).
   */
  rolloverAuditKey(o: {
    root?: string;
    oldToken?: string;
    reason: string;
  }): Promise<RolloverResult>;
  /**
   * `token probe --record`: keeps the probe's facts in the log (a token.probe
   * entry, which status shows) and sets audit.headStore from what the token
   * keeps, moving the head to its new place first.
   * @throws LinesignError USAGE (another token), HSM_PIN_REQUIRED (no data object tried), AUDIT_HEAD_MISMATCH
   */
  recordTokenProbe(a: TokenAssessment): Promise<{ headStore: HeadStoreKind; changed: boolean }>;
  /** The token's facts for status (no PIN): mechanisms and PIN counters now, the last recorded probe. */
  tokenFacts(): Promise<TokenFacts>;
  serialPorts: SerialPorts;
  /** AWS IoT targets and the batch sync. */
  sync: SyncService;
  /** Revocation and CRLs. */
  revocation: RevocationService;
  workOrders: WorkOrderService;
  /** Officers' approvals of one more certificate for a device. */
  reissue: ReissueService;
  users: UserService;
  /** The signing session: nothing is issued outside one. */
  signing: SigningSessions;
  /**
   * A one-shot command's caller: recorded as the actor; an officer's process
   * becomes a signing session (PIN asked when first needed); the auditor and
   * sync roles may present the PIN for what they sign (checkpoints,
   * manifests, verification certificates) but never issue; an operator never
   * presents it.
   */
  signInProcess(user: { name: string; role: Role } | null): void;
  /**
   * Logs in to the station's token now (asking the session for the PIN), so a
   * line finds a wrong PIN before the first device, and no device waits on a login.
   * @throws LinesignError SIGNING_SESSION_REQUIRED, HSM_PIN_INCORRECT, HSM_PIN_LOCKED, HSM_TOKEN_NOT_FOUND
   */
  openToken(): Promise<void>;
  /** Runs `work` with `name` as the actor recorded in the log (the service's callers). */
  asActor<T>(name: string, work: () => T): T;
  /** The serial line over the given ports (defaults from station.json's "line"). */
  line(opts: Partial<LineOptions>): Line;
  status(): StationStatus;
  /**
   * Checkpoints the log head if the token is open and the head moved, then
   * closes everything. A closing checkpoint that could not be made is
   * recorded (audit.checkpoint, failed) and returned, so that a person who
   * ran the command hears of it.
   */
  close(): Promise<{ checkpointFailed: LinesignError | null }>;
}

/**
 * The loopback kiosk's stable key, kept in <home>/run/kiosk.key (0600), so a
 * kiosk page that holds it in memory reconnects after the service restarts.
 * @throws LinesignError FILE_READ_FAILED, FILE_WRITE_FAILED (naming the file)
 */
export function kioskKey(station: Station): string {
  return loadKioskKey(join(station.home.dir, "run", "kiosk.key"));
}

/** The event log's hash step, for what checks a log without a station (an audit export). */
export { chainHash } from "./compose-files.js";

/**
 * The station's keys, whose signers sign only while the database and the
 * token's log head agree (checked once per process, then kept by every head move).
 */
function boundKeys(keys: Pkcs11KeyStore, ensureBound: () => Promise<void>): KeyStore {
  return {
    listTokens: () => keys.listTokens(),
    generateKeyPair: (token, label, keyType) => keys.generateKeyPair(token, label, keyType),
    findKey: (uri) => keys.findKey(uri),
    adoptKey: (uri) => keys.adoptKey(uri),
    destroyKey: (uri) => keys.destroyKey(uri),
    login: (token) => keys.login(token),
    logout: (token) => keys.logout(token),
    close: () => keys.close(),
    signer: async (uri: string): Promise<Signer> => {
      const signer = await keys.signer(uri);
      return {
        key: signer.key,
        sign: async (message: Uint8Array) => {
          await ensureBound();
          return signer.sign(message);
        },
      };
    },
  };
}

/** This release's version, from package.json ("unknown" if it cannot be read). */
export function softwareVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8"),
    ) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** The repository's SoftHSM2 config template (softhsm.conf at the top level). */
function softhsmTemplate(): string {
  return readFileSync(fileURLToPath(new URL("../../softhsm.conf", import.meta.url)), "utf8");
}

function actorFrom(env: NodeJS.ProcessEnv): string {
  if (env.LINESIGN_USER) return env.LINESIGN_USER;
  try {
    return `os:${userInfo().username}`;
  } catch {
    return "os:unknown";
  }
}

/**
 * The PIN source for a station: the station token's PIN from LINESIGN_USER_PIN,
 * any other token's (an offline root's, in a key ceremony) from
 * LINESIGN_ROOT_PIN; else a prompt on a terminal; else, on a development
 * station's own token only, the development default.
 */
function processPins(
  config: Readonly<StationConfig>,
  tokenLabel: string,
  env: NodeJS.ProcessEnv,
  prompt: SecretPrompt | undefined,
): PinSource {
  const asked = new Map<string, string>();
  return async (label) => {
    const fromEnv = label === tokenLabel ? env.LINESIGN_USER_PIN : env.LINESIGN_ROOT_PIN;
    if (fromEnv) return fromEnv;
    const cached = asked.get(label);
    if (cached) return cached;
    if (config.development && label === tokenLabel && label === DEV_DEFAULTS.tokenLabel)
      return DEV_DEFAULTS.userPin;
    if (prompt) {
      const pin = await prompt(`User PIN for token "${label}": `);
      asked.set(label, pin);
      return pin;
    }
    const variable = label === tokenLabel ? "LINESIGN_USER_PIN" : "LINESIGN_ROOT_PIN";
    throw new LinesignError(
      "HSM_PIN_REQUIRED",
      `The PIN for token "${label}" is needed. Set ${variable} in the environment, or run on a terminal to be asked.`,
      { details: { token: label } },
    );
  };
}

function buildStation(
  home: StationHome,
  config: Readonly<StationConfig>,
  opts: StationOptions,
  logger: Logger,
  store: SqliteStationStore,
): Station {
  const env = opts.env ?? process.env;
  const modulePath = env.LINESIGN_PKCS11_MODULE ?? config.pkcs11.module;
  const tokenLabel = env.LINESIGN_TOKEN_LABEL ?? config.pkcs11.tokenLabel;
  // SoftHSM reads SOFTHSM2_CONF when the module initialises; a development home carries its own.
  if (!env.SOFTHSM2_CONF && config.pkcs11.softhsmConf)
    process.env.SOFTHSM2_CONF = config.pkcs11.softhsmConf;
  let keys: Pkcs11KeyStore | null = null;
  const mode = opts.mode ?? "process";
  const fromProcess = processPins(config, tokenLabel, env, opts.prompt);
  // Who may present the station token's PIN without a signing session (see signInProcess).
  let directPin = false;
  // An auditor is never asked for the user PIN (separation of duties): given in the
  // environment it is used, else the auditor's commands read what needs no login.
  let directPins: PinSource = fromProcess;
  const pins: PinSource = async (label) => {
    if (label !== tokenLabel) return fromProcess(label);
    if (signing.isOpen()) return signing.pin();
    if (mode === "process" && directPin) return directPins(label);
    throw new LinesignError(
      "SIGNING_SESSION_REQUIRED",
      mode === "service"
        ? "The token is used only inside a signing session: a security officer must open one."
        : "The token's PIN is presented only in an officer's signing session: an operator runs the line from the kiosk " +
            '("linesign serve"), where an officer has opened one; or an officer runs this command with LINESIGN_USER_PIN.',
    );
  };
  const tokenSerial = env.LINESIGN_TOKEN_SERIAL ?? config.pkcs11.tokenSerial;
  const openKeys = (): Pkcs11KeyStore =>
    (keys ??= new Pkcs11KeyStore(
      modulePath,
      pins,
      pinGuard(ctx, config.pkcs11.maxPinAttempts, config.pkcs11.maxSoPinAttempts),
      {
        ...(config.pkcs11.initArgs ? { libraryParameters: config.pkcs11.initArgs } : {}),
        ...(tokenSerial
          ? {
              selectors: [
                { label: tokenLabel, serial: tokenSerial, manufacturer: null, model: null },
              ],
            }
          : {}),
        // A token that goes away (storage moved, USB HSM re-plugged) is waited for; the log says so.
        // While it is away, the station stands paused (the line greets no device) and says why.
        onTokenState: (token, state, detail) => {
          const level = state === "back" ? "info" : "warn";
          logger[level]({ token, state, ...detail }, `token "${token}" ${state}`);
          if (state === "absent")
            ctx.health.report(
              "token",
              new LinesignError(
                "HSM_TOKEN_NOT_FOUND",
                `Token "${token}" went away (its storage or connection is gone). The line waits for it: ` +
                  "reconnect the HSM (or restore its storage) and the station resumes by itself.",
              ),
              () => openKeys().checkPresent(token),
            );
          else if (state === "back") ctx.health.clear("token");
        },
      },
    ));
  // The actor of a service call; a one-shot command has one for its whole run.
  const actors = new AsyncLocalStorage<string>();
  let processActor = actorFrom(env);
  const ctx: AppContext = {
    store,
    chainHash: nodeChainHash,
    keys: (): KeyStore => boundKeys(openKeys(), () => checkpointer.ensureBound()),
    tokenAdmin: () => openKeys(),
    tokenData: () => openKeys(),
    softKeys: new FileSoftwareKeyStore(),
    logger,
    clock: { now: () => new Date() },
    get actor() {
      return actors.getStore() ?? processActor;
    },
    set actor(name: string) {
      processActor = name;
    },
    stationId: config.station.id,
    tokenLabel,
    development: config.development,
    get signing() {
      return signing;
    },
    health: new StationHealth(),
  };
  const configRecord = new ConfigRecord(ctx, {
    path: home.configPath,
    read: () => home.readConfig(),
    write: (c) => home.writeConfig(c),
  });
  // The profiles as this station last wrote them: a profile rotated from the kiosk issues under
  // its new CA from the service's next device on, as from a command's.
  let profilesNow = config.profiles;
  configRecord.onChange((c) => {
    profilesNow = c.profiles;
  });
  const ca = new CaService(ctx, () => configRecord.file.read().profiles);
  const checkpointer = new Checkpointer(
    ctx,
    config.audit.checkpointEvery,
    config.audit.keyLabel,
    config.audit.keyType,
  );
  // A token that keeps no data objects: the head signed by the audit key, in a file outside the database.
  const headStoreOf = (kind: HeadStoreKind, file: string | undefined): HeadStore =>
    kind === "signed-head"
      ? new SignedHeadStore(
          fileHeadFile(file ?? opts.headFile ?? home.headFilePath),
          // The audit key without the binding check: accept-loss writes a head while unbound.
          async () => openKeys().signer((await checkpointer.signer()).key.uri),
          () => checkpointer.tokenAuditKeySpki(),
          verifySignature,
        )
      : new DataObjectHeadStore(ctx, {
          // The auditor's copy: signed by the audit key the log trusts, read without the PIN.
          signer: () => checkpointer.publicSigner(),
          verify: verifySignature,
          everyMs: config.audit.publicHeadEveryMs ?? 1000,
          now: () => ctx.clock.now().getTime(),
        });
  checkpointer.useHeadStore(headStoreOf(config.audit.headStore, config.audit.headFile));
  // A rollover signs before the new token is bound to the log.
  checkpointer.useRawKeys(() => openKeys());
  const workers =
    config.issuance.workers === "auto"
      ? Math.min(4, availableParallelism() - 1)
      : config.issuance.workers;
  const issuance = new IssuanceEngine(
    ctx,
    () => profilesNow,
    config.defaultProfile,
    ca,
    checkpointer,
    opts.hooks,
    workers > 0 ? new WorkerPreparer(workers) : new InlinePreparer(),
  );
  const copyConfig = config.backup.copy;
  const copy = copyConfig
    ? new DatabaseCopy(ctx, copyConfig, {
        read: () => {
          let text: string;
          try {
            text = readTextBounded(home.copyStatePath, "the copy's state", 64 * 1024);
          } catch {
            return null;
          }
          try {
            const parsed = CopyStateSchema.safeParse(JSON.parse(text));
            return parsed.success ? (parsed.data as CopyState) : null;
          } catch {
            return null;
          }
        },
        write: (state) => {
          try {
            home.writeFile(home.copyStatePath, JSON.stringify(state) + "\n");
          } catch (e) {
            logger.warn(
              { err: e, path: home.copyStatePath },
              "the copy's state could not be written",
            );
          }
        },
        identify: (path) => {
          try {
            const st = statSync(path);
            return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
          } catch {
            return null;
          }
        },
      })
    : null;
  if (copy) {
    issuance.committer.onCommitted(() => copy.committed());
    // The service watches for every change (sign-ins, officers' acts), not only the issuance path's commits.
    if (mode === "service") copy.watch();
  }
  // A closing checkpoint (a signing session's end, the station's) that fails is recorded and told.
  let checkpointFailed: LinesignError | null = null;
  const closingCheckpoint = async (): Promise<void> => {
    try {
      await checkpointer.checkpoint();
    } catch (e) {
      const cause = toLinesignError(e);
      checkpointFailed = new LinesignError(
        "AUDIT_CHECKPOINT_FAILED",
        `The log's closing checkpoint could not be made (${cause.code}: ${cause.message.replace(/\.$/, "")}). ` +
          "What this command did is recorded, but no signed checkpoint covers it yet: check the audit key " +
          '(audit.keyType must be a key type the token supports) and the token, then run "linesign audit verify".',
        { cause: e, details: { cause: cause.code } },
      );
      logger.error({ err: e, code: cause.code }, checkpointFailed.message);
      try {
        store.appendEvent({
          actor: ctx.actor,
          action: "audit.checkpoint",
          subject: config.audit.keyLabel,
          outcome: "failed",
          code: "AUDIT_CHECKPOINT_FAILED",
          message: checkpointFailed.message,
          details: { cause: cause.code },
        });
      } catch {
        // the log itself cannot be written: the message still reaches the person
      }
      throw checkpointFailed;
    }
  };
  const signing: SigningSessions = new SigningSessions(
    ctx,
    {
      login: () => openKeys().login(tokenLabel),
      logout: () => keys?.logout(tokenLabel),
      loggedIn: () => keys?.loggedIn(tokenLabel) ?? false,
    },
    config.sessions.signingIdleSeconds * 1000,
    () => closingCheckpoint(),
  );
  const serialPorts = new NodeSerialPorts(logger);
  const workOrders = new WorkOrderService(ctx, () => Object.keys(profilesNow));
  const revocation = new RevocationService(ctx, ca);
  return {
    home,
    config,
    ctx,
    configRecord,
    profilesNow: () => profilesNow,
    profiles: new ProfileService(ctx, configRecord),
    serialPorts,
    sync: new SyncService(ctx, ca, sdkIotGateway),
    revocation,
    workOrders,
    users: new UserService(ctx),
    reissue: new ReissueService(ctx),
    signing,
    signInProcess: (user) => {
      if (!user) return;
      ctx.actor = user.name;
      if (user.role === "officer") signing.openForProcess(user.name, () => fromProcess(tokenLabel));
      else {
        directPin = user.role !== "operator";
        if (user.role === "auditor") directPins = processPins(config, tokenLabel, env, undefined);
      }
    },
    openToken: async () => {
      await openKeys().login(tokenLabel);
      // A line does not start on a database the token's log head does not bind.
      await checkpointer.ensureBound();
    },
    asActor: (name, work) => actors.run(name, work),
    line: (o) => {
      // The line signs only in a signing session, against an open work order, with its profile.
      signing.require();
      const wo = workOrders.forLine(o.workOrder ?? undefined);
      if (o.profile && o.profile !== wo.profile)
        throw new LinesignError(
          "USAGE",
          `Work order ${wo.id} is for profile "${wo.profile}"; leave out --profile or choose another work order.`,
        );
      // A line whose profile cannot issue would fail every device: it does not start.
      const profiles = profilesNow;
      const profile = profiles[wo.profile];
      if (profile) ca.requireIssuing(profile.ca, wo.profile);
      // Certificates out unconfirmed past their profile's grace period are revoked first.
      revocation.revokeUnconfirmed(profiles);
      const line = new Line(ctx, issuance, serialPorts, profiles, config.defaultProfile, {
        ports: o.ports?.length ? o.ports : [...config.line.ports],
        baudRate: o.baudRate ?? config.line.baudRate,
        timeouts: o.timeouts ?? config.line.timeouts,
        profile: wo.profile,
        workOrder: wo.id,
        ...(o.count !== undefined ? { count: o.count } : {}),
        ...(o.rearmPollMs !== undefined ? { rearmPollMs: o.rearmPollMs } : {}),
      });
      // When the session ends devices wait on their ports instead of failing; they go on when one opens.
      const off = signing.onChange((v) =>
        v.open
          ? line.release("signing")
          : line.hold(
              "signing",
              "SIGNING_SESSION_REQUIRED",
              "The signing session ended; devices wait on their ports until an officer opens one.",
            ),
      );
      void line.finished().then(off);
      copy?.watch();
      return line;
    },
    ca,
    audit: new AuditService(
      ctx,
      checkpointer,
      config.audit.checkpointEvery,
      new ThreadedLogWalker(store.db, store.path, (why) =>
        logger.warn({ why }, "audit verify walks the log in one thread: its threads did not start"),
      ),
    ),
    tokens: new TokenService(ctx),
    issuance,
    workers,
    checkpointer,
    copy,
    rolloverAuditKey: (o) =>
      auditKeyRollover(ctx, checkpointer, ca, {
        ...o,
        keyLabel: config.audit.keyLabel,
        rawKeys: () => openKeys(),
      }),
    recordTokenProbe: async (a) => {
      if (a.probe.token.label !== tokenLabel)
        throw new LinesignError(
          "USAGE",
          `--record keeps what the station's own token "${tokenLabel}" offers; this probe was of "${a.probe.token.label}".`,
        );
      if (a.headStore === "not checked")
        throw new LinesignError(
          "HSM_PIN_REQUIRED",
          "Recording the probe needs the user PIN (LINESIGN_USER_PIN), so that it can try a data object and a key template.",
        );
      const kind = a.headStore;
      const before = configRecord.file.read().audit;
      // The head goes to its new place before the config names it.
      if (kind !== before.headStore)
        await checkpointer.moveHeadTo(headStoreOf(kind, before.headFile));
      const r = configRecord.change(
        "token.probe",
        tokenLabel,
        (raw) => {
          raw.audit.headStore = kind;
        },
        () => ({ ...probeFacts(a), headStoreBefore: before.headStore }),
      );
      return { headStore: kind, changed: r.changes.length > 0 };
    },
    tokenFacts: () =>
      tokenFacts(ctx, () => openKeys().probe(tokenLabel, { login: false }), config.audit.keyType),
    status: () => ({
      ...stationStatus(ctx),
      headStore: { kind: checkpointer.headStore.kind, where: checkpointer.headStore.where },
      versions: {
        software: softwareVersion(),
        schema: store.schemaVersion(),
        schemaSupported: SCHEMA_VERSION,
      },
      copy: copy?.status() ?? null,
    }),
    close: async () => {
      try {
        // A session ends with the station (its checkpoint included).
        await signing.close("shutdown");
        // The shutdown checkpoint: only when this process already holds a login (never asks for a PIN).
        if (keys?.loggedIn(tokenLabel)) await closingCheckpoint();
      } catch {
        // recorded and kept in checkpointFailed by closingCheckpoint
      } finally {
        checkpointer.stop();
        // The last entries this process recorded go into the second copy.
        await copy?.close();
        await issuance.close();
        await keys?.close();
        keys = null;
        store.close();
      }
      return { checkpointFailed };
    },
  };
}

/**
 * A station's identity is set once, when its log begins: the checkpoints and
 * the token's head are signed and kept under it, so a changed station.id
 * would make every earlier checkpoint fail to verify.
 * @throws LinesignError STATION_ID_CHANGED
 */
function checkStationIdentity(
  store: SqliteStationStore,
  config: Readonly<StationConfig>,
  configPath: string,
): void {
  const first = store.eventAt(1);
  if (first?.action !== "station.init" || !first.subject || first.subject === config.station.id)
    return;
  throw new LinesignError(
    "STATION_ID_CHANGED",
    `${configPath} names this station "${config.station.id}", but its log was begun as station "${first.subject}". ` +
      `A station's identity is set once: put "station": { "id": "${first.subject}" } back in ${configPath}. Nothing was changed.`,
    { details: { configured: config.station.id, recorded: first.subject } },
  );
}

/**
 * The second copy guards against losing the home's disk: a copy inside the
 * home (or over the database itself) would be lost with it.
 * @throws LinesignError CONFIG_INVALID naming backup.copy.path
 */
function checkCopyPath(home: StationHome, config: Readonly<StationConfig>): void {
  const path = config.backup.copy?.path;
  if (!path) return;
  const r = relative(home.dir, resolve(path));
  if (r === "" || (!r.startsWith("..") && !isAbsolute(r)))
    throw new LinesignError(
      "CONFIG_INVALID",
      `${home.configPath}: field "backup.copy.path" is invalid: ${path} is inside the station home ${home.dir}, ` +
        "where it is lost with the home's disk. Name a file on another disk. Fix it and run again.",
      { details: { field: "backup.copy.path" } },
    );
}

/**
 * Opens an existing station home.
 * @throws LinesignError HOME_NOT_INITIALISED, CONFIG_INVALID, DB_NEWER_VERSION, DB_ERROR
 */
export function openStation(opts: StationOptions = {}): Station {
  const env = opts.env ?? process.env;
  const home = StationHome.locate(opts.home, env);
  const config = home.readConfig();
  const logger = fileLogger(home.logPath);
  const store = SqliteStationStore.open(home.databasePath, {
    create: false,
    hash: nodeChainHash,
    diskSync: opts.diskSync,
  });
  try {
    checkStationIdentity(store, config, home.configPath);
    checkCopyPath(home, config);
  } catch (e) {
    store.close();
    throw e;
  }
  const station = buildStation(home, config, opts, logger, store);
  try {
    // A hand edit of station.json is recorded (or refused) before anything runs on it.
    if (!opts.skipConfigCheck) station.configRecord.reconcile(config);
  } catch (e) {
    void station.close();
    throw e;
  }
  if (opts.officer) station.signInProcess({ name: opts.officer, role: "officer" });
  return station;
}

export interface InitOptions extends StationOptions {
  dev: boolean;
  module?: string;
  tokenLabel?: string;
  stationId?: string;
  /** The audit key's type (default ec-p256; a token without EC needs an RSA one). */
  auditKeyType?: KeyType;
  /** Where the log head is kept (default data-object; signed-head for tokens without data objects). */
  headStore?: HeadStoreKind;
}

export interface InitResult {
  home: string;
  /** False when the home already existed and nothing about it changed. */
  createdHome: boolean;
  development: boolean;
  dev?: DevProvisionResult;
  status: StationStatus;
}

/**
 * Creates the station home (config, database) if missing. With `dev`, also a
 * SoftHSM token `linesign-dev` (when none exists), a software development
 * root, and `dev-ica` in the token, signed by that root and active.
 * Running it again changes nothing and says so.
 */
export async function initStation(opts: InitOptions): Promise<InitResult> {
  const env = opts.env ?? process.env;
  const home = StationHome.locate(opts.home, env);
  let createdHome = false;
  let addedProfile = false;
  let config: Readonly<StationConfig>;
  if (home.exists()) {
    config = home.readConfig();
    if (opts.dev && !config.development) {
      throw new LinesignError(
        "USAGE",
        `${home.dir} is a production station; "init --dev" will not turn it into a development one.`,
      );
    }
    if (opts.dev && !config.profiles.default) {
      // A development home made before profiles existed: add what the development line needs.
      const raw = JSON.parse(JSON.stringify(config)) as StationConfigInput;
      raw.profiles = { ...raw.profiles, default: DEV_PROFILE };
      config = parseStationConfig(raw, home.configPath);
      home.writeConfig(config);
      addedProfile = true;
    }
  } else {
    // A folder an administrator made beforehand must be private before anything goes into it.
    home.checkPrivate();
    const modulePath = opts.module ?? env.LINESIGN_PKCS11_MODULE ?? DEV_DEFAULTS.module;
    // A module that cannot be loaded and initialised leaves nothing behind: checked before
    // anything of the home is written. (A development home without SOFTHSM2_CONF brings its
    // own SoftHSM configuration, so its module is checked once that is written.)
    const tokenLabel =
      opts.tokenLabel ?? env.LINESIGN_TOKEN_LABEL ?? (opts.dev ? DEV_DEFAULTS.tokenLabel : "");
    if (!tokenLabel) {
      throw new LinesignError(
        "USAGE",
        `Name the station's token: "linesign init --token-label LABEL" (or LINESIGN_TOKEN_LABEL).`,
      );
    }
    if (!opts.dev || env.SOFTHSM2_CONF) {
      acquireModule(modulePath);
      releaseModule(modulePath);
    }
    home.ensureDirs();
    const fresh: StationConfigInput = {
      version: 1,
      station: {
        id:
          opts.stationId ??
          `${opts.dev ? "dev-" : ""}${hostname()
            .replace(/[^A-Za-z0-9._-]/g, "-")
            .slice(0, 56)}`,
      },
      pkcs11: {
        module: modulePath,
        tokenLabel,
        maxPinAttempts: DEFAULT_MAX_PIN_ATTEMPTS,
      },
      development: opts.dev,
      ...(opts.auditKeyType || opts.headStore
        ? {
            audit: {
              ...(opts.auditKeyType ? { keyType: opts.auditKeyType } : {}),
              ...(opts.headStore ? { headStore: opts.headStore } : {}),
            },
          }
        : {}),
      ...(opts.dev ? { profiles: { default: DEV_PROFILE } } : {}),
    };
    if (opts.dev && !env.SOFTHSM2_CONF) {
      home.writeFile(
        home.softhsmConfPath,
        softhsmTemplate().replace(
          /^directories\.tokendir = .*$/m,
          `directories.tokendir = ${home.softhsmTokenDir}`,
        ),
      );
      mkdirSync(home.softhsmTokenDir, { recursive: true, mode: 0o700 });
      fresh.pkcs11.softhsmConf = home.softhsmConfPath;
    }
    config = parseStationConfig(fresh, "the new station config");
    // The database first, then the config: a home with a config always has its log.
    const store = SqliteStationStore.open(home.databasePath, { create: true, hash: nodeChainHash });
    store.appendEvent({
      actor: actorFrom(env),
      action: "station.init",
      subject: config.station.id,
      outcome: "ok",
      details: {
        development: opts.dev,
        module: config.pkcs11.module,
        token: config.pkcs11.tokenLabel,
      },
    });
    store.close();
    home.writeConfig(config);
    createdHome = true;
  }
  const station = buildStation(
    home,
    config,
    opts,
    fileLogger(home.logPath),
    SqliteStationStore.open(home.databasePath, { create: false, hash: nodeChainHash }),
  );
  try {
    // The first officer: from LINESIGN_USER and LINESIGN_PASSPHRASE (or a prompt); on a
    // development station with neither, the development officer README names.
    let firstOfficer: string | null = null;
    if (!station.users.hasUsers()) {
      let name = env.LINESIGN_USER;
      let passphrase = env.LINESIGN_PASSPHRASE;
      if (!name && config.development) ({ name, passphrase } = DEV_OFFICER);
      if (name && !passphrase && opts.prompt)
        passphrase = await opts.prompt(`New passphrase for officer ${name}: `);
      if (!name || !passphrase)
        throw new LinesignError(
          "AUTH_REQUIRED",
          "The station's first officer is needed: set LINESIGN_USER and LINESIGN_PASSPHRASE (or run on a terminal to be asked), then run init again.",
        );
      await station.users.add(name, "officer", passphrase);
      firstOfficer = name;
    }
    // Setting up the development token and CA is the first officer's (or the development officer's) act.
    const initOfficer = firstOfficer ?? (config.development ? DEV_OFFICER.name : null);
    if (initOfficer) station.signInProcess({ name: initOfficer, role: "officer" });
    let dev: DevProvisionResult | undefined;
    if (opts.dev) {
      dev = await provisionDevelopment(station.ctx, {
        provisioner: station.ctx.tokenAdmin(),
        soPin: env.LINESIGN_SO_PIN ?? DEV_DEFAULTS.soPin,
        userPin: env.LINESIGN_USER_PIN ?? DEV_DEFAULTS.userPin,
        devRootKeyPath: home.devRootKeyPath,
      });
      if (!station.ctx.store.getWorkOrder(DEV_WORK_ORDER) && station.config.profiles.default) {
        await station.workOrders.create({
          id: DEV_WORK_ORDER,
          profile: "default",
          quantity: 10_000_000,
        });
        dev.created.push(`work order ${DEV_WORK_ORDER} (profile default, open-ended)`);
      }
      if (addedProfile) {
        dev.created.push('profile "default" (on dev-ica)');
        station.ctx.store.appendEvent({
          actor: station.ctx.actor,
          action: "station.config",
          subject: "profiles.default",
          outcome: "ok",
          details: { added: "default" },
        });
      }
    }
    if (firstOfficer && dev) dev.created.push(`officer ${firstOfficer}`);
    const result: InitResult = {
      home: home.dir,
      createdHome,
      development: config.development,
      status: station.status(),
    };
    if (dev) result.dev = dev;
    return result;
  } finally {
    await station.close();
  }
}

export { DEV };

// Bounded reads, atomic writes and the home's place: also for commands that open no station.
export {
  privateHome,
  readFileBounded,
  readTextBounded,
  READ_LIMITS,
  writeFileAtomic,
} from "./compose-files.js";

export interface ProbeOptions {
  /** `--home`; used when no module is given, for the station's module and token. */
  home?: string;
  /** The module to probe; default the station's. */
  module?: string;
  /** A label, `serial:S` or a token URI; default the station's token (or the only token present). */
  token?: string;
  env?: NodeJS.ProcessEnv;
  prompt?: SecretPrompt;
}

/**
 * `linesign token probe`: what a token offers and whether it is fit to hold a
 * CA key and the audit key. Without a user PIN (LINESIGN_USER_PIN, or a
 * prompt) only what needs no login is read; with one, a private data object
 * and a throwaway key are made and removed again.
 * @throws LinesignError HSM_MODULE_*, HSM_TOKEN_NOT_FOUND, USAGE
 */
export async function probeToken(opts: ProbeOptions): Promise<TokenAssessment> {
  const env = opts.env ?? process.env;
  let config: Readonly<StationConfig> | null = null;
  if (!opts.module) {
    const home = StationHome.locate(opts.home, env);
    config = home.readConfig();
    if (!env.SOFTHSM2_CONF && config.pkcs11.softhsmConf)
      process.env.SOFTHSM2_CONF = config.pkcs11.softhsmConf;
  }
  const modulePath = opts.module ?? env.LINESIGN_PKCS11_MODULE ?? config!.pkcs11.module;
  const wanted = opts.token
    ? parseTokenSelector(opts.token)
    : config
      ? {
          label: env.LINESIGN_TOKEN_LABEL ?? config.pkcs11.tokenLabel,
          serial: env.LINESIGN_TOKEN_SERIAL ?? config.pkcs11.tokenSerial ?? null,
          manufacturer: null,
          model: null,
        }
      : null;
  let pin = env.LINESIGN_USER_PIN;
  const keys = new Pkcs11KeyStore(modulePath, async () => pin ?? "", null, {
    ...(config?.pkcs11.initArgs ? { libraryParameters: config.pkcs11.initArgs } : {}),
    ...(wanted?.label && wanted.serial ? { selectors: [wanted] } : {}),
  });
  try {
    const present = keys.listTokens();
    const matching = present.filter((t) => (wanted ? selectorMatches(wanted, t) : true));
    const [token] = matching;
    if (!token || matching.length > 1) {
      throw new LinesignError(
        "HSM_TOKEN_NOT_FOUND",
        matching.length > 1
          ? `${matching.length} tokens match; name one with --token (a label, serial:S, or a token URI): ` +
              matching.map((t) => `"${t.label}" serial ${t.serial}`).join(", ")
          : `No initialised token${opts.token ? ` matches "${opts.token}"` : ""} in ${modulePath}. ` +
              `Tokens present: ${present.map((t) => `"${t.label}"`).join(", ") || "none"}.`,
      );
    }
    if (!pin && opts.prompt)
      pin = await opts.prompt(
        `User PIN for token "${token.label}" (empty: skip the tries that need it): `,
      );
    const probe = await keys.probe(token.label, { login: Boolean(pin) });
    return assessToken(probe, config?.audit.keyType ?? "ec-p256");
  } finally {
    await keys.close();
  }
}
