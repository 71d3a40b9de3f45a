/**
 * One serial port of the line, for as long as the line runs: it greets, runs
 * one device's exchange at a time (docs/serial-protocol.md), records how each
 * ended, and re-arms when a pulled cable comes back.
 *
 * States of the exchange:
 *   idle --IDENTIFY--> identified --CSR--> signing --(issued)--> injecting
 *        --STORED--> confirming --(confirmed)--> idle (DONE sent)
 * Any failure sends ERROR (when the port is still there), records the reason
 * and returns to idle. The issuance engine decides everything about the
 * certificate; this class only moves bytes and keeps time.
 */
import { randomBytes } from "node:crypto";
import {
  isLinesignError,
  outcomeOf,
  toLinesignError,
  type ErrorCode,
} from "../../domain/errors.js";
import type { Profile } from "../../domain/profile.js";
import { chooseDeviceKeyType } from "../../domain/profile.js";
import { checkDeviceId } from "../../domain/csr-policy.js";
import type { LineTimeouts } from "../../domain/config.js";
import type { SerialLink, SerialPorts } from "../../domain/ports.js";
import { encodeFrame, MAX_FRAME_BYTES, type DecodeEvent } from "../../domain/serial/frame.js";
import {
  decodeMessage,
  encodeMessage,
  MESSAGE_TYPES,
  PROTOCOL_MAX,
  PROTOCOL_MIN,
  WIRE_ERRORS,
  wireCodeOf,
  wireErrorName,
  type Message,
  type MessageName,
} from "../../domain/serial/messages.js";
import type { AppContext } from "../context.js";
import type { IssuanceEngine } from "../issuance.js";
import { AnswerClock } from "./answer-clock.js";
import type { LineEvent, PortStage } from "./line-events.js";
import { DEVICE_ERRORS, sessionEntry, type Session } from "./line-session.js";
import type { Refusal } from "../refusal-log.js";

export interface PortLineOptions {
  path: string;
  baudRate: number;
  profileName: string;
  profile: Profile;
  workOrder: string | null;
  timeouts: LineTimeouts;
  /** How often a missing port is looked for again. */
  rearmPollMs: number;
  /** Asked when a device identifies itself; false when the line has taken all the devices it will. */
  claim: () => boolean;
  /** Why the line waits (no device is greeted), or null when it takes devices. */
  paused?: () => { code: ErrorCode; message: string } | null;
  /** Null when the line takes devices; while it is held, a promise a device that identified itself waits on. */
  ready?: (deviceId: string) => Promise<void> | null;
  emit: (e: LineEvent) => void;
  /**
   * Where the record of an exchange that ended refused or failed with no
   * certificate goes (aggregated per port and reason); absent: written at once.
   */
  refused?: (r: Refusal) => void;
}

/** Damaged frames tolerated in one exchange before the line is called too noisy. */
const MAX_BAD_FRAMES = 8;

/** Why a delivery recorded for a device that went away before CERTIFICATE is taken back. */
const GONE = "the device went away before its certificate was sent";

export class PortLine {
  private stage: PortStage = "closed";
  private link: SerialLink | null = null;
  private txSeq = 0;
  /** Keeps time while the device owes an answer. */
  private readonly clock: AnswerClock;
  /**
   * The device's last frame we handled (its bytes), and our answer to it (null
   * while we work on it), with when the answer went out.
   */
  private answered: {
    seq: number;
    type: number;
    payload: Uint8Array;
    reply: Uint8Array | null;
    resends: number;
    at: number;
  } | null = null;
  private session: Session | null = null;
  private sessions = 0;
  /**
   * For the exchange's byte count: the size of the last greeting sent, and every byte
   * received since (the device's answer to it among them), less the stray frames (a late
   * repeat of the previous exchange's last frame belongs to that exchange).
   */
  private helloBytes = 0;
  private rxSinceHello = 0;
  /** The port's last exchange ended with the device refusing our versions, and nothing came since. */
  private versionRefused = false;
  /** The frame just handled was a stray between devices (set by onFrame). */
  private stray = false;
  /** The last write to the port failed (the failure was logged once). */
  private writeRefused = false;
  /** New each time the port is opened: a device restarts only for a greeting from a new boot. */
  private bootId = new Uint8Array(8);
  private helloTimer: ReturnType<typeof setTimeout> | null = null;
  private rearmTimer: ReturnType<typeof setTimeout> | null = null;
  private stopping = false;
  /** Why the port is waiting (a station fault, a hold), if it is. */
  private pausedFor: ErrorCode | null = null;
  private finished!: () => void;
  /** Resolves when the port has stopped (after stop() and the exchange in flight). */
  readonly done: Promise<void>;

