/**
 * Sync targets: an AWS IoT account (through an AWS profile or the default
 * credential chain) and region, and how the station registers its CAs and
 * device certificates there. Credentials never live here.
 */
import { z } from "zod";
import { LinesignError } from "./errors.js";

export const CA_MODES = ["DEFAULT", "SNI_ONLY"] as const;
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
  });

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
