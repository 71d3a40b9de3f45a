/**
 * The device's identity at AWS beyond its certificate, for targets that ask
 * for it: per device and in this order, its Thing (CreateThing, or found as
 * it is), the certificate attached to the Thing (AttachThingPrincipal), the
 * policy attached to the certificate (AttachPolicy; a policy document is
 * created once per target), the Thing added to each of its groups
 * (AddThingToThingGroup). Each step is written to the ledger only after AWS
 * answered, so a run stopped between two steps goes on at the next one; AWS
 * answers each of these calls the same when repeated, so a step whose answer
 * was lost is repeated without making anything twice.
 *
 * Once revoked, a certificate is detached from its Thing and from its policy
 * where the target attached them (DetachThingPrincipal, DetachPolicy); the
 * Thing is left as it is, and the log says so.
 *
 * What AWS refuses is reported per device with what to do: a Thing that
 * exists with other attributes (the station never changes a Thing it did not
 * make), a thing type, policy or group that does not exist there. A missing
 * one is asked for once per run: the devices after it are reported without
 * another request.
 */
import { classifyFailure } from "../../domain/aws-failure.js";
import type { IotFailure, IotGateway, IotResult } from "../../domain/ports.js";
import { thingOf, type TargetConfig } from "../../domain/target.js";

export type IdentityStepName = "thing" | "principal" | "policy" | "group";

export interface IdentityStepState {
  step: IdentityStepName;
  name: string;
  state: "done" | "failed" | "detached";
  arn: string | null;
}

/** A certificate registered at the target whose identity steps are not all done. */
export interface IdentityItem {
  serial: string;
  deviceId: string;
  model: string | null;
  firmware: string | null;
  certificateId: string;
  certificateArn: string;
  /** What the ledger holds already for it. */
  steps: IdentityStepState[];
}

/** A revoked certificate with attachments the target made. */
export interface DetachItem {
  serial: string;
  deviceId: string;
  certificateArn: string;
  steps: IdentityStepState[];
}

export interface IdentityCounts {
  things: number;
  principals: number;
  policies: number;
  groups: number;
  complete: number;
  failed: number;
  deferred: number;
  detached: number;
}

export interface IdentityLedger {
  saveStep(
    item: { serial: string },
    step: {
      step: IdentityStepName | "complete";
      name: string;
      state: "done" | "failed" | "detached";
      arn: string | null;
      attempts: number;
      error: string | null;
    },
  ): void;
  targetPolicy(name: string): { arn: string; created: boolean } | null;
  saveTargetPolicy(name: string, arn: string, created: boolean): void;
  note(e: {
    action: string;
    subject: string | null;
    outcome: "ok" | "refused" | "failed";
    code?: string;
    message?: string;
    details: Record<string, unknown>;
  }): void;
}

export interface IdentityHost {
  target: string;
  t: TargetConfig;
  gw: IotGateway;
  ledger: IdentityLedger;
  attempt<T>(fn: () => Promise<IotResult<T>>): Promise<{ r: IotResult<T>; attempts: number }>;
  credentialsFailed(f: IotFailure): void;
  /** Whether the target stopped (its credentials were refused). */
  stopped(): boolean;
  emit(e: {
    kind: "identity";
    ref: string;
    outcome: "done" | "failed" | "deferred" | "detached" | "planned";
    message?: string;
    code?: string;
    attempts?: number;
  }): void;
  counts: IdentityCounts;
  /** Counted as failed for good (the run's exit status). */
  failedForGood(): void;
}

/** What a step's failure means for the rest of the run. */
type Outcome = { ok: true } | { ok: false; retry: boolean; stop: boolean };

const canonical = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v ?? null);
};
const sameDocument = (a: string, b: string): boolean => {
  try {
    return canonical(JSON.parse(a)) === canonical(JSON.parse(b));
  } catch {
    return a.replace(/\s+/g, "") === b.replace(/\s+/g, "");
  }
};
const attrs = (a: Record<string, string>): string =>
  Object.keys(a).length
    ? Object.entries(a)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")
    : "no attributes";