  constructor(
    private readonly ctx: AppContext,
    private readonly engine: IssuanceEngine,
    private readonly ports: SerialPorts,
    private readonly o: PortLineOptions,
  ) {
    this.done = new Promise((resolve) => (this.finished = resolve));
    this.clock = new AnswerClock(
      o.timeouts,
      (bytes) => {
        if (this.session) this.session.resends++;
        void this.send(bytes);
      },
      (expect, ms) => this.timeout(expect, ms),
    );
  }

  get path(): string {
    return this.o.path;
  }

  get currentStage(): PortStage {
    return this.stage;
  }

  /** Opens the port (or waits for it to appear) and starts greeting. */
  start(): void {
    void this.arm(true);
  }

  /** Takes no new device; the exchange in flight finishes first. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.stage === "idle" || this.stage === "closed") void this.shutdown();
  }

  /** The line no longer waits: a port that was waiting greets at once. */
  resume(): void {
    if (this.pausedFor && this.stage === "idle" && this.link && !this.stopping) this.greet();
  }

  private async arm(first: boolean): Promise<void> {
    if (this.stopping) return void this.shutdown();
    if (!this.ports.exists(this.o.path)) {
      if (first)
        this.o.emit({
          event: "port.waiting",
          port: this.o.path,
          code: "SERIAL_PORT_NOT_FOUND",
          message: `Port ${this.o.path} is not there; waiting for it to appear (check the cable and the port name).`,
        });
      this.rearmTimer = setTimeout(() => void this.arm(false), this.o.rearmPollMs);
      return;
    }
    try {
      const link = await this.ports.open(this.o.path, this.o.baudRate);
      if (this.stopping) {
        await link.close();
        return void this.shutdown();
      }
      this.link = link;
      this.bootId = new Uint8Array(randomBytes(8));
      link.onData((bytes, events) => this.onData(link, bytes, events));
      link.onClose((lost) => this.onClose(link, lost));
      this.stage = "idle";
      this.o.emit({ event: "port.open", port: this.o.path });
      this.greet();
    } catch (e) {
      const err = toLinesignError(e);
      this.o.emit({
        event: "port.waiting",
        port: this.o.path,
        code: err.code,
        message: err.message,
      });
      this.rearmTimer = setTimeout(() => void this.arm(false), Math.max(this.o.rearmPollMs, 1000));
    }
  }

  private onClose(link: SerialLink, lost: boolean): void {
    if (link !== this.link) return;
    this.link = null;
    this.clearTimers();
    if (this.session) {
      this.endSession(
        "SERIAL_PORT_LOST",
        `Port ${this.o.path} went away during provisioning (cable pulled or adapter removed). Reconnect it; the device will be provisioned again when it answers.`,
        false,
      );
    }
    this.stage = "closed";
    if (!lost || this.stopping) return void this.shutdown();
    this.o.emit({ event: "port.lost", port: this.o.path });
    this.ctx.logger.warn({ port: this.o.path }, "serial port lost; waiting for it to return");
    this.rearmTimer = setTimeout(() => void this.arm(false), this.o.rearmPollMs);
  }

