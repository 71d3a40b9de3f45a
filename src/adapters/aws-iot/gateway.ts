/**
 * The AWS IoT adapter: the only importer of @aws-sdk/client-iot. One request
 * per call (the SDK's own retries are off: the sync job paces, retries and
 * records every attempt itself). Credentials come from the SDK's default
 * provider chain, or the named profile; never from the station.
 */
import {
  DescribeCACertificateCommand,
  DescribeCertificateCommand,
  GetRegistrationCodeCommand,
  IoTClient,
  RegisterCACertificateCommand,
  RegisterCertificateCommand,
  RegisterCertificateWithoutCACommand,
  UpdateCACertificateCommand,
  UpdateCertificateCommand,
} from "@aws-sdk/client-iot";
import type { IotFailure, IotGateway, IotGatewayFactory, IotResult } from "../../domain/ports.js";

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

export const sdkIotGateway: IotGatewayFactory = (t) => {
  const client = new IoTClient({
    region: t.region,
    ...(t.endpoint ? { endpoint: t.endpoint } : {}),
    ...(t.awsProfile ? { profile: t.awsProfile } : {}),
    maxAttempts: 1,
  });
  if (t.pace) {
    const pace = t.pace;
    // The deserialize step wraps the HTTP handler: this waits after signing, right before sending.
    client.middlewareStack.add(
      (next) => async (args) => {
        await pace();
        return next(args);
      },
      { step: "deserialize", name: "linesignPace", priority: "low" },
    );
  }
  const gw: IotGateway = {
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
  };
  return gw;
};
