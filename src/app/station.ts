/** Station-wide use cases: the development station, and the status summary. */
import type { KeyType } from "../domain/keys.js";
import type { TokenProvisioner } from "../domain/ports.js";
import type { TokenFacts } from "./token.js";
import type { CopyStatus } from "./db-copy.js";
import { act, type AppContext } from "./context.js";
import { CaService, DEFAULT_ROOT_DAYS, type CaView } from "./ca.js";
import { createCaCertificate } from "./pki/certificates.js";

/** Names and subjects of what `init --dev` makes. */
export const DEV = {
  rootLabel: "dev-root",
  rootSubject: "CN=Linesign DEVELOPMENT ONLY Root CA,O=Linesign Development,OU=NOT FOR PRODUCTION",
  icaLabel: "dev-ica",
  icaSubject: "CN=Linesign Development Issuing CA,O=Linesign Development,OU=NOT FOR PRODUCTION",
  keyType: "ec-p256" as KeyType,
} as const;

export interface DevProvisionResult {
  created: string[];
  present: string[];
}

/**
 * Makes sure the development station has its token, its software root and
 * its token-held intermediate `dev-ica` (active). Creates only what is
 * missing; running it again changes nothing.
 */
export async function provisionDevelopment(
  ctx: AppContext,
  opts: { provisioner: TokenProvisioner; soPin: string; userPin: string; devRootKeyPath: string },
): Promise<DevProvisionResult> {
  const created: string[] = [];
  const present: string[] = [];
  const ca = new CaService(ctx);

  const tokens = ctx.keys().listTokens();
  if (tokens.some((t) => t.label === ctx.tokenLabel)) {
    present.push(`token ${ctx.tokenLabel}`);
  } else {
    await act(ctx, "token.init", ctx.tokenLabel, async () => {
      opts.provisioner.initToken(ctx.tokenLabel, opts.soPin, opts.userPin);
      ctx.store.appendEvent({
        actor: ctx.actor,
        action: "token.init",
        subject: ctx.tokenLabel,
        outcome: "ok",
        details: { development: true },
      });
    });
    created.push(`token ${ctx.tokenLabel}`);
  }

  if (ctx.store.getCa(DEV.rootLabel)) {
    present.push(`CA ${DEV.rootLabel}`);
  } else {
    await act(ctx, "ca.create", DEV.rootLabel, async () => {
      const signer = await ctx.softKeys.generate(opts.devRootKeyPath, DEV.keyType);
      const cert = await createCaCertificate({
        subject: DEV.rootSubject,
        spki: signer.key.spki,
        issuer: { signer, certificate: null },
        days: DEFAULT_ROOT_DAYS,
      });
      ca.recordCa(
        {
          label: DEV.rootLabel,
          kind: "root",
          status: "active",
          keyType: DEV.keyType,
          keyUri: signer.key.uri,
          development: true,
          subject: DEV.rootSubject,
          chainDer: [],
          parentLabel: null,
          createdAt: ctx.clock.now().toISOString(),
          ...(await ca.certFields(cert)),
        },
        {
          keyUri: signer.key.uri,
          mode: "self-signed",
          development: true,
          warning: "software key: development only",
        },
      );
    });
    created.push(`CA ${DEV.rootLabel} (development only: software key)`);
  }

  if (ctx.store.getCa(DEV.icaLabel)) {
    present.push(`CA ${DEV.icaLabel}`);
  } else {
    await ca.create({
      label: DEV.icaLabel,
      keyType: DEV.keyType,
      subject: DEV.icaSubject,
      signing: { mode: "root", rootLabel: DEV.rootLabel },
      reuseKey: true,
    });
    created.push(`CA ${DEV.icaLabel} (key in token ${ctx.tokenLabel})`);
  }
  return { created, present };
}

export interface StationStatus {
  stationId: string;
  development: boolean;
  token: { label: string; present: boolean; others: string[] };
  cas: CaView[];
  log: { entries: number; head: { seq: number; hash: string } | null };
  /** Where the log head is kept apart from the database (audit.headStore). */
  headStore?: { kind: "data-object" | "signed-head"; where: string };
  /** The token's facts: mechanisms and PIN counters read now, data objects and template as last probed. */
  tokenFacts?: TokenFacts;
  /** What runs here: the software's release and the database's schema (and the newest this software knows). */
  versions?: { software: string; schema: number; schemaSupported: number };
  /** The second copy of the database (backup.copy): its lag and last error; null when none is kept. */
  copy?: CopyStatus | null;
}

/** A summary of the station, without needing the PIN. */
export function stationStatus(ctx: AppContext): StationStatus {
  const labels = ctx
    .keys()
    .listTokens()
    .map((t) => t.label);
  return {
    stationId: ctx.stationId,
    development: ctx.development,
    token: {
      label: ctx.tokenLabel,
      present: labels.includes(ctx.tokenLabel),
      others: labels.filter((l) => l !== ctx.tokenLabel),
    },
    cas: new CaService(ctx).views(),
    log: { entries: ctx.store.head()?.seq ?? 0, head: ctx.store.head() },
  };
}