export class DeviceIdentity {
  /** Per run: names AWS said do not exist (thing type, policy, groups), with the words to repeat. */
  private readonly missing = new Map<string, string>();
  /** Per run: the policy document's creation (once), or why it cannot be used. */
  private policyReady: Promise<string | null> | null = null;

  constructor(private readonly h: IdentityHost) {}

  private get where(): string {
    const w = this.h.gw.where;
    return `target "${this.h.target}" (${w.region}, ${w.profile ? `profile ${w.profile}` : "default credentials"})`;
  }

  /** The plan's words for one device (dry run). */
  plan(item: { deviceId: string; model: string | null; firmware: string | null }): string {
    const t = this.h.t;
    const parts: string[] = [];
    if (t.thingName) {
      const th = thingOf(t.thingName, {
        deviceId: item.deviceId,
        model: item.model,
        firmware: item.firmware,
      });
      if ("error" in th) return `will fail: ${th.error}`;
      parts.push(`Thing ${th.name}${t.thingType ? ` (${t.thingType})` : ""}, certificate attached`);
    }
    if (t.policy) parts.push(`policy ${t.policy}${t.policyDocument ? " (created once)" : ""}`);
    if (t.thingGroups) parts.push(`groups ${t.thingGroups.join(", ")}`);
    return parts.join("; ");
  }

  /** Runs the steps a device still lacks, in order; stops at the first that fails. */
  async run(item: IdentityItem): Promise<void> {
    const t = this.h.t;
    const done = (step: IdentityStepName, name: string) =>
      item.steps.some((s) => s.step === step && s.name === name && s.state === "done");
    let thing: string | null = null;
    if (t.thingName) {
      const th = thingOf(t.thingName, {
        deviceId: item.deviceId,
        model: item.model,
        firmware: item.firmware,
      });
      if ("error" in th)
        return this.failed(item, "thing", t.thingName, `Device ${item.deviceId}: ${th.error}.`, 0);
      thing = th.name;
      if (!done("thing", thing) && !(await this.ok(this.createThing(item, thing, th.attributes))))
        return;
      if (this.h.stopped()) return;
      if (!done("principal", thing) && !(await this.ok(this.attachPrincipal(item, thing)))) return;
    }
    if (t.policy && !done("policy", t.policy)) {
      if (!(await this.ok(this.attachPolicy(item, t.policy)))) return;
    }
    for (const g of t.thingGroups ?? []) {
      if (this.h.stopped()) return;
      if (!done("group", g) && !(await this.ok(this.addToGroup(item, thing!, g)))) return;
    }
    if (this.h.stopped()) return;
    this.h.ledger.saveStep(item, {
      step: "complete",
      name: "",
      state: "done",
      arn: null,
      attempts: 0,
      error: null,
    });
    this.h.counts.complete++;
    this.h.emit({
      kind: "identity",
      ref: item.serial,
      outcome: "done",
      message: this.plan(item),
    });
  }

  private async ok(p: Promise<Outcome>): Promise<boolean> {
    return (await p).ok;
  }

  /** A failure AWS gave: recorded for the device (unless the target stopped), with its meaning. */
  private refused(
    item: IdentityItem,
    step: IdentityStepName,
    name: string,
    f: IotFailure,
    attempts: number,
    words: string,
  ): Outcome {
    const kind = classifyFailure(f);
    if (kind === "credentials") {
      // Says nothing about the device: it stays due, unrecorded.
      this.h.credentialsFailed(f);
      return { ok: false, retry: false, stop: true };
    }
    if (kind === "retry") {
      this.h.counts.deferred++;
      this.h.ledger.saveStep(item, {
        step,
        name,
        state: "failed",
        arn: null,
        attempts,
        error: `${f.name}: ${f.message}`,
      });
      this.h.emit({
        kind: "identity",
        ref: item.serial,
        outcome: "deferred",
        code: f.name,
        message: `${step} ${name}: AWS did not answer (${f.name}); the next sync tries again`,
        attempts,
      });
      return { ok: false, retry: true, stop: false };
    }
    this.failed(item, step, name, words, attempts, f.name);
    return { ok: false, retry: false, stop: false };
  }

