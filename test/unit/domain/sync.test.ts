import { describe, expect, it } from "vitest";
import { arnParts, backoffMs, classifyFailure } from "../../../src/domain/aws-failure.js";
import { parseTargetConfig, thingOf } from "../../../src/domain/target.js";
import { Pacer } from "../../../src/app/sync/pacer.js";

const f = (name: string, httpStatus: number | null = 400) => ({ name, message: "m", httpStatus });

describe("AWS failures", () => {
  it("judges by error type, not by status alone", () => {
    expect(classifyFailure(f("ThrottlingException", 400))).toBe("retry");
    expect(classifyFailure(f("ThrottlingException", 429))).toBe("retry");
    expect(classifyFailure(f("ServiceUnavailableException", 503))).toBe("retry");
    expect(classifyFailure(f("SomethingNew", 502))).toBe("retry");
    expect(classifyFailure(f("NetworkError", null))).toBe("retry");
    expect(classifyFailure(f("ResourceAlreadyExistsException", 409))).toBe("exists");
    expect(classifyFailure(f("LimitExceededException", 410))).toBe("permanent");
    expect(classifyFailure(f("CertificateValidationException"))).toBe("permanent");
    expect(classifyFailure(f("CertificateStateException", 406))).toBe("state");
    expect(classifyFailure(f("UnauthorizedException", 401))).toBe("credentials");
    expect(classifyFailure(f("CredentialsProviderError", null))).toBe("credentials");
    // A wrong secret and an IAM refusal stop the target too, as AWS's common errors (403).
    for (const name of [
      "InvalidSignatureException",
      "AccessDeniedException",
      "ExpiredTokenException",
      "UnrecognizedClientException",
      "MissingAuthenticationTokenException",
      "SignatureDoesNotMatch",
      "InvalidClientTokenId",
    ])
      expect(classifyFailure(f(name, 403)), name).toBe("credentials");
  });

  it("backs off exponentially with full jitter, capped", () => {
    expect(backoffMs(1, 0.999)).toBe(99);
    expect(backoffMs(3, 0.5)).toBe(200);
    expect(backoffMs(20, 0.999)).toBe(4995);
    expect(backoffMs(5, 0)).toBe(0);
  });

  it("reads account and region from an ARN", () => {
    expect(arnParts("arn:aws:iot:eu-west-1:123456789012:cacert/abc")).toEqual({
      region: "eu-west-1",
      account: "123456789012",
    });
    expect(arnParts("nonsense")).toEqual({ region: null, account: null });
  });
});

describe("target settings", () => {
  const base = { region: "eu-west-1", caMode: "SNI_ONLY", deviceRegistration: "with-ca" };
  it("fills defaults: ACTIVE devices, CA active, 10 requests per second", () => {
    expect(parseTargetConfig(base, "t")).toMatchObject({
      deviceStatus: "ACTIVE",
      caActive: true,
      maxRps: 10,
    });
  });
  it("names what is wrong", () => {
    expect(() => parseTargetConfig({ ...base, region: "mars" }, "t")).toThrow(
      /region .*is not an AWS region/,
    );
    expect(() => parseTargetConfig({ ...base, jitpTemplate: "{}" }, "t")).toThrow(/go together/);
    expect(() =>
      parseTargetConfig({ ...base, deviceRegistration: "jitr", autoRegistration: false }, "t"),
    ).toThrow(/auto-registration/);
    expect(() =>
      parseTargetConfig({ ...base, deviceRegistration: "jitr", caActive: false }, "t"),
    ).toThrow(/ACTIVE/);
    expect(() => parseTargetConfig(base, "bad name")).toThrow(/not allowed/);
    expect(() => parseTargetConfig({ ...base, secretAccessKey: "x" }, "t")).toThrow(
      /TARGET|Unrecognized|unrecognized/,
    );
  });
});

describe("target identity options", () => {
  const base = { region: "eu-west-1", caMode: "SNI_ONLY", deviceRegistration: "with-ca" };
  const device = { deviceId: "dev-7", model: "SENS-2", firmware: "4.1.0" };
  it("takes a Thing template, a thing type, groups and a policy made from its document", () => {
    const doc = JSON.stringify({ Version: "2012-10-17", Statement: [] });
    expect(
      parseTargetConfig(
        {
          ...base,
          thingName: "{model}_{deviceId}",
          thingType: "sensor",
          thingGroups: ["line-1", "fleet"],
          policy: "dev-policy",
          policyDocument: doc,
        },
        "t",
      ),
    ).toMatchObject({ thingName: "{model}_{deviceId}", thingGroups: ["line-1", "fleet"] });
    expect(thingOf("{model}_{deviceId}", device)).toEqual({
      name: "SENS-2_dev-7",
      attributes: { model: "SENS-2", firmware: "4.1.0" },
    });
  });
  it("names what is wrong with them, as AWS's rules say", () => {
    const bad = (o: Record<string, unknown>) => () => parseTargetConfig({ ...base, ...o }, "t");
    expect(bad({ thingName: "{serial}" })).toThrow(/thingName names \{serial\}/);
    expect(bad({ thingName: "fixed" })).toThrow(/names no field/);
    expect(bad({ thingName: "a b {deviceId}" })).toThrow(/characters AWS does not allow/);
    expect(bad({ thingType: "sensor" })).toThrow(/needs --thing-name/);
    expect(bad({ thingName: "{deviceId}", thingGroups: ["a", "a"] })).toThrow(/twice/);
    expect(
      bad({ thingName: "{deviceId}", thingGroups: Array.from({ length: 11 }, (_, i) => `g${i}`) }),
    ).toThrow(/thingGroups/);
    expect(bad({ policy: "bad/name" })).toThrow(/policy name/);
    expect(bad({ policyDocument: "{}" })).toThrow(/needs --policy|not a policy/);
    expect(bad({ policy: "p", policyDocument: "{nope" })).toThrow(/not JSON/);
    expect(
      bad({ policy: "p", policyDocument: JSON.stringify({ Statement: "x".repeat(3000) }) }),
    ).toThrow(/2048/);
    expect(bad({ deviceRegistration: "jitr", thingName: "{deviceId}" })).toThrow(/jitr/);
  });
  it("says why a device cannot have a Thing", () => {
    expect(thingOf("{model}-{deviceId}", { ...device, model: null })).toEqual({
      error: expect.stringContaining("names {model}, which this device did not report"),
    });
    expect(thingOf("{deviceId}", { ...device, deviceId: "dev.7" })).toEqual({
      error: expect.stringContaining('"dev.7"'),
    });
    expect(thingOf("{deviceId}", { ...device, firmware: "4.1 beta" })).toEqual({
      error: expect.stringContaining("firmware"),
    });
  });
});

describe("pacer", () => {
  it("never lets more than maxRps requests start in any second, however they are asked for", async () => {
    const p = new Pacer(40);
    const starts: number[] = [];
    await Promise.all(
      Array.from({ length: 60 }, async () => {
        const answered = await p.take();
        starts.push(performance.now());
        answered();
      }),
    );
    starts.sort((a, b) => a - b);
    let most = 0;
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (starts[i]! - starts[j]! >= 1000) j++;
      most = Math.max(most, i - j + 1);
    }
    expect(most).toBeLessThanOrEqual(40);
    expect(p.count).toBe(60);
  });
});
