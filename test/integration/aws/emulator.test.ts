/**
 * The AWS IoT emulator answers as AWS does, checked through the real SDK:
 * SigV4 with each account's secret, AWS's common credential errors (403),
 * the IoT service model's error types and status codes, and the refusals
 * AWS makes.
 */
import { createHash } from "node:crypto";
import {
  AddThingToThingGroupCommand,
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreatePolicyCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  CreateThingTypeCommand,
  DescribeThingCommand,
  DetachPolicyCommand,
  DetachThingPrincipalCommand,
  GetPolicyCommand,
  ListAttachedPoliciesCommand,
  ListThingGroupsForThingCommand,
  ListThingPrincipalsCommand,
  DeleteCACertificateCommand,
  DescribeCACertificateCommand,
  GetRegistrationCodeCommand,
  IoTClient,
  ListCACertificatesCommand,
  ListCertificatesByCACommand,
  RegisterCACertificateCommand,
  RegisterCertificateCommand,
  UpdateCACertificateCommand,
  UpdateCertificateCommand,
  type CertificateStatus,
} from "@aws-sdk/client-iot";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IotEmulator, NodeSha256 } from "../../../fixtures/aws-iot-emulator.js";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

x509.cryptoProvider.set(globalThis.crypto);
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const A = "111111111111";
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

async function makeCa(subject: string, o: { days?: number; from?: Date; alg?: object } = {}) {
  const alg = o.alg ?? ALG;
  const keys = (await webcrypto.subtle.generateKey(alg as webcrypto.EcKeyGenParams, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const from = o.from ?? new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: subject,
    keys,
    notBefore: from,
    notAfter: new Date(from.getTime() + (o.days ?? 365) * 86_400_000),
    signingAlgorithm: alg as webcrypto.Algorithm,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true)],
    serialNumber: createHash("sha256")
      .update(subject + Math.random())
      .digest("hex")
      .slice(0, 16),
  });
  return { keys, cert, pem: cert.toString("pem") };
}