  private failed(
    item: IdentityItem,
    step: IdentityStepName,
    name: string,
    message: string,
    attempts: number,
    code = "IDENTITY_REFUSED",
  ): void {
    this.h.counts.failed++;
    this.h.failedForGood();
    this.h.ledger.saveStep(item, {
      step,
      name,
      state: "failed",
      arn: null,
      attempts,
      error: `${code}: ${message}`,
    });
    this.h.ledger.note({
      action: "sync.identity",
      subject: item.deviceId,
      outcome: "refused",
      code,
      message,
      details: { target: this.h.target, serial: item.serial, step, name, attempts },
    });
    this.h.emit({ kind: "identity", ref: item.serial, outcome: "failed", code, message, attempts });
  }

  private saved(
    item: IdentityItem,
    step: IdentityStepName,
    name: string,
    arn: string | null,
    attempts: number,
  ): Outcome {
    this.h.ledger.saveStep(item, { step, name, state: "done", arn, attempts, error: null });
    item.steps.push({ step, name, state: "done", arn });
    return { ok: true };
  }

  /** A name AWS said does not exist: the devices after this one are reported without a request. */
  private knownMissing(item: IdentityItem, step: IdentityStepName, key: string, name: string) {
    const words = this.missing.get(key);
    if (!words) return null;
    this.failed(item, step, name, `Device ${item.deviceId}: ${words}`, 0, "NotSent");
    return { ok: false, retry: false, stop: false } as Outcome;
  }

  private async createThing(
    item: IdentityItem,
    name: string,
    attributes: Record<string, string>,
  ): Promise<Outcome> {
    const t = this.h.t;
    if (t.thingType) {
      const k = this.knownMissing(item, "thing", `type:${t.thingType}`, name);
      if (k) return k;
    }
    const { r, attempts } = await this.h.attempt(() =>
      this.h.gw.createThing({
        name,
        ...(t.thingType ? { thingType: t.thingType } : {}),
        attributes,
      }),
    );
    if (r.ok) {
      this.h.counts.things++;
      return this.saved(item, "thing", name, r.value.arn, attempts);
    }
    const f = r.failure;
    if (f.name === "ResourceAlreadyExistsException") {
      // AWS answers so only when the Thing exists with another configuration: say which.
      const d = await this.h.attempt(() => this.h.gw.describeThing(name));
      const there = d.r.ok
        ? `${attrs(d.r.value.attributes)}${d.r.value.thingType ? `, thing type ${d.r.value.thingType}` : ", no thing type"}`
        : "attributes it could not read";
      return this.refused(
        item,
        "thing",
        name,
        f,
        attempts + d.attempts,
        `Device ${item.deviceId}: Thing ${name} exists at ${this.where} with other attributes (there: ${there}; this device: ${attrs(attributes)}${t.thingType ? `, thing type ${t.thingType}` : ", no thing type"}). The station does not change a Thing it did not make: update it there (aws iot update-thing --thing-name ${name} ...) or delete it, or give the target another --thing-name template; then sync again.`,
      );
    }
    if (f.name === "ResourceNotFoundException" && t.thingType) {
      const words = `thing type ${t.thingType} does not exist at ${this.where}: create it there (aws iot create-thing-type --thing-type-name ${t.thingType}) and sync again. AWS said: ${f.message}`;
      this.missing.set(`type:${t.thingType}`, words);
      return this.refused(item, "thing", name, f, attempts, `Device ${item.deviceId}: ${words}`);
    }
    return this.refused(
      item,
      "thing",
      name,
      f,
      attempts,
      `Device ${item.deviceId}: AWS refused to create Thing ${name} at ${this.where}: ${f.name}: ${f.message}`,
    );
  }

