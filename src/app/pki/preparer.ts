/**
 * Where the pure half of an issuance runs: in the station's own thread, or
 * in a pool of worker threads so that ports issuing at once use the other
 * cores while the main thread signs in the token and commits.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { LinesignError } from "../../domain/errors.js";
import { PrepareContext, type PrepareInput, type PrepareResult } from "./prepare.js";

export interface WorkerRequest {
  id: number;
  input: PrepareInput;
}

export type WorkerReply =
  { id: number; ok: true; value: PrepareResult } | { id: number; ok: false; error: string };

export interface Preparer {
  prepare(input: PrepareInput): Promise<PrepareResult>;
  close(): Promise<void>;
}

/** Runs everything in the calling thread. */
export class InlinePreparer implements Preparer {
  private readonly context = new PrepareContext();

  async prepare(input: PrepareInput): Promise<PrepareResult> {
    return this.context.prepare(input);
  }

  async close(): Promise<void> {}
}

/** The worker script: beside this file when built; from dist/ when this runs as TypeScript source (tests). */
function workerScript(): URL {
  const here = new URL("./issuance-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL("../../../dist/src/app/pki/issuance-worker.js", import.meta.url);
}

interface Slot {
  worker: Worker;
  outstanding: number;
  /** CA fingerprints this worker already has, so their certificates are sent once. */
  knownCas: Set<string>;
}

/** A pool of worker threads; each request goes to the one with the fewest outstanding. */
export class WorkerPreparer implements Preparer {
  private readonly slots: Slot[] = [];
  private readonly waiting = new Map<
    number,
    { resolve: (v: PrepareResult) => void; reject: (e: unknown) => void; slot: Slot }
  >();
  private nextId = 1;

  /** @param size number of worker threads (at least 1). */
  constructor(size: number) {
    const script = workerScript();
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(script);
      const slot: Slot = { worker, outstanding: 0, knownCas: new Set() };
      worker.on("message", (reply: WorkerReply) => this.answer(reply));
      worker.on("error", (err) => this.failAll(slot, err));
      worker.unref(); // an idle pool never keeps the process alive; see call()
      this.slots.push(slot);
    }
  }

  async prepare(input: PrepareInput): Promise<PrepareResult> {
    const slot = this.slots.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
    // The main thread checks the signature: that balances the work between it and the pool.
    let sent: PrepareInput = { ...input, callerVerifies: true };
    if (input.ca) {
      if (slot.knownCas.has(input.ca.fingerprint)) {
        sent = {
          ...sent,
          ca: {
            fingerprint: input.ca.fingerprint,
            keyType: input.ca.keyType,
            notAfter: input.ca.notAfter,
          },
        };
      } else {
        slot.knownCas.add(input.ca.fingerprint);
      }
    }
    return this.call(slot, sent);
  }

  async close(): Promise<void> {
    // A terminating worker does not keep the event loop alive, so without this
    // timer the process could end before terminate() settles (exit code 13).
    const hold = setTimeout(() => undefined, 5_000);
    try {
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
    } finally {
      clearTimeout(hold);
    }
  }

  private call(slot: Slot, input: PrepareInput): Promise<PrepareResult> {
    const id = this.nextId++;
    // A worker with work in hand must keep the process alive until it answers.
    if (slot.outstanding++ === 0) slot.worker.ref();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, slot });
      slot.worker.postMessage({ id, input } satisfies WorkerRequest);
    });
  }

  private answer(reply: WorkerReply): void {
    const w = this.waiting.get(reply.id);
    if (!w) return;
    this.waiting.delete(reply.id);
    if (--w.slot.outstanding === 0) w.slot.worker.unref();
    if (reply.ok) w.resolve(reply.value);
    else
      w.reject(
        new LinesignError(
          "INTERNAL",
          "The certificate builder failed. The station log has the details.",
          { cause: new Error(reply.error) },
        ),
      );
  }

  private failAll(slot: Slot, err: unknown): void {
    for (const [id, w] of this.waiting) {
      if (w.slot !== slot) continue;
      this.waiting.delete(id);
      if (--w.slot.outstanding === 0) w.slot.worker.unref();
      w.reject(
        new LinesignError(
          "INTERNAL",
          "A certificate builder thread stopped. The station log has the details.",
          { cause: err },
        ),
      );
    }
  }
}
