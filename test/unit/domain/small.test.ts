import { describe, expect, it } from "vitest";
import { formatPkcs11Uri, parsePkcs11Uri } from "../../../src/domain/pkcs11-uri.js";
import { parseRegistrationCode } from "../../../src/domain/registration-code.js";
import { parseStationConfig } from "../../../src/domain/config.js";
import {
  isLinesignError,
  LinesignError,
  outcomeOf,
  ERROR_CODES,
} from "../../../src/domain/errors.js";
import { parseKeyType, signatureHash, KEY_TYPES } from "../../../src/domain/keys.js";

const thrown = (fn: () => unknown): LinesignError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof LinesignError) return e;
    throw e;
  }
  throw new Error("did not throw");
};

describe("RFC 7512 key URIs", () => {
  it("formats and parses a key URI round trip, escaping what must be escaped", () => {
    const uri = formatPkcs11Uri({ token: "line 3;a", object: "dev-ica", id: "0a1b" });
    expect(uri).toBe("pkcs11:token=line%203%3Ba;object=dev-ica;id=%0A%1B;type=private");
    expect(parsePkcs11Uri(uri)).toEqual({
      token: "line 3;a",
      object: "dev-ica",
      id: "0a1b",
      type: "private",
    });
  });
  it("refuses URIs without a token or a key name", () => {
    expect(thrown(() => parsePkcs11Uri("pkcs11:object=x")).message).toContain("names no token");
    expect(thrown(() => parsePkcs11Uri("pkcs11:token=t")).message).toContain(
      "neither object nor id",
    );
    expect(thrown(() => parsePkcs11Uri("file:///x")).code).toBe("CONFIG_INVALID");
  });
});

describe("AWS registration codes", () => {
  const code = "0123456789abcdef".repeat(4);
  it("accepts 64 hex characters and normalises case", () => {
    expect(parseRegistrationCode(code.toUpperCase())).toBe(code);
    expect(parseRegistrationCode(` ${code}\n`)).toBe(code);
  });
  it.each([
    "",
    "XXXXXSAMPLEREGISTRATIONCODEXXXXX",
    code.slice(1),
    code + "0",
    code.replace("a", "g"),
    "CN=" + code,
  ])("refuses %j saying what a code looks like and where it comes from", (bad) => {
    const e = thrown(() => parseRegistrationCode(bad));
    expect(e.code).toBe("REGISTRATION_CODE_INVALID");
    expect(e.message).toContain("64 hexadecimal characters");
    expect(e.message).toContain("get-registration-code");
  });
});

describe("station config", () => {
  const good = {
    version: 1,
    station: { id: "line-3" },
    pkcs11: { module: "/x.so", tokenLabel: "t" },
  };
  it("fills defaults and freezes the result", () => {
    const c = parseStationConfig(good, "station.json");
    expect(c.pkcs11.maxPinAttempts).toBe(5);
    expect(c.development).toBe(false);
    expect(Object.isFrozen(c) && Object.isFrozen(c.pkcs11)).toBe(true);
  });
  it("names the first bad field", () => {
    const e = thrown(() =>
      parseStationConfig({ ...good, pkcs11: { module: "", tokenLabel: "t" } }, "station.json"),
    );
    expect(e.code).toBe("CONFIG_INVALID");
    expect(e.message).toContain('"pkcs11.module"');
    expect(thrown(() => parseStationConfig({ ...good, extra: 1 }, "s.json")).message).toContain(
      "s.json",
    );
  });
});

describe("errors and key types", () => {
  it("classifies every code as refused or failed", () => {
    for (const code of ERROR_CODES) expect(["refused", "failed"]).toContain(outcomeOf(code));
    expect(outcomeOf("HSM_PIN_INCORRECT")).toBe("refused");
    expect(outcomeOf("HSM_ERROR")).toBe("failed");
    expect(isLinesignError(new LinesignError("USAGE", "x"), "USAGE")).toBe(true);
  });
  it("parses key types and names the accepted ones when refusing", () => {
    for (const t of KEY_TYPES) expect(parseKeyType(t)).toBe(t);
    expect(thrown(() => parseKeyType("rsa-1024")).message).toContain(
      "ec-p256, ec-p384, rsa-2048, rsa-3072",
    );
    expect(signatureHash("ec-p384")).toBe("SHA-384");
    expect(signatureHash("rsa-3072")).toBe("SHA-256");
  });
});