async function issueUnder(ca: Awaited<ReturnType<typeof makeCa>>, cn: string, days = 30) {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${cn}`,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + days * 86_400_000),
    signingAlgorithm: ALG,
    serialNumber: createHash("sha256")
      .update(cn + Math.random())
      .digest("hex")
      .slice(0, 16),
  });
  return cert.toString("pem");
}

describe("AWS IoT emulator", () => {
  let emu: IotEmulator;
  const client = (key = "AKIAA", secret = "secret-a", region = "eu-west-1") =>
    new IoTClient({
      region,
      endpoint: emu.url,
      credentials: { accessKeyId: key, secretAccessKey: secret },
      maxAttempts: 1,
    });
  const failure = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      const err = e as { name: string; message: string; $metadata: { httpStatusCode: number } };
      return { name: err.name, status: err.$metadata.httpStatusCode, message: err.message };
    }
    throw new Error("expected AWS to refuse");
  };

  beforeAll(async () => {
    emu = new IotEmulator({
      accounts: [
        { accessKeyId: "AKIAA", secretAccessKey: "secret-a", accountId: A },
        { accessKeyId: "AKIAOLD", secretAccessKey: "old", accountId: A, expired: true },
        {
          accessKeyId: "AKIANARROW",
          secretAccessKey: "narrow",
          accountId: A,
          denied: ["RegisterCertificate"],
        },
      ],
    });
    await emu.start();
  });
  afterAll(() => emu.close());

  it("checks SigV4 with the account's secret and answers credential failures with 403 and AWS's common types", async () => {
    expect((await client().send(new GetRegistrationCodeCommand({}))).registrationCode).toMatch(
      /^[0-9a-f]{64}$/,
    );
    expect(
      await failure(client("AKIAA", "wrong").send(new GetRegistrationCodeCommand({}))),
    ).toMatchObject({
      name: "InvalidSignatureException",
      status: 403,
    });
    expect(
      await failure(client("AKIANOBODY", "x").send(new GetRegistrationCodeCommand({}))),
    ).toMatchObject({
      name: "UnrecognizedClientException",
      status: 403,
    });
    expect(
      await failure(client("AKIAOLD", "old").send(new GetRegistrationCodeCommand({}))),
    ).toMatchObject({
      name: "ExpiredTokenException",
      status: 403,
    });
    const narrow = client("AKIANARROW", "narrow");
    expect((await narrow.send(new GetRegistrationCodeCommand({}))).registrationCode).toBeDefined();
    const ca = await makeCa("CN=Narrow CA");
    expect(
      await failure(
        narrow.send(
          new RegisterCertificateCommand({
            certificatePem: await issueUnder(ca, "d"),
            status: "ACTIVE",
          }),
        ),
      ),
    ).toMatchObject({ name: "AccessDeniedException", status: 403 });
    const raw = await fetch(`${emu.url}/registrationcode`);
    expect(raw.status).toBe(403);
    expect(raw.headers.get("x-amzn-errortype")).toBe("MissingAuthenticationTokenException");
    // STS answers on the same server, signed the same way.
    const sts = (key: string, secret: string) =>
      new STSClient({
        region: "eu-west-1",
        endpoint: emu.url,
        credentials: { accessKeyId: key, secretAccessKey: secret },
        maxAttempts: 1,
      });
    expect((await sts("AKIAA", "secret-a").send(new GetCallerIdentityCommand({}))).Account).toBe(A);
    expect(
      await failure(sts("AKIAA", "nope").send(new GetCallerIdentityCommand({}))),
    ).toMatchObject({
      name: "SignatureDoesNotMatch",
      status: 403,
    });
  });

  it("refuses what AWS refuses, with the model's error types and status codes", async () => {
    const c = client("AKIAA", "secret-a", "us-east-1");
    // An expired CA; a key AWS does not accept (P-521).
    const expired = await makeCa("CN=Old CA", {
      from: new Date(Date.now() - 3 * 86_400_000),
      days: 1,
    });
    expect(
      await failure(
        c.send(
          new RegisterCACertificateCommand({
            caCertificate: expired.pem,
            certificateMode: "SNI_ONLY",
          }),
        ),
      ),
    ).toMatchObject({ name: "CertificateValidationException", status: 400 });
    const p521 = await makeCa("CN=P521 CA", {
      alg: { name: "ECDSA", namedCurve: "P-521", hash: "SHA-256" },
    });
    expect(
      await failure(
        c.send(
          new RegisterCACertificateCommand({
            caCertificate: p521.pem,
            certificateMode: "SNI_ONLY",
          }),
        ),
      ),
    ).toMatchObject({
      name: "CertificateValidationException",
      message: expect.stringContaining("key"),
    });
    // An expired verification certificate.
    const ca = await makeCa("CN=Good CA");
    const code = (await c.send(new GetRegistrationCodeCommand({}))).registrationCode!;
    const vkeys = (await webcrypto.subtle.generateKey(ALG, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const verification = (notAfter: Date) =>
      x509.X509CertificateGenerator.create({
        subject: `CN=${code}`,
        issuer: ca.cert.subject,
        publicKey: vkeys.publicKey,
        signingKey: ca.keys.privateKey,
        notBefore: new Date(notAfter.getTime() - 86_400_000),
        notAfter,
        signingAlgorithm: ALG,
        serialNumber: "0a" + Math.floor(Math.random() * 1e9).toString(16),
      });
    const old = await verification(new Date(Date.now() - 60_000));
    expect(
      await failure(
        c.send(
          new RegisterCACertificateCommand({
            caCertificate: ca.pem,
            verificationCertificate: old.toString("pem"),
          }),
        ),
      ),
    ).toMatchObject({
      name: "CertificateValidationException",
      message: expect.stringContaining("validity"),
    });
    const fresh = await verification(new Date(Date.now() + 86_400_000));
    const reg = await c.send(
      new RegisterCACertificateCommand({
        caCertificate: ca.pem,
        verificationCertificate: fresh.toString("pem"),
        setAsActive: true,
      }),
    );
    expect(
      (await c.send(new DescribeCACertificateCommand({ certificateId: reg.certificateId })))
        .certificateDescription!.status,
    ).toBe("ACTIVE");
    // A status only AWS sets.
    for (const status of ["PENDING_ACTIVATION", "PENDING_TRANSFER"])
      expect(
        await failure(
          c.send(
            new RegisterCertificateCommand({
              certificatePem: await issueUnder(ca, `p-${status}`),
              caCertificatePem: ca.pem,
              status: status as CertificateStatus,
            }),
          ),
        ),
      ).toMatchObject({ name: "InvalidRequestException", status: 400 });
    // setAsActive (deprecated) is honoured when no status is given.
    const dev = await c.send(
      new RegisterCertificateCommand({
        certificatePem: await issueUnder(ca, "legacy"),
        caCertificatePem: ca.pem,
        setAsActive: true,
      }),
    );
    expect(emu.state(A, "us-east-1").certs.find((x) => x.id === dev.certificateId)!.status).toBe(
      "ACTIVE",
    );
    expect(
      await failure(
        c.send(
          new UpdateCertificateCommand({
            certificateId: dev.certificateId,
            newStatus: "PENDING_TRANSFER",
          }),
        ),
      ),
    ).toMatchObject({ name: "InvalidRequestException" });
    // Paging limits and markers.
    expect(await failure(c.send(new ListCACertificatesCommand({ pageSize: 0 })))).toMatchObject({
      name: "InvalidRequestException",
      status: 400,
    });
    expect(await failure(c.send(new ListCACertificatesCommand({ pageSize: 251 })))).toMatchObject({
      name: "InvalidRequestException",
    });
    expect(
      await failure(c.send(new ListCACertificatesCommand({ marker: "bm90LWEtbWFya2Vy" }))),
    ).toMatchObject({
      name: "InvalidRequestException",
    });
    // Malformed JSON: 400, not 500.
    const { SignatureV4 } = await import("@smithy/signature-v4");
    const url = new URL(emu.url);
    const signed = await new SignatureV4({
      credentials: { accessKeyId: "AKIAA", secretAccessKey: "secret-a" },
      region: "us-east-1",
      service: "iot",
      sha256: NodeSha256,
    }).sign({
      method: "POST",
      protocol: "http:",
      hostname: url.hostname,
      port: Number(url.port),
      path: "/certificate/register",
      query: {},
      headers: { host: url.host, "content-type": "application/json" },
      body: "{not json",
    });
    const bad = await fetch(`${emu.url}/certificate/register`, {
      method: "POST",
      headers: signed.headers,
      body: "{not json",
    });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("x-amzn-errortype")).toBe("SerializationException");
    // DeleteCACertificate: refused while ACTIVE, then done.
    expect(
      await failure(c.send(new DeleteCACertificateCommand({ certificateId: reg.certificateId }))),
    ).toMatchObject({
      name: "CertificateStateException",
      status: 406,
    });
    await c.send(
      new UpdateCACertificateCommand({ certificateId: reg.certificateId, newStatus: "INACTIVE" }),
    );
    await c.send(new DeleteCACertificateCommand({ certificateId: reg.certificateId }));
    expect(
      await failure(c.send(new DescribeCACertificateCommand({ certificateId: reg.certificateId }))),
    ).toMatchObject({ name: "ResourceNotFoundException", status: 404 });
  });

  it("allows ten CAs with one subject per account, lists them by creation date either way", async () => {
    const c = client("AKIAA", "secret-a", "ap-northeast-1");
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const ca = await makeCa("CN=Rotating CA");
      ids.push(
        (
          await c.send(
            new RegisterCACertificateCommand({
              caCertificate: ca.pem,
              certificateMode: "SNI_ONLY",
            }),
          )
        ).certificateId!,
      );
    }
    const eleventh = await makeCa("CN=Rotating CA");
    expect(
      await failure(
        c.send(
          new RegisterCACertificateCommand({
            caCertificate: eleventh.pem,
            certificateMode: "SNI_ONLY",
          }),
        ),
      ),
    ).toMatchObject({ name: "LimitExceededException", status: 410 });
    const listed: string[] = [];
    let marker: string | undefined;
    do {
      const page = await c.send(
        new ListCACertificatesCommand({
          pageSize: 3,
          ascendingOrder: true,
          ...(marker ? { marker } : {}),
        }),
      );
      listed.push(...page.certificates!.map((x) => x.certificateId!));
      marker = page.nextMarker;
    } while (marker);
    expect(listed).toEqual(ids);
    const desc = await c.send(new ListCACertificatesCommand({ pageSize: 250 }));
    expect(desc.certificates!.map((x) => x.certificateId)).toEqual([...ids].reverse());
    expect(
      await failure(
        c.send(new ListCertificatesByCACommand({ caCertificateId: ids[0]!, pageSize: 500 })),
      ),
    ).toMatchObject({ name: "InvalidRequestException" });
  });

  it("keeps Things, thing types, groups and policies as AWS does, refusing what it refuses", async () => {
    const c = client("AKIAA", "secret-a", "sa-east-1");
    const ca = await makeCa("CN=Registry CA");
    await c.send(
      new RegisterCACertificateCommand({
        caCertificate: ca.pem,
        certificateMode: "SNI_ONLY",
        setAsActive: true,
      }),
    );
    const cert = await c.send(
      new RegisterCertificateCommand({
        certificatePem: await issueUnder(ca, "thing-1"),
        caCertificatePem: ca.pem,
        status: "ACTIVE",
      }),
    );
    const arn = cert.certificateArn!;
    // CreateThing: the same name and configuration succeeds again; other attributes are refused.
    const first = await c.send(
      new CreateThingCommand({
        thingName: "thing-1",
        attributePayload: { attributes: { model: "M1", firmware: "1.0" } },
      }),
    );
    const again = await c.send(
      new CreateThingCommand({
        thingName: "thing-1",
        attributePayload: { attributes: { firmware: "1.0", model: "M1" } },
      }),
    );
    expect(again.thingArn).toBe(first.thingArn);
    expect(
      await failure(
        c.send(
          new CreateThingCommand({
            thingName: "thing-1",
            attributePayload: { attributes: { model: "M2", firmware: "1.0" } },
          }),
        ),
      ),
    ).toMatchObject({ name: "ResourceAlreadyExistsException", status: 409 });
    expect(await failure(c.send(new CreateThingCommand({ thingName: "bad name" })))).toMatchObject({
      name: "InvalidRequestException",
      status: 400,
    });
    expect(
      await failure(
        c.send(new CreateThingCommand({ thingName: "typed", thingTypeName: "no-such-type" })),
      ),
    ).toMatchObject({ name: "ResourceNotFoundException", status: 404 });
    expect(
      await failure(
        c.send(
          new CreateThingCommand({
            thingName: "crowded",
            attributePayload: { attributes: { a: "1", b: "2", c: "3", d: "4" } },
          }),
        ),
      ),
    ).toMatchObject({ name: "InvalidRequestException" });
    await c.send(new CreateThingTypeCommand({ thingTypeName: "sensor" }));
    await c.send(
      new CreateThingCommand({
        thingName: "crowded",
        thingTypeName: "sensor",
        attributePayload: { attributes: { a: "1", b: "2", c: "3", d: "4" } },
      }),
    );
    expect((await c.send(new DescribeThingCommand({ thingName: "crowded" }))).thingTypeName).toBe(
      "sensor",
    );
    expect(await failure(c.send(new DescribeThingCommand({ thingName: "nobody" })))).toMatchObject({
      name: "ResourceNotFoundException",
      status: 404,
    });
    // Principals: a registered certificate's ARN, to a Thing that exists.
    await c.send(new AttachThingPrincipalCommand({ thingName: "thing-1", principal: arn }));
    expect(
      (await c.send(new ListThingPrincipalsCommand({ thingName: "thing-1" }))).principals,
    ).toEqual([arn]);
    expect(
      await failure(
        c.send(new AttachThingPrincipalCommand({ thingName: "nobody", principal: arn })),
      ),
    ).toMatchObject({ name: "ResourceNotFoundException" });
    expect(
      await failure(
        c.send(
          new AttachThingPrincipalCommand({
            thingName: "thing-1",
            principal: arn.replace(/cert\/[0-9a-f]+$/, `cert/${"0".repeat(64)}`),
          }),
        ),
      ),
    ).toMatchObject({ name: "ResourceNotFoundException" });
    await c.send(new DetachThingPrincipalCommand({ thingName: "thing-1", principal: arn }));
    expect(
      (await c.send(new ListThingPrincipalsCommand({ thingName: "thing-1" }))).principals,
    ).toEqual([]);
    // Groups: missing is 404; a thing joins at most ten.
    expect(
      await failure(
        c.send(
          new AddThingToThingGroupCommand({ thingGroupName: "nowhere", thingName: "thing-1" }),
        ),
      ),
    ).toMatchObject({ name: "ResourceNotFoundException", status: 404 });
    for (let i = 0; i < 11; i++)
      await c.send(new CreateThingGroupCommand({ thingGroupName: `g${i}` }));
    for (let i = 0; i < 10; i++)
      await c.send(
        new AddThingToThingGroupCommand({ thingGroupName: `g${i}`, thingName: "thing-1" }),
      );
    expect(
      await failure(
        c.send(new AddThingToThingGroupCommand({ thingGroupName: "g10", thingName: "thing-1" })),
      ),
    ).toMatchObject({ name: "InvalidRequestException" });
    expect(
      (await c.send(new ListThingGroupsForThingCommand({ thingName: "thing-1" }))).thingGroups,
    ).toHaveLength(10);
    // Policies: malformed documents, duplicates, missing ones, ten per certificate.
    const doc = JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "iot:Connect", Resource: "*" }],
    });
    expect(
      await failure(c.send(new CreatePolicyCommand({ policyName: "p", policyDocument: "{nope" }))),
    ).toMatchObject({ name: "MalformedPolicyException", status: 400 });
    expect(
      await failure(
        c.send(new CreatePolicyCommand({ policyName: "bad/name", policyDocument: doc })),
      ),
    ).toMatchObject({ name: "InvalidRequestException" });
    for (let i = 0; i < 11; i++)
      await c.send(new CreatePolicyCommand({ policyName: `p${i}`, policyDocument: doc }));
    expect(
      await failure(c.send(new CreatePolicyCommand({ policyName: "p0", policyDocument: doc }))),
    ).toMatchObject({ name: "ResourceAlreadyExistsException", status: 409 });
    expect((await c.send(new GetPolicyCommand({ policyName: "p0" }))).policyDocument).toBe(doc);
    expect(
      await failure(c.send(new AttachPolicyCommand({ policyName: "missing", target: arn }))),
    ).toMatchObject({ name: "ResourceNotFoundException", status: 404 });
    for (let i = 0; i < 10; i++)
      await c.send(new AttachPolicyCommand({ policyName: `p${i}`, target: arn }));
    await c.send(new AttachPolicyCommand({ policyName: "p0", target: arn })); // again: no change
    expect(
      await failure(c.send(new AttachPolicyCommand({ policyName: "p10", target: arn }))),
    ).toMatchObject({ name: "LimitExceededException", status: 410 });
    await c.send(new DetachPolicyCommand({ policyName: "p0", target: arn }));
    const listed = await c.send(new ListAttachedPoliciesCommand({ target: arn }));
    expect(listed.policies!.map((p) => p.policyName).sort()).toEqual(
      ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"].sort(),
    );
  });
});
