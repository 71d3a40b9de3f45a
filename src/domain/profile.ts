/**
 * Certificate profiles: which CA signs, for how long, which device keys are
 * acceptable, how the device id is checked and turned into a subject, and
 * which SANs are added. Profiles live in station.json under `profiles`.
 */
import { z } from "zod";
import { KEY_TYPES, type KeyType } from "./keys.js";
import { compilePattern } from "./pattern.js";
import { sanTemplateProblem } from "./san-template.js";

/** Subject attribute short names the station understands. */
export const SUBJECT_ATTRIBUTES = [
  "CN",
  "O",
  "OU",
  "C",
  "L",
  "ST",
  "serialNumber",
  "emailAddress",
  "DC",
  "UID",
] as const;
export type SubjectAttribute = (typeof SUBJECT_ATTRIBUTES)[number];

export const DEFAULT_DEVICE_ID_RULE = "^[A-Za-z0-9._:-]{1,64}$";

const sanTemplate = z
  .object({
    type: z.enum(["uri", "dns"]),
    /** `{deviceId}` is replaced by the device id. */
    template: z
      .string()
      .min(1)
      .max(256)
      .includes("{deviceId}", { message: "must contain {deviceId}" }),
  })
  .strict();

export const ProfileSchema = z
  .object({
    /** Label of the issuing CA. */
    ca: z.string().min(1),
    /** Validity in days; cut at the CA's own notAfter (and the cut is recorded). */
    validityDays: z.number().int().min(1).max(36500).default(3650),
    /** Minutes notBefore is backdated, for device clock skew. */
    backdateMinutes: z.number().int().min(0).max(1440).default(5),
    /** Device key types accepted. Default: EC P-256, EC P-384, RSA 2048 and above (what AWS IoT accepts). */
    keys: z
      .object({
        ec: z.array(z.enum(["P-256", "P-384", "P-521"])).default(["P-256", "P-384"]),
        /** Smallest RSA modulus accepted; null refuses RSA keys. */
        rsaMinBits: z.number().int().min(2048).max(16384).nullable().default(2048),
        /** Largest RSA modulus accepted (each bit makes every later verification dearer). */
        rsaMaxBits: z.number().int().min(2048).max(16384).default(4096),
        /** "65537": only the usual exponent; "odd": any odd exponent of 3 or more. */
        rsaExponent: z.enum(["65537", "odd"]).default("65537"),
      })
      .strict()
      .refine((k) => k.rsaMinBits === null || k.rsaMinBits <= k.rsaMaxBits, {
        message: "rsaMinBits is larger than rsaMaxBits",
      })
      .default({
        ec: ["P-256", "P-384"],
        rsaMinBits: 2048,
        rsaMaxBits: 4096,
        rsaExponent: "65537",
      }),
    /** Regular expression the device id must match in full. */
    deviceIdRule: z
      .string()
      .default(DEFAULT_DEVICE_ID_RULE)
      .superRefine((r, ctx) => {
        const c = compilePattern(r);
        if (!c.ok) ctx.addIssue({ code: "custom", message: `cannot be used: ${c.why}` });
      }),
    subject: z
      .object({
        /** Fixed attributes the profile sets; a CSR claiming another value for one is refused. */
        fixed: z
          .partialRecord(z.enum(["O", "OU", "C", "L", "ST"]), z.string().min(1).max(64))
          .default({}),
        /** CSR attributes (besides CN, which is the device id) copied into the certificate. */
        copy: z.array(z.enum(SUBJECT_ATTRIBUTES)).default([]),
        /** CSR attributes whose presence refuses the request. */
        forbid: z.array(z.enum(SUBJECT_ATTRIBUTES)).default([]),
      })
      .strict()
      .default({ fixed: {}, copy: [], forbid: [] }),
    san: z.array(sanTemplate).max(8).default([]),
    /** Requested-extension OIDs tolerated in a CSR (and ignored: the profile decides extensions). */
    toleratedRequestedExtensions: z.array(z.string().regex(/^\d+(\.\d+)+$/)).default([]),
    /** Key types asked of devices on the serial line, in order of preference (default: every accepted type, EC first). */
    requestKeyTypes: z.array(z.enum(KEY_TYPES)).min(1).optional(),
    /** Whether a device id that has a live certificate may get another (the earlier is superseded). */
    allowReissue: z.boolean().default(false),
    /**
     * Revoke a certificate of this profile that left the station but was not
     * confirmed by its device within this many hours (checked when a line
     * starts, and by "linesign revoke --unconfirmed"). Absent: never automatically.
     */
    revokeUnconfirmedAfterHours: z.number().int().min(1).max(8760).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    // Every id the rule admits must make valid IA5String names from every SAN template.
    p.san.forEach((s, i) => {
      const problem = sanTemplateProblem(s.type, s.template, p.deviceIdRule);
      if (problem) ctx.addIssue({ code: "custom", path: ["san", i, "template"], message: problem });
    });
  });

export type Profile = z.infer<typeof ProfileSchema>;
export type ProfileInput = z.input<typeof ProfileSchema>;

/** Fills a profile's defaults. */
export function makeProfile(input: ProfileInput): Profile {
  return ProfileSchema.parse(input);
}

/** Expands a SAN template for a device id. */
export function expandTemplate(template: string, deviceId: string): string {
  return template.split("{deviceId}").join(deviceId);
}

/** Whether the profile accepts device keys of this type. */
export function profileAcceptsKey(profile: Profile, keyType: KeyType): boolean {
  switch (keyType) {
    case "ec-p256":
      return profile.keys.ec.includes("P-256");
    case "ec-p384":
      return profile.keys.ec.includes("P-384");
    case "rsa-2048":
      return profile.keys.rsaMinBits !== null && profile.keys.rsaMinBits <= 2048;
    case "rsa-3072":
      return (
        profile.keys.rsaMinBits !== null &&
        profile.keys.rsaMinBits <= 3072 &&
        profile.keys.rsaMaxBits >= 3072
      );
    default: {
      const never: never = keyType;
      throw new Error(`unknown key type ${String(never)}`);
    }
  }
}

/**
 * The key type to ask a device for: the first of the profile's preferences
 * that the device can make; null when there is none.
 */
export function chooseDeviceKeyType(profile: Profile, offered: readonly KeyType[]): KeyType | null {
  const preferred =
    profile.requestKeyTypes ?? KEY_TYPES.filter((k) => profileAcceptsKey(profile, k));
  return preferred.find((k) => offered.includes(k) && profileAcceptsKey(profile, k)) ?? null;
}