  private async attachPrincipal(item: IdentityItem, thing: string): Promise<Outcome> {
    const { r, attempts } = await this.h.attempt(() =>
      this.h.gw.attachThingPrincipal(thing, item.certificateArn),
    );
    if (r.ok) {
      this.h.counts.principals++;
      return this.saved(item, "principal", thing, item.certificateArn, attempts);
    }
    return this.refused(
      item,
      "principal",
      thing,
      r.failure,
      attempts,
      `Device ${item.deviceId}: AWS refused to attach certificate ${item.certificateId} to Thing ${thing} at ${this.where}: ${r.failure.name}: ${r.failure.message}`,
    );
  }

  /** The policy document, created once per target (null: ready; else why not). */
  private ensurePolicy(name: string, document: string): Promise<string | null> {
    this.policyReady ??= (async () => {
      if (this.h.ledger.targetPolicy(name)) return null;
      const c = await this.h.attempt(() => this.h.gw.createPolicy(name, document));
      if (c.r.ok) {
        this.h.ledger.saveTargetPolicy(name, c.r.value.arn, true);
        this.h.ledger.note({
          action: "sync.policy-create",
          subject: name,
          outcome: "ok",
          details: { target: this.h.target, arn: c.r.value.arn },
        });
        return null;
      }
      const f = c.r.failure;
      if (classifyFailure(f) === "credentials") {
        this.h.credentialsFailed(f);
        return "not sent: AWS refused this target's credentials";
      }
      if (f.name === "ResourceAlreadyExistsException") {
        const g = await this.h.attempt(() => this.h.gw.getPolicy(name));
        if (g.r.ok && sameDocument(g.r.value.document, document)) {
          this.h.ledger.saveTargetPolicy(name, g.r.value.arn, false);
          return null;
        }
        return g.r.ok
          ? `policy ${name} exists at ${this.where} with another document: the station does not change a policy it did not make. Give the target another --policy name, or make the document there the default version (aws iot create-policy-version --policy-name ${name} --set-as-default ...), then sync again`
          : `policy ${name} exists at ${this.where} and could not be read (${g.r.failure.name}: ${g.r.failure.message})`;
      }
      return `AWS refused to create policy ${name} at ${this.where}: ${f.name}: ${f.message}${f.name === "MalformedPolicyException" ? ". Fix the target's --policy-document" : ""}`;
    })();
    return this.policyReady;
  }

  private async attachPolicy(item: IdentityItem, policy: string): Promise<Outcome> {
    const t = this.h.t;
    if (t.policyDocument) {
      const problem = await this.ensurePolicy(policy, t.policyDocument);
      if (this.h.stopped()) return { ok: false, retry: false, stop: true };
      if (problem) {
        this.failed(item, "policy", policy, `Device ${item.deviceId}: ${problem}.`, 0);
        return { ok: false, retry: false, stop: false };
      }
    }
    const k = this.knownMissing(item, "policy", `policy:${policy}`, policy);
    if (k) return k;
    const { r, attempts } = await this.h.attempt(() =>
      this.h.gw.attachPolicy(policy, item.certificateArn),
    );
    if (r.ok) {
      this.h.counts.policies++;
      return this.saved(item, "policy", policy, item.certificateArn, attempts);
    }
    const f = r.failure;
    if (f.name === "ResourceNotFoundException") {
      const words = `policy ${policy} does not exist at ${this.where}: create it there (aws iot create-policy --policy-name ${policy} --policy-document file://POLICY.json) or give the target --policy-document, then sync again. AWS said: ${f.message}`;
      this.missing.set(`policy:${policy}`, words);
      return this.refused(item, "policy", policy, f, attempts, `Device ${item.deviceId}: ${words}`);
    }
    return this.refused(
      item,
      "policy",
      policy,
      f,
      attempts,
      f.name === "LimitExceededException"
        ? `Device ${item.deviceId}: certificate ${item.certificateId} has as many policies attached at ${this.where} as AWS allows (10): detach one there (aws iot detach-policy ...) and sync again. AWS said: ${f.message}`
        : `Device ${item.deviceId}: AWS refused to attach policy ${policy} to certificate ${item.certificateId} at ${this.where}: ${f.name}: ${f.message}`,
    );
  }

