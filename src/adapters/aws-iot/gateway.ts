/**
 * The AWS IoT adapter: the only importer of @aws-sdk/client-iot (and of STS,
 * for GetCallerIdentity). One request per call (the SDK's own retries are
 * off: the sync job paces, retries and records every attempt itself).
 * Credentials come from the SDK's default provider chain, or the named
 * profile; never from the station.
 *
 * Where requests go is resolved here, once, in AWS's documented order (the
 * target's --endpoint, AWS_ENDPOINT_URL_IOT, AWS_ENDPOINT_URL, the profile's
 * services section, the profile's endpoint_url, AWS's regional default;
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns off all but the first and last)
 * and handed to the SDK explicitly, so what the plan shows is what is used:
 * the SDK on its own reads endpoint_url from the default profile only, not
 * from the target's.
 *
 * The SDK (its clients, its config-file reader) is loaded when a target's
 * endpoint is resolved or a gateway is made (a sync, an export, an upload),
 * not when the command starts: the station's other commands never need it.
 */
import type {
  IotFailure,
  IotGateway,
  IotGatewayFactory,
  IotResult,
  IotWhere,
} from "../../domain/ports.js";

// The station runs on Node 20 (its packages are locked); the SDK's notice that later SDK
// releases will need Node 22 would reach operators on every command. README says so once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  resourceId?: string;
  resourceArn?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: unknown;
}

/** What AWS (or the network) said, in the sync job's terms. */
export function toFailure(e: unknown): IotFailure {
  const err = (e ?? {}) as SdkError;
  const status = err.$metadata?.httpStatusCode ?? null;
  // No HTTP status: the request never got an answer (or credentials could not be found).
  const name =
    status !== null
      ? (err.name ?? "UnknownError")
      : err.name === "CredentialsProviderError"
        ? "CredentialsProviderError"
        : "NetworkError";
  const failure: IotFailure = { name, message: err.message ?? String(e), httpStatus: status };
  if (err.resourceId) failure.resourceId = err.resourceId;
  if (err.resourceArn) failure.resourceArn = err.resourceArn;
  return failure;
}

async function call<T>(fn: () => Promise<T>): Promise<IotResult<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, failure: toFailure(e) };
  }
}

type Profiles = Record<string, Record<string, string | undefined>>;
let sharedConfig: Promise<Profiles> | null = null;

/** The shared config file's sections (read once; a missing or unreadable file is empty). */
function profiles(): Promise<Profiles> {
  sharedConfig ??= import("@smithy/core/config")
    .then((m) => m.loadSharedConfigFiles())
    .then((f) => f.configFile as Profiles)
    .catch(() => ({}));
  return sharedConfig;
}

/**
 * Where a service's requests go, and why. `service` is the SDK's id ("iot",
 * "sts"); the default is AWS's regional endpoint.
 */
