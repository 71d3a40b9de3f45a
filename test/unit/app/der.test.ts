import { describe, expect, it } from "vitest";
import * as asn1js from "asn1js";
import {
  DerError,
  derOctetChars,
  derOid,
  derTime,
  derUtf8String,
  readDer,
} from "../../../src/app/pki/der.js";
import { makeProfile } from "../../../src/domain/profile.js";
import { sanTemplateProblem } from "../../../src/domain/san-template.js";

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s+/g, ""), "hex"));
const why = (h: string): string => {
  try {
    readDer(hex(h));
  } catch (e) {
    if (e instanceof DerError) return e.reason;
    throw e;
  }
  return "DER";
};

describe("the strict DER reader", () => {
  it("reads DER and tells each BER liberty apart", () => {
    expect(why("3006 020100 0101ff")).toBe("DER");
    expect(why("3080 020100 0000")).toMatch(/indefinite length/);
    expect(why("308106 020100 0101ff")).toMatch(/long form/);
    expect(why("30820006 020100 0101ff")).toMatch(/padded with leading zeros|long form/);
    expect(why("3004 02020001")).toMatch(/INTEGER encoded in more octets/);
    expect(why("3004 0202ff80")).toMatch(/INTEGER encoded in more octets/);
    expect(why("0101 01")).toMatch(/BOOLEAN/);
    expect(why("0302 0401")).toMatch(/unused bits are not zero/);
    expect(why("0302 0800")).toMatch(/claiming 8 unused bits/);
    expect(why("2304 03020000")).toMatch(/constructed BIT STRING/);
    expect(why("1003 020100")).toMatch(/primitive SEQUENCE/);
    expect(why("3f1000")).toMatch(/tag below 31 in the long form/);
    expect(why("0502 0000")).toMatch(/NULL with content/);
    expect(why("0603 2a8001")).toMatch(/OBJECT IDENTIFIER arc padded/);
    expect(why("1302 6140")).toMatch(/PrintableString/);
    expect(why("1601 e9")).toMatch(/IA5String/);
    expect(why("0c02 c328")).toMatch(/UTF8String that is not UTF-8/);
    expect(why("1e01 61")).toMatch(/BMPString/);
    expect(why("170b 323630313031303030305a")).toMatch(/UTCTime/);
    expect(why("3106 0201 02 0201 01")).toMatch(/SET OF .* not in DER order/);
    expect(why("3106 0201 01 0201 02")).toBe("DER");
    expect(why("020100 00")).toMatch(/bytes after the end/);
    expect(why("3005 020100")).toMatch(/where 3 remain/);
    expect(why("3080")).toMatch(/indefinite/);
  });

  it("bounds how deep it goes", () => {
    let b = hex("0500");
    for (let i = 0; i < 60; i++) b = new Uint8Array([0x30, b.length, ...b].slice(0, 2 + b.length));
    expect(() => readDer(b)).toThrow(/nested more than/);
  });
});

describe("SAN templates against the device-id rule", () => {
  it("accepts rules whose every id makes a valid name, and names the first bad character otherwise", () => {
    const rule = "^[A-Za-z0-9._:-]{1,64}$";
    expect(sanTemplateProblem("uri", "urn:example:device:{deviceId}", rule)).toBeNull();
    expect(sanTemplateProblem("dns", "{deviceId}.devices.example", "^[a-z0-9-]{1,63}$")).toBeNull();
    expect(sanTemplateProblem("dns", "{deviceId}.devices.example", rule)).toMatch(/admits '_'/);
    expect(sanTemplateProblem("uri", "urn:x:{deviceId}", "^[\\p{L}0-9]+$")).toMatch(
      /any character/,
    );
    expect(sanTemplateProblem("uri", "urn:x:{deviceId}", "^.{1,64}$")).toMatch(/any character/);
    expect(sanTemplateProblem("uri", "urn:x:{deviceId}", "^[a-zäöü]+$")).toMatch(/U\+00E4/);
    expect(sanTemplateProblem("uri", "urn:x:{deviceId}", "^[a-z ]+$")).toMatch(/U\+0020/);
    expect(sanTemplateProblem("uri", "urn:x:{deviceId}", "^(?!x)[a-z]+$")).toBeNull();
    expect(sanTemplateProblem("uri", "device {deviceId}", "^[a-z]+$")).toMatch(/itself holds " "/);
    expect(sanTemplateProblem("uri", "{deviceId}", "^[a-z]+$")).toMatch(/URI scheme/);
  });

  it("refuses such a profile when it is loaded, naming the template", () => {
    expect(() =>
      makeProfile({
        ca: "x",
        deviceIdRule: "^[\\p{L}\\p{N} ]{1,64}$",
        san: [{ type: "uri", template: "urn:example:{deviceId}" }],
      }),
    ).toThrow(/IA5String/);
    expect(
      makeProfile({ ca: "x", san: [{ type: "uri", template: "urn:e:{deviceId}" }] }).san,
    ).toHaveLength(1);
  });
});

describe("the DER writers of a certificate's per-device parts", () => {
  const ber = (b: asn1js.AsnType): string => Buffer.from(b.toBER()).toString("hex");
  const h = (b: Uint8Array): string => Buffer.from(b).toString("hex");

  it("write what asn1js writes, for OIDs, times and strings at their edges", () => {
    for (const oid of [
      "2.5.4.3",
      "0.9.2342.19200300.100.1.25",
      "1.2.840.113549.1.9.1",
      "2.999.3",
      "1.3.6.1.4.1.99999999999999999999.1",
      "2.5.29.17",
    ])
      expect(h(derOid(oid)), oid).toBe(ber(new asn1js.ObjectIdentifier({ value: oid })));
    for (const bad of ["", "2", "3.1", "1.40", "1.2.", "1.02", "a.b"])
      expect(() => derOid(bad), bad).toThrow(/not an OID/);
    for (const iso of ["2000-01-02T03:04:05Z", "2026-12-31T23:59:59Z", "2049-12-31T23:59:59Z"]) {
      const d = new Date(iso);
      expect(h(derTime(d)), iso).toBe(ber(new asn1js.UTCTime({ valueDate: d })));
    }
    for (const iso of ["2050-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]) {
      const d = new Date(iso);
      expect(h(derTime(d)), iso).toBe(ber(new asn1js.GeneralizedTime({ valueDate: d })));
    }
    for (const text of ["", "dev-1", "Gerät-7", "x".repeat(300), "\u{1F600}"])
      expect(h(derUtf8String(text)), text).toBe(ber(new asn1js.Utf8String({ value: text })));
    expect(() => derUtf8String("a\ud800b")).toThrow(/lone surrogate/);
    for (const text of ["DE", "Aé", "ops@example.com"]) {
      expect(h(derOctetChars(0x13, text))).toBe(ber(new asn1js.PrintableString({ value: text })));
      expect(h(derOctetChars(0x16, text))).toBe(ber(new asn1js.IA5String({ value: text })));
    }
  });
});