  private async addToGroup(item: IdentityItem, thing: string, group: string): Promise<Outcome> {
    const k = this.knownMissing(item, "group", `group:${group}`, group);
    if (k) return k;
    const { r, attempts } = await this.h.attempt(() =>
      this.h.gw.addThingToThingGroup(group, thing),
    );
    if (r.ok) {
      this.h.counts.groups++;
      return this.saved(item, "group", group, null, attempts);
    }
    const f = r.failure;
    if (f.name === "ResourceNotFoundException") {
      const words = `thing group ${group} does not exist at ${this.where}: create it there (aws iot create-thing-group --thing-group-name ${group}) and sync again. AWS said: ${f.message}`;
      this.missing.set(`group:${group}`, words);
      return this.refused(item, "group", group, f, attempts, `Device ${item.deviceId}: ${words}`);
    }
    return this.refused(
      item,
      "group",
      group,
      f,
      attempts,
      `Device ${item.deviceId}: AWS refused to add Thing ${thing} to group ${group} at ${this.where}: ${f.name}: ${f.message}`,
    );
  }

  /**
   * A revoked certificate: detached from its Thing and its policy where this target attached
   * them; the Thing stays (with its groups). Recorded in the log.
   */
  async detach(item: DetachItem): Promise<void> {
    const detached: string[] = [];
    let thing: string | null = null;
    for (const s of item.steps) {
      if (this.h.stopped()) return;
      if (s.state !== "done" || (s.step !== "principal" && s.step !== "policy")) continue;
      const { r, attempts } = await this.h.attempt(() =>
        s.step === "principal"
          ? this.h.gw.detachThingPrincipal(s.name, item.certificateArn)
          : this.h.gw.detachPolicy(s.name, item.certificateArn),
      );
      if (!r.ok) {
        const kind = classifyFailure(r.failure);
        if (kind === "credentials") return this.h.credentialsFailed(r.failure);
        // Already gone there (the Thing or policy deleted): nothing left to detach.
        if (r.failure.name !== "ResourceNotFoundException") {
          if (kind === "retry") this.h.counts.deferred++;
          else this.h.failedForGood();
          this.h.emit({
            kind: "identity",
            ref: item.serial,
            outcome: kind === "retry" ? "deferred" : "failed",
            code: r.failure.name,
            message: `detaching the revoked certificate from ${s.step === "principal" ? `Thing ${s.name}` : `policy ${s.name}`}: ${r.failure.message}`,
            attempts,
          });
          return;
        }
      }
      this.h.ledger.saveStep(item, {
        step: s.step,
        name: s.name,
        state: "detached",
        arn: null,
        attempts,
        error: r.ok ? null : `${r.failure.name}: ${r.failure.message}`,
      });
      s.state = "detached";
      if (s.step === "principal") thing = s.name;
      detached.push(s.step === "principal" ? `Thing ${s.name}` : `policy ${s.name}`);
    }
    this.h.counts.detached++;
    this.h.ledger.note({
      action: "sync.identity-detach",
      subject: item.deviceId,
      outcome: "ok",
      details: {
        target: this.h.target,
        serial: item.serial,
        detachedFrom: detached,
        thingLeft: thing,
      },
    });
    this.h.emit({
      kind: "identity",
      ref: item.serial,
      outcome: "detached",
      message: `revoked certificate detached from ${detached.join(" and ")}${thing ? `; Thing ${thing} left in place` : ""}`,
    });
  }
}