  private stopped = false;
  private async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    if (this.rearmTimer) clearTimeout(this.rearmTimer);
    const link = this.link;
    this.link = null;
    this.stage = "stopped";
    if (link) await link.close().catch(() => undefined);
    this.o.emit({ event: "port.stopped", port: this.o.path });
    this.finished();
  }

  // ---- sending -------------------------------------------------------------

  private frame(m: Message): Uint8Array {
    const { type, payload } = encodeMessage(m);
    const bytes = encodeFrame(type, this.txSeq, payload);
    this.txSeq = (this.txSeq + 1) & 0xff;
    return bytes;
  }

  private send(bytes: Uint8Array): Promise<void> {
    const link = this.link;
    if (!link) return Promise.resolve();
    if (this.session) this.session.wireBytes += bytes.length;
    return link.write(bytes).then(
      () => {
        this.writeRefused = false;
      },
      (e: unknown) => {
        // Said once while it lasts: a device that does not read would otherwise fill the log.
        if (this.writeRefused) return;
        this.writeRefused = true;
        this.ctx.logger.warn({ port: this.o.path, err: e }, "serial write failed");
      },
    );
  }

  /**
   * Answers the device's last frame with one that expects an answer in turn,
   * and keeps time until it comes. A repeat of the device's frame gets this again.
   */
  private async request(m: Message, expect: MessageName, deadlineMs: number): Promise<void> {
    const bytes = this.frame(m);
    if (this.answered) Object.assign(this.answered, { reply: bytes, at: Date.now() });
    this.clock.wait(bytes, expect, deadlineMs);
    await this.send(bytes);
  }

  /** Answers the device's frame `seq` (kept so a repeat of that frame gets the same answer). */
  private async reply(m: Message): Promise<void> {
    const bytes = this.frame(m);
    if (this.answered) Object.assign(this.answered, { reply: bytes, at: Date.now() });
    await this.send(bytes);
  }

  private greet(): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    if (this.stage !== "idle" || !this.link) return;
    if (this.stopping) return void this.shutdown();
    const fault = this.o.paused ? this.o.paused() : this.ctx.health.current();
    if (fault) {
      // Devices wait (no greeting) rather than fail one after another; look again shortly.
      if (this.pausedFor !== fault.code) {
        this.pausedFor = fault.code;
        this.o.emit({
          event: "port.paused",
          port: this.o.path,
          code: fault.code,
          message: fault.message,
        });
      }
      this.helloTimer = setTimeout(
        () => void this.ctx.health.recheck().then(() => this.greet()),
        this.o.rearmPollMs,
      );
      return;
    }
    if (this.pausedFor) {
      this.pausedFor = null;
      this.o.emit({ event: "port.resumed", port: this.o.path });
    }
    const hello = this.frame({
      type: "HELLO",
      protocolMin: PROTOCOL_MIN,
      protocolMax: PROTOCOL_MAX,
      maxFrame: MAX_FRAME_BYTES,
      stationId: this.ctx.stationId,
      bootId: this.bootId,
    });
    this.helloBytes = hello.length;
    this.rxSinceHello = 0;
    void this.send(hello);
    this.helloTimer = setTimeout(() => this.greet(), this.o.timeouts.helloMs);
  }

  // ---- timing --------------------------------------------------------------

  private timeout(expect: MessageName, ms: number): void {
    const secs = `${Math.round(ms / 100) / 10} s`;
    const message =
      expect === "STORED"
        ? `The device took its certificate but did not confirm storing it within ${secs}. It is listed as delivered but unconfirmed: check the device, then plug it in again.`
        : `The device did not send its certificate request within ${secs}. Check that it runs its provisioning firmware, then plug it in again.`;
    this.endSession("SERIAL_TIMEOUT", message, true);
  }

  private clearTimers(): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.clock.cancel();
  }

  // ---- receiving -----------------------------------------------------------

  private onData(link: SerialLink, _bytes: number, events: DecodeEvent[]): void {
    if (link !== this.link) return;
    this.clock.heard();
    for (const e of events) {
      if (link !== this.link) return;
      // Every byte received, counted as the decoder accounts for it (delimiters and damage included).
      if (this.session) this.session.wireBytes += e.wireBytes;
      else this.rxSinceHello += e.wireBytes;
      switch (e.kind) {
        case "frame":
          this.stray = false;
          this.onFrame(e.frame.type, e.frame.seq, e.frame.payload);
          // A stray frame between devices (a late repeat of the previous exchange's last frame
          // among them) is not in the next exchange's count.
          if (this.stray) this.rxSinceHello -= e.wireBytes;
          break;
        case "bad":
          this.onBadFrame(e.reason);
          break;
        case "oversize":
          // Between devices it is noise like any other; in an exchange it ends it.
          if (!this.session) break;
          this.endSession(
            "SERIAL_FRAME_TOO_LARGE",
            `The device sent a frame of more than ${MAX_FRAME_BYTES} bytes, which the protocol does not allow. Its firmware is faulty: set it aside.`,
            true,
          );
          break;
        default: {
          const never: never = e;
          throw new Error(String(never));
        }
      }
    }
  }

  private onBadFrame(reason: string): void {
    // Between devices, noise is ignored; the sender of a damaged frame sends it again after a silence.
    if (!this.session) return;
    this.session.badFrames++;
    this.ctx.logger.info({ port: this.o.path, reason }, "damaged frame dropped");
    if (this.session.badFrames > MAX_BAD_FRAMES) {
      this.endSession(
        "SERIAL_LINE_NOISY",
        `More than ${MAX_BAD_FRAMES} damaged messages came from the device. Check the cable and its connectors, then plug the device in again.`,
        true,
      );
    }
  }

  private onFrame(type: number, seq: number, payload: Uint8Array): void {
    // A repeat of the frame we last handled: its answer was lost, so send it again (or keep working).
    // Only the same bytes count, and between devices only while the last one could still be
    // repeating them: another device (or this one plugged in again) also starts at sequence 0.
    const prev = this.answered;
    const t = this.o.timeouts;
    if (
      prev &&
      prev.seq === seq &&
      prev.type === type &&
      Buffer.from(prev.payload).equals(Buffer.from(payload)) &&
      (this.session !== null ||
        prev.reply === null ||
        Date.now() - prev.at <= t.retryMs * (t.retries + 2))
    ) {
      this.stray = !this.session;
      if (prev.reply && prev.resends < this.o.timeouts.retries) {
        prev.resends++;
        if (this.session) this.session.resends++;
        void this.send(prev.reply);
      }
      return;
    }
    const decoded = decodeMessage(type, payload);
    if (!decoded.ok) {
      if (this.session) {
        this.endSession(
          "SERIAL_PROTOCOL",
          `The device sent a message the station cannot read (${decoded.reason}). Its firmware does not follow the protocol: set it aside.`,
          true,
        );
      } else if (type === MESSAGE_TYPES.IDENTIFY) {
        // Every IDENTIFY gets an answer: a device whose greeting is ignored waits for ever.
        this.versionRefused = false;
        this.answered = { seq, type, payload, reply: null, resends: 0, at: Date.now() };
        if (!this.startSession(null)) return;
        if (decoded.missing === "DEVICE_ID")
          this.endSession(
            "DEVICE_ID_MISSING",
            `The device answered the greeting without its device id (${decoded.reason}). Its firmware does not follow the protocol: set it aside.`,
            true,
          );
        else
          this.endSession(
            "SERIAL_PROTOCOL",
            `The device answered the greeting with an IDENTIFY the station cannot read (${decoded.reason}). Its firmware does not follow the protocol: set it aside.`,
            true,
          );
      }
      return;
    }
    const m = decoded.message;
    if (!this.session && m.type === "ERROR") {
      this.unidentifiedError(m.code, m.message);
      return;
    }
    this.versionRefused = false;
    if (m.type === "IDENTIFY") {
      const same = this.session?.deviceId === m.deviceId;
      if (this.session && !same) {
        this.endSession(
          "SERIAL_PROTOCOL",
          `Another device ("${m.deviceId}") answered in the middle of provisioning "${this.session.deviceId}"; the first was abandoned. Provision one device at a time on each port.`,
          false,
        );
      } else if (same) {
        // The same device started over (it restarted, or missed our answer): same claim, new exchange.
        this.ctx.logger.info({ port: this.o.path, deviceId: m.deviceId }, "device started over");
        this.clock.cancel();
      }
      const carried = same ? this.session : null;
      this.answered = { seq, type, payload, reply: null, resends: 0, at: Date.now() };
      void this.identified(m, carried);
      return;
    }
    if (!this.session) {
      // A stray frame between devices: the greeting restarts the device.
      this.stray = true;
      return;
    }
    if (m.type === "ERROR") {
      this.deviceError(m.code, m.message);
      return;
    }
    const expected = this.clock.expect;
    if (m.type !== expected) {
      this.endSession(
        "SERIAL_PROTOCOL",
        `The device sent ${m.type} when the station expected ${expected ?? "nothing"}. Its firmware does not follow the protocol: set it aside.`,
        true,
      );
      return;
    }
    this.answered = { seq, type, payload, reply: null, resends: 0, at: Date.now() };
    this.clock.cancel();
    if (m.type === "CSR") void this.signCsr(m.csr);
    else if (m.type === "STORED") void this.confirmStored(m.sha256);
  }

  // ---- the exchange --------------------------------------------------------

  /**
   * A device answered the greeting: the line takes it (false, with an ERROR ABORTED sent, when
   * it takes no more devices) and its exchange starts. `carried`: the same device started over,
   * its exchange goes on under the same claim and its counts carry on.
   */
  private startSession(deviceId: string | null, carried: Session | null = null): boolean {
    if (!carried && (this.stopping || !this.o.claim())) {
      // Answered all the same: a device must not wait for ever for a station that took no notice.
      void this.reply({
        type: "ERROR",
        code: wireCodeOf("LINE_STOPPED"),
        message: "The line takes no more devices now.",
      });
      return false;
    }
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.sessions++;
    this.session = {
      id: this.sessions,
      deviceId,
      startedAt: carried?.startedAt ?? Date.now(),
      keyType: null,
      model: carried?.model ?? null,
      firmware: carried?.firmware ?? null,
      issuanceId: null,
      serial: null,
      // From the first byte of the greeting the device answered.
      wireBytes: carried ? carried.wireBytes : this.helloBytes + this.rxSinceHello,
      badFrames: carried?.badFrames ?? 0,
      resends: carried?.resends ?? 0,
    };
    this.stage = "identified";
    return true;
  }

  private async identified(
    m: Extract<Message, { type: "IDENTIFY" }>,
    carried: Session | null,
  ): Promise<void> {
    // A held line keeps the device waiting, unanswered, instead of failing it; it is answered
    // when the hold ends.
    const held = carried ? null : (this.o.ready?.(m.deviceId) ?? null);
    if (held) {
      const link = this.link;
      await held;
      if (this.link !== link || this.stage !== "idle") return;
    }
    if (!this.startSession(m.deviceId, carried)) return;
    this.session!.model = m.model || null;
    this.session!.firmware = m.firmware || null;
    this.o.emit({
      event: "device.identified",
      port: this.o.path,
      deviceId: m.deviceId,
      model: m.model,
      firmware: m.firmware,
      keyTypes: m.keyTypes,
    });
    if (m.protocol < PROTOCOL_MIN || m.protocol > PROTOCOL_MAX) {
      this.endSession(
        "SERIAL_VERSION_UNSUPPORTED",
        `The device speaks protocol version ${m.protocol}; this station speaks ${PROTOCOL_MIN} to ${PROTOCOL_MAX}. Update the device firmware or the station.`,
        true,
      );
      return;
    }
    // The id is checked before the device is asked to make a key for it.
    try {
      checkDeviceId(this.o.profile, m.deviceId);
    } catch (e) {
      const err = toLinesignError(e);
      this.endSession(
        err.code,
        `${err.message} Check the device's id (its label or its configuration), or use a profile whose rule it follows.`,
        true,
      );
      return;
    }
    const keyType = chooseDeviceKeyType(this.o.profile, m.keyTypes);
    if (!keyType) {
      this.endSession(
        "KEY_TYPE_NOT_ALLOWED",
        `The device can make only ${m.keyTypes.join(", ") || "no known key type"}, and profile "${this.o.profileName}" accepts none of them. Use a profile for this model.`,
        true,
      );
      return;
    }
    this.session!.keyType = keyType;
    this.o.emit({
      event: "device.csr-requested",
      port: this.o.path,
      deviceId: m.deviceId,
      keyType,
    });
    await this.request({ type: "CSR_REQUEST", keyType }, "CSR", this.o.timeouts.csrMs);
  }

  private async signCsr(csr: Uint8Array): Promise<void> {
    const session = this.session!;
    const deviceId = session.deviceId!;
    this.stage = "signing";
    this.o.emit({
      event: "device.signing",
      port: this.o.path,
      deviceId,
      csrBytes: csr.length,
    });
    let issued;
    try {
      issued = await this.engine.issue({
        csr,
        profile: this.o.profileName,
        deviceId,
        origin: `serial:${this.o.path}`,
        workOrder: this.o.workOrder,
        ...(session.keyType ? { keyType: session.keyType } : {}),
        device: { model: session.model ?? null, firmware: session.firmware ?? null },
        // A new certificate is recorded DELIVERED in its own commit while the device is still
        // there: one durable write, not two, before CERTIFICATE goes out.
        handOver: () => this.session === session,
      });
      session.issuanceId = issued.issuance.id;
      session.serial = issued.issuance.serial;
      // The device went away meanwhile: before the commit, it stays ISSUED; after a commit that
      // recorded the hand-over (while its head was written), no CERTIFICATE went out either.
      if (this.session !== session) {
        if (issued.delivered) await this.engine.withdrawDelivery(issued.issuance.id, GONE);
        return;
      }
      if (!issued.delivered) {
        const before = issued.issuance.state;
        await this.engine.markDelivered(issued.issuance.id);
        // Gone while that was made durable: put back what the record said before.
        if (this.session !== session && (before === "ISSUED" || before === "DELIVERY_FAILED"))
          await this.engine.withdrawDelivery(issued.issuance.id, GONE, before);
      }
    } catch (e) {
      // The engine recorded the rejection; the session's end is recorded too.
      return this.failCurrent(session, e);
    }
    if (this.session !== session) return;
    this.stage = "injecting";
    this.o.emit({
      event: "device.injecting",
      port: this.o.path,
      deviceId,
      serial: issued.issuance.serial,
      redelivery: issued.redelivery,
    });
    await this.request(
      { type: "CERTIFICATE", leaf: issued.issuance.certDer, chain: issued.chainDer },
      "STORED",
      this.o.timeouts.storedMs,
    );
  }

  private async confirmStored(sha256: Uint8Array): Promise<void> {
    const session = this.session!;
    this.stage = "confirming";
    let rec;
    try {
      rec = await this.engine.confirm(session.issuanceId!, Buffer.from(sha256).toString("hex"));
    } catch (e) {
      return this.failCurrent(session, e);
    }
    if (this.session !== session) return;
    await this.reply({ type: "DONE", serial: new Uint8Array(Buffer.from(rec.serial, "hex")) });
    const ms = Date.now() - session.startedAt;
    this.o.emit({
      event: "device.confirmed",
      port: this.o.path,
      deviceId: session.deviceId!,
      serial: rec.serial,
      ms,
      wireBytes: session.wireBytes,
    });
    // Keep the answer: if DONE is lost, the device's repeated STORED gets it again.
    const done = this.answered;
    const link = this.link;
    // The exchange is over: nothing that happens while its record is written can fail it.
    this.session = null;
    await this.recordConfirmed(session);
    // Written before the port greets again (unless the port went, or a device started meanwhile).
    if (this.link !== link || this.session !== null) return;
    this.backToIdle();
    this.answered = done;
  }

  /**
   * The record of a confirmed exchange, through the group commit: the records of ports that
   * confirm at the same moment share one durable transaction (one fsync) with each other and
   * with the issuances committed then, where a record written alone cost a transaction of its
   * own on the event loop for every device. A lock held by another process is waited out there.
   */
  private async recordConfirmed(session: Session): Promise<void> {
    const entry = sessionEntry(
      this.ctx.actor,
      this.o.path,
      this.o.workOrder,
      session,
      "ok",
      null,
      null,
      {},
    );
    try {
      await this.engine.committer.commit(() => this.ctx.store.appendEvent(entry));
    } catch (err) {
      this.ctx.logger.error({ err, port: this.o.path }, "could not record a line session");
    }
  }

  /**
   * An ERROR outside an exchange. A device that speaks none of the greeting's versions answers
   * it so: that is recorded (once, until the port hears anything else); any other is ignored.
   */
  private unidentifiedError(code: number, text: string): void {
    if (code !== WIRE_ERRORS.VERSION_UNSUPPORTED || this.versionRefused) return;
    if (!this.startSession(null)) return;
    this.versionRefused = true;
    this.stage = "idle";
    this.endSession(
      "SERIAL_VERSION_UNSUPPORTED",
      `The device speaks none of this station's protocol versions (${PROTOCOL_MIN} to ${PROTOCOL_MAX})${text ? `: "${text}"` : ""}. Update the device firmware or the station.`,
      false,
      { wireCode: "VERSION_UNSUPPORTED" },
    );
  }

  private deviceError(code: number, text: string): void {
    const name = wireErrorName(code) ?? `0x${code.toString(16).padStart(4, "0")}`;
    const plain = DEVICE_ERRORS[name] ?? "The device reported an error.";
    const session = this.session!;
    const message = `${plain} (device error ${name}${text ? `: ${text}` : ""})`;
    if (
      session.issuanceId !== null &&
      (this.stage === "injecting" || this.stage === "confirming")
    ) {
      void this.engine
        .markDeliveryFailed(session.issuanceId, `the device reported ${name}`)
        .catch(() => undefined);
    }
    this.endSession("DEVICE_REPORTED_ERROR", message, false, { wireCode: name });
  }

  /** Ends `session` with the error, unless another exchange has replaced it meanwhile. */
  private failCurrent(session: Session, e: unknown): void {
    if (this.session !== session) return;
    const err = toLinesignError(e);
    this.endSession(err.code, err.message, true);
  }

  /** Ends the exchange in flight (if any) with a failure: tells the device, records it, re-greets. */
  private endSession(
    code: ErrorCode,
    message: string,
    tellDevice: boolean,
    details: Record<string, unknown> = {},
  ): void {
    const session = this.session;
    const stage = this.stage;
    let told: Uint8Array | null = null;
    if (tellDevice && this.link) {
      told = this.frame({ type: "ERROR", code: wireCodeOf(code), message });
      void this.send(told);
    }
    this.o.emit({
      event: "device.failed",
      port: this.o.path,
      deviceId: session?.deviceId ?? null,
      stage,
      code,
      message,
      serial: session?.serial ?? null,
    });
    this.record(session, outcomeOf(code), code, message, { stage, ...details });
    // A late repeat of the device's last frame gets this ERROR again, not a new exchange.
    const last = this.answered;
    this.backToIdle();
    if (told && last) this.answered = { ...last, reply: told, resends: 0, at: Date.now() };
  }

  private record(
    session: Session | null,
    outcome: "ok" | "refused" | "failed",
    code: ErrorCode | null,
    message: string | null,
    details: Record<string, unknown> = {},
  ): void {
    const entry = sessionEntry(
      this.ctx.actor,
      this.o.path,
      this.o.workOrder,
      session,
      outcome,
      code,
      message,
      details,
    );
    // An exchange that ended with no certificate: aggregated per port and reason, so that a
    // flooding device costs one entry per interval, not one fsync per frame.
    if (outcome !== "ok" && !session?.serial && this.o.refused) {
      this.o.refused({
        source: this.o.path,
        reason: `${code ?? "none"}:${String(details.stage ?? "")}`,
        entry,
      });
      return;
    }
    // Written at once: the summary of an exchange is in the log before the port greets again.
    try {
      this.ctx.store.appendEvent(entry);
    } catch (e) {
      if (isLinesignError(e, "DB_LOCKED")) {
        // Another process holds the lock: written as soon as it goes, without blocking.
        void this.engine.committer
          .commit(() => this.ctx.store.appendEvent(entry))
          .catch((err: unknown) =>
            this.ctx.logger.error({ err, port: this.o.path }, "could not record a line session"),
          );
        return;
      }
      this.ctx.logger.error({ err: e, port: this.o.path }, "could not record a line session");
    }
  }

  private backToIdle(): void {
    this.session = null;
    this.answered = null;
    this.clock.cancel();
    if (!this.link) return;
    this.stage = "idle";
    if (this.stopping) return void this.shutdown();
    // Greet the next device at once: the one just done has left provisioning mode.
    this.greet();
  }
}
