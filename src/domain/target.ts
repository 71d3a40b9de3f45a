/**
 * Sync targets: an AWS IoT account (through an AWS profile or the default
 * credential chain) and region, and how the station registers its CAs and
 * device certificates there. Credentials never live here.
 */
import { z } from "zod";
import { LinesignError } from "./errors.js";

export const CA_MODES = ["DEFAULT", "SNI_ONLY"] as const;

/** AWS IoT's ThingName, ThingTypeName and ThingGroupName (the service model's pattern, 1..128). */
export const THING_NAME = /^[a-zA-Z0-9:_-]{1,128}$/;
/** AWS IoT's PolicyName (the service model's pattern, 1..128). */
export const POLICY_NAME = /^[\w+=,.@-]{1,128}$/;
/** AWS IoT's AttributeValue (the service model's pattern, at most 800). */
export const ATTRIBUTE_VALUE = /^[a-zA-Z0-9_.,@/:#=[\]-]{0,800}$/;
/** What a Thing name template may name: the device's id and what it reported when it identified. */
export const THING_NAME_FIELDS = ["deviceId", "model", "firmware"] as const;
export type ThingNameFields = Record<(typeof THING_NAME_FIELDS)[number], string | null>;

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Why a Thing name template is not one, or null. */
function templateProblem(t: string): string | null {
  let names = 0;
  for (const m of t.matchAll(PLACEHOLDER)) {
    if (!(THING_NAME_FIELDS as readonly string[]).includes(m[1]!))
      return `names {${m[1]!.slice(0, 40)}}: a template may use {deviceId}, {model} and {firmware}`;
    names++;
  }
  const literal = t.replace(PLACEHOLDER, "");
  if (/[{}]/.test(literal)) return "has an unmatched brace";
  if (!/^[a-zA-Z0-9:_-]*$/.test(literal))
    return "has characters AWS does not allow in a Thing name (letters, digits, ':', '_' and '-')";
  if (names === 0) return "names no field: use {deviceId}, or every device gets the same Thing";
  return null;
}

/**
 * The Thing name for a device, and the attributes its Thing carries (the model and firmware
 * the device reported, where it did). An error says why the device cannot have one.
 */
export function thingOf(
  template: string,
  f: ThingNameFields,
): { name: string; attributes: Record<string, string> } | { error: string } {
  let missing: string | null = null;
  const name = template.replace(PLACEHOLDER, (_, k: keyof ThingNameFields) => {
    const v = f[k];
    if (!v) missing ??= k;
    return v ?? "";
  });
  if (missing)
    return {
      error: `the Thing name template "${template}" names {${missing}}, which this device did not report (it was not identified on the line, or sent none)`,
    };
  if (!THING_NAME.test(name))
    return {
      error: `the Thing name "${name.slice(0, 140)}" made by the template "${template}" is not one AWS allows (letters, digits, ':', '_' and '-', at most 128): change the target's --thing-name`,
    };
  const attributes: Record<string, string> = {};
  for (const k of ["model", "firmware"] as const) {
    const v = f[k];
    if (!v) continue;
    if (!ATTRIBUTE_VALUE.test(v))
      return {
        error: `the device's ${k} "${v.slice(0, 80)}" cannot be a Thing attribute (AWS allows letters, digits and _.,@/:#=[]- only)`,
      };
    attributes[k] = v;
  }
  return { name, attributes };
}

/** A policy document as AWS takes it: JSON, 1 to 2048 characters without whitespace. */
function policyDocumentProblem(d: string): string | null {
  const bare = d.replace(/\s+/g, "");
  if (bare.length < 1 || bare.length > 2048)
    return "is not 1 to 2048 characters long without whitespace, as AWS requires";
  try {
    const v = JSON.parse(d) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v) || !("Statement" in v))
      return "is not a policy (a JSON object with a Statement)";
  } catch {
    return "is not JSON";
  }
  return null;
}
export const DEVICE_REGISTRATIONS = ["with-ca", "without-ca", "jitr"] as const;