export async function resolveEndpoint(
  service: "iot" | "sts",
  t: { region: string; endpoint?: string; awsProfile?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ endpoint: string | null; source: string; shown: string }> {
  const fallback = `https://${service}.${t.region}.amazonaws.com${t.region.startsWith("cn-") ? ".cn" : ""}`;
  if (service === "iot" && t.endpoint)
    return { endpoint: t.endpoint, source: "the target's --endpoint", shown: t.endpoint };
  const profileName = t.awsProfile ?? env.AWS_PROFILE ?? "default";
  const config = await profiles();
  const profile = config[profileName] ?? {};
  const ignore =
    env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === "true" ||
    profile.ignore_configured_endpoint_urls === "true";
  if (!ignore) {
    const own = `AWS_ENDPOINT_URL_${service.toUpperCase()}`;
    if (env[own])
      return { endpoint: env[own]!, source: `the environment's ${own}`, shown: env[own]! };
    if (env.AWS_ENDPOINT_URL)
      return {
        endpoint: env.AWS_ENDPOINT_URL,
        source: "the environment's AWS_ENDPOINT_URL",
        shown: env.AWS_ENDPOINT_URL,
      };
    const section = profile.services ? config[`services.${profile.services}`] : undefined;
    const fromSection = section?.[`${service}.endpoint_url`];
    if (fromSection)
      return {
        endpoint: fromSection,
        source: `profile ${profileName}'s services section "${profile.services}"`,
        shown: fromSection,
      };
    if (profile.endpoint_url)
      return {
        endpoint: profile.endpoint_url,
        source: `profile ${profileName}'s endpoint_url`,
        shown: profile.endpoint_url,
      };
  }
  return { endpoint: null, source: "AWS's regional endpoint", shown: fallback };
}

/** Where a target's requests go (the endpoint and its source), without sending anything. */
export async function whereOf(t: {
  region: string;
  endpoint?: string;
  awsProfile?: string;
}): Promise<IotWhere> {
  const e = await resolveEndpoint("iot", t);
  return {
    endpoint: e.shown,
    endpointSource: e.source,
    profile: t.awsProfile ?? process.env.AWS_PROFILE ?? null,
    region: t.region,
  };
}

let sdk: Promise<
  [typeof import("@aws-sdk/client-iot"), typeof import("@aws-sdk/client-sts")]
> | null = null;

/**
 * Loads the SDK's clients (once). The commands that send requests (sync, upload) call it
 * before they start their work, so loading and compiling the SDK never falls among the
 * paced requests.
 */
export function loadAwsSdk(): Promise<
  [typeof import("@aws-sdk/client-iot"), typeof import("@aws-sdk/client-sts")]
> {
  sdk ??= Promise.all([import("@aws-sdk/client-iot"), import("@aws-sdk/client-sts")]);
  return sdk;
}

export const sdkIotGateway: IotGatewayFactory = async (t) => {
  const [iotEndpoint, stsEndpoint, [iot, stsSdk]] = await Promise.all([
    resolveEndpoint("iot", t),
    resolveEndpoint("sts", t),
    loadAwsSdk(),
  ]);
  const {
    AddThingToThingGroupCommand,
    AttachPolicyCommand,
    AttachThingPrincipalCommand,
    CreatePolicyCommand,
    CreateThingCommand,
    DescribeThingCommand,
    DetachPolicyCommand,
    DetachThingPrincipalCommand,
    GetPolicyCommand,
    DescribeCACertificateCommand,
    DescribeCertificateCommand,
    GetRegistrationCodeCommand,
    IoTClient,
    RegisterCACertificateCommand,
    RegisterCertificateCommand,
    RegisterCertificateWithoutCACommand,
    UpdateCACertificateCommand,
    UpdateCertificateCommand,
  } = iot;
  const { GetCallerIdentityCommand, STSClient } = stsSdk;
  const common = {
    region: t.region,
    ...(t.awsProfile ? { profile: t.awsProfile } : {}),
    maxAttempts: 1,
  };
  const client = new IoTClient({
    ...common,
    ...(iotEndpoint.endpoint ? { endpoint: iotEndpoint.endpoint } : {}),
  });
  const sts = new STSClient({
    ...common,
    ...(stsEndpoint.endpoint ? { endpoint: stsEndpoint.endpoint } : {}),
  });
  if (t.pace) {
    const pace = t.pace;
    // The deserialize step wraps the HTTP handler: this waits after signing, right before sending.
    // Each request holds its token until its answer or failure is seen (see app/sync/pacer.ts).
    for (const c of [sts, client] as const)
      (c.middlewareStack as import("@aws-sdk/client-iot").IoTClient["middlewareStack"]).add(
        (next, context) => async (args) => {
          const answered = await pace(String(context.commandName ?? "").replace(/Command$/, ""));
          try {
            return await next(args);
          } finally {
            answered();
          }
        },
        { step: "deserialize", name: "linesignPace", priority: "low" },
      );
  }
  const gw: IotGateway = {
    where: {
      endpoint: iotEndpoint.shown,
      endpointSource: iotEndpoint.source,
      profile: t.awsProfile ?? process.env.AWS_PROFILE ?? null,
      region: t.region,
    },
    identity: () =>
      call(async () => {
        const r = await sts.send(new GetCallerIdentityCommand({}));
        return { account: r.Account ?? "", arn: r.Arn ?? "" };
      }),
    getRegistrationCode: () =>
      call(async () => (await client.send(new GetRegistrationCodeCommand({}))).registrationCode!),
    registerCaCertificate: (p) =>
      call(async () => {
        const r = await client.send(
          new RegisterCACertificateCommand({
            caCertificate: p.caPem,
            ...(p.verificationPem ? { verificationCertificate: p.verificationPem } : {}),
            certificateMode: p.mode,
            setAsActive: p.setAsActive,
            allowAutoRegistration: p.allowAutoRegistration,
            ...(p.registrationConfig ? { registrationConfig: p.registrationConfig } : {}),
          }),
        );
        return { certificateId: r.certificateId!, certificateArn: r.certificateArn! };
      }),
    updateCaCertificate: (id, status) =>
      call(async () => {
        await client.send(new UpdateCACertificateCommand({ certificateId: id, newStatus: status }));
        return null;
      }),
    describeCaCertificate: (id) =>
      call(async () => {
        const r = await client.send(new DescribeCACertificateCommand({ certificateId: id }));
        const d = r.certificateDescription!;
        return {
          pem: d.certificatePem ?? "",
          status: d.status ?? "",
          mode: d.certificateMode ?? "",
          arn: d.certificateArn ?? "",
        };
      }),
    registerCertificate: (p) =>
      call(async () => {
        const r = await client.send(
          new RegisterCertificateCommand({
            certificatePem: p.pem,
            ...(p.caPem ? { caCertificatePem: p.caPem } : {}),
            status: p.status,
          }),
        );
        return { certificateId: r.certificateId!, certificateArn: r.certificateArn! };
      }),
    registerCertificateWithoutCa: (p) =>
      call(async () => {
        const r = await client.send(
          new RegisterCertificateWithoutCACommand({ certificatePem: p.pem, status: p.status }),
        );
        return { certificateId: r.certificateId!, certificateArn: r.certificateArn! };
      }),
    updateCertificate: (id, status) =>
      call(async () => {
        await client.send(new UpdateCertificateCommand({ certificateId: id, newStatus: status }));
        return null;
      }),
    describeCertificate: (id) =>
      call(async () => {
        const r = await client.send(new DescribeCertificateCommand({ certificateId: id }));
        const d = r.certificateDescription!;
        return { pem: d.certificatePem ?? "", status: d.status ?? "" };
      }),
    createThing: (p) =>
      call(async () => {
        const r = await client.send(
          new CreateThingCommand({
            thingName: p.name,
            ...(p.thingType ? { thingTypeName: p.thingType } : {}),
            attributePayload: { attributes: p.attributes },
          }),
        );
        return { arn: r.thingArn ?? "" };
      }),
    describeThing: (name) =>
      call(async () => {
        const r = await client.send(new DescribeThingCommand({ thingName: name }));
        return {
          arn: r.thingArn ?? "",
          thingType: r.thingTypeName ?? null,
          attributes: { ...(r.attributes ?? {}) },
        };
      }),
    attachThingPrincipal: (thing, principal) =>
      call(async () => {
        await client.send(new AttachThingPrincipalCommand({ thingName: thing, principal }));
        return null;
      }),
    detachThingPrincipal: (thing, principal) =>
      call(async () => {
        await client.send(new DetachThingPrincipalCommand({ thingName: thing, principal }));
        return null;
      }),
    createPolicy: (name, document) =>
      call(async () => {
        const r = await client.send(
          new CreatePolicyCommand({ policyName: name, policyDocument: document }),
        );
        return { arn: r.policyArn ?? "" };
      }),
    getPolicy: (name) =>
      call(async () => {
        const r = await client.send(new GetPolicyCommand({ policyName: name }));
        return { arn: r.policyArn ?? "", document: r.policyDocument ?? "" };
      }),
    attachPolicy: (policy, target) =>
      call(async () => {
        await client.send(new AttachPolicyCommand({ policyName: policy, target }));
        return null;
      }),
    detachPolicy: (policy, target) =>
      call(async () => {
        await client.send(new DetachPolicyCommand({ policyName: policy, target }));
        return null;
      }),
    addThingToThingGroup: (group, thing) =>
      call(async () => {
        await client.send(
          new AddThingToThingGroupCommand({ thingGroupName: group, thingName: thing }),
        );
        return null;
      }),
  };
  return gw;
};