export const TargetConfigSchema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "is not an AWS region such as eu-west-1"),
    /** A different endpoint (an emulator, a VPC endpoint); default: AWS's for the region. */
    endpoint: z.string().url().optional(),
    /** AWS profile in the shared config; default: the SDK's default credential chain. */
    awsProfile: z.string().min(1).max(128).optional(),
    caMode: z.enum(CA_MODES),
    deviceRegistration: z.enum(DEVICE_REGISTRATIONS),
    deviceStatus: z.enum(["ACTIVE", "INACTIVE"]).default("ACTIVE"),
    /** Whether CAs are registered (and kept) ACTIVE there; a CA deactivated at the station becomes INACTIVE there too. */
    caActive: z.boolean().default(true),
    /** Auto-registration (just-in-time registration); on by default for jitr. */
    autoRegistration: z.boolean().optional(),
    /** Just-in-time provisioning template body and its role. */
    jitpTemplate: z.string().min(2).max(10_240).optional(),
    jitpRoleArn: z
      .string()
      .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, "is not an IAM role ARN")
      .optional(),
    /** Requests per second never exceeded (AWS's default quota is 10). */
    maxRps: z.number().min(0.1).max(10_000).default(10),
    /**
     * The device's Thing: a name template over {deviceId}, {model} and {firmware}; the Thing
     * carries the model and firmware as attributes, and the certificate is attached to it.
     */
    thingName: z
      .string()
      .min(1)
      .max(128)
      .superRefine((t, ctx) => {
        const p = templateProblem(t);
        if (p) ctx.addIssue({ code: "custom", message: p });
      })
      .optional(),
    /** The Things' thing type (it must exist at the target). */
    thingType: z.string().regex(THING_NAME, "is not a thing type name AWS allows").optional(),
    /** Thing groups each Thing is added to (they must exist at the target); at most 10, as AWS allows. */
    thingGroups: z
      .array(z.string().regex(THING_NAME, "is not a thing group name AWS allows"))
      .min(1)
      .max(10)
      .refine((g) => new Set(g).size === g.length, "names a group twice")
      .optional(),
    /** A policy attached to each certificate: one that exists there, or made once from policyDocument. */
    policy: z.string().regex(POLICY_NAME, "is not a policy name AWS allows").optional(),
    /** The policy's document, created once at the target under the name `policy`. */
    policyDocument: z
      .string()
      .max(404_600)
      .superRefine((d, ctx) => {
        const p = policyDocumentProblem(d);
        if (p) ctx.addIssue({ code: "custom", message: p });
      })
      .optional(),
  })
  .strict()
  .refine((t) => Boolean(t.jitpTemplate) === Boolean(t.jitpRoleArn), {
    message: "--jitp-template and --jitp-role-arn go together",
    path: ["jitpRoleArn"],
  })
  .refine((t) => t.deviceRegistration !== "jitr" || t.autoRegistration !== false, {
    message: "jitr needs auto-registration on the CA",
    path: ["autoRegistration"],
  })
  .refine((t) => t.deviceRegistration !== "jitr" || t.caActive, {
    message: "jitr needs the CA registered ACTIVE",
    path: ["caActive"],
  })
  .refine((t) => t.thingName || (!t.thingType && !t.thingGroups), {
    message: "needs --thing-name: a thing type and thing groups belong to the device's Thing",
    path: ["thingName"],
  })
  .refine((t) => !t.policyDocument || t.policy, {
    message: "needs --policy, the name the document is created under",
    path: ["policy"],
  })
  .refine((t) => t.deviceRegistration !== "jitr" || (!t.thingName && !t.policy), {
    message:
      "does not apply to jitr: the station never registers those certificates; a just-in-time provisioning template (--jitp-template) makes the Thing and attaches the policy",
    path: ["thingName"],
  });

/** Whether a target makes more than the certificate for each device (a Thing, a policy). */
export const hasIdentity = (t: TargetConfig): boolean => Boolean(t.thingName || t.policy);

export type TargetConfig = z.infer<typeof TargetConfigSchema>;

export const TARGET_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** Validates a target's settings, naming the first bad one. */
export function parseTargetConfig(raw: unknown, name: string): TargetConfig {
  if (!TARGET_NAME.test(name))
    throw new LinesignError(
      "TARGET_INVALID",
      `Target name "${name}" is not allowed: use letters, digits, '.', '_' or '-' (at most 64).`,
    );
  const r = TargetConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new LinesignError(
      "TARGET_INVALID",
      `Target "${name}": ${issue.path.join(".") || "settings"} ${issue.message}.`,
      { details: { field: issue.path.join(".") } },
    );
  }
  return r.data;
}

/** Whether auto-registration is on for a target. */
export const autoRegistrationOf = (t: TargetConfig): boolean =>
  t.autoRegistration ?? t.deviceRegistration === "jitr";
