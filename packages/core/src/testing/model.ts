// Test-only helpers for the core's unit and property tests. Not exported from index.ts.
// Pure (no vitest / fast-check imports) so the build can compile it harmlessly.
import { describeError, type Result } from "../errors.js";
import type { CoreEvent, Effect, Grant, LeaseKey, OutcomeMap, StepResult } from "../events.js";
import { asClientId, asJobId, asWorkerId, type ClientId, type JobId, type WorkerId } from "../ids.js";
import { tileSizeBytes } from "../plan.js";
import type { MatMulSpecInput } from "../spec.js";
import { type CoreConfig, type CoreState, createCoreState, type JobRecord, type KernelOffer } from "../state.js";
import { step } from "../step.js";

/** A well-formed blob id made of one repeated hex digit. */
export const blobOf = (digit: string): string => digit.repeat(64);

export const BLOB_A = blobOf("a");
export const BLOB_B = blobOf("b");

/** The reference kernel as advertised by two different builds. */
export const REF_A: KernelOffer = { name: "reference", fingerprint: "fp-a" };
export const REF_B: KernelOffer = { name: "reference", fingerprint: "fp-b" };
/** A kernel the engine does not know. */
export const FOREIGN: KernelOffer = { name: "turbo", fingerprint: "fp-x" };

/** Spec input for C(m×n) = A(m×k) × B(k×n). */
export function matmulInput(
  m: number,
  k: number,
  n: number,
  opts: { tileRows?: number; tileCols?: number; kernel?: string; blobA?: string; blobB?: string } = {},
): MatMulSpecInput {
  return {
    a: { rows: m, cols: k, blobId: opts.blobA ?? BLOB_A },
    b: { rows: k, cols: n, blobId: opts.blobB ?? BLOB_B },
    tileRows: opts.tileRows ?? 0,
    tileCols: opts.tileCols ?? 0,
    kernel: opts.kernel ?? "auto",
  };
}

/** Unwraps a core Result, throwing (test code only) with the error's description. */
export function unwrap<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${describeError(r.error)}`);
  return r.value;
}

/** Effects of one type, narrowed. */
export function effectsOf<T extends Effect["type"]>(fx: readonly Effect[], type: T): Extract<Effect, { type: T }>[] {
  return fx.filter((f): f is Extract<Effect, { type: T }> => f.type === type);
}

/** Options of {@link Driver.submit}: the event's optional fields. */
export interface SubmitOptions {
  clientId?: ClientId;
  key?: string;
  jobId?: JobId;
  priority?: number;
  weight?: number;
}

export const C1 = asClientId("client-1");
export const C2 = asClientId("client-2");

/**
 * Drives a fresh core state with a virtual clock, records every event it feeds in
 * (so a run can be replayed), and offers one short helper per event type.
 */
export class Driver {
  readonly state: CoreState;
  readonly events: CoreEvent[] = [];
  nowMs = 1_000;
  private jobSeq = 0;

  /** `state`: drive an existing state (a restored one) instead of a fresh one. */
  constructor(config: Partial<CoreConfig> = {}, state?: CoreState) {
    this.state = state ?? createCoreState(config);
  }

  apply<E extends CoreEvent>(e: E): StepResult<OutcomeMap[E["type"]]> {
    this.events.push(e);
    return step(this.state, e);
  }

  advance(ms: number): this {
    this.nowMs += ms;
    return this;
  }

  job(id: JobId): JobRecord {
    const j = this.state.jobs.get(id);
    if (!j) throw new Error(`no job ${id}`);
    return j;
  }

  submit(spec: MatMulSpecInput, opts: SubmitOptions = {}) {
    const jobId = opts.jobId ?? asJobId(`job-${++this.jobSeq}`);
    return this.apply({
      type: "job-submitted",
      nowMs: this.nowMs,
      clientId: opts.clientId ?? C1,
      idempotencyKey: opts.key ?? "",
      spec,
      jobId,
      ...(opts.priority === undefined ? {} : { priority: opts.priority }),
      ...(opts.weight === undefined ? {} : { weight: opts.weight }),
    });
  }

  /** Submits and returns the new job id (throws if refused). */
  submitOk(spec: MatMulSpecInput, opts: SubmitOptions = {}): JobId {
    return unwrap(this.submit(spec, opts).outcome).jobId;
  }

  /** `peerAddress`: where the worker serves panels to peers; "" (the default) serves none. */
  register(id: string, kernels: readonly KernelOffer[] = [REF_A], identity?: string, peerAddress = "") {
    return this.apply({
      type: "worker-registered",
      nowMs: this.nowMs,
      workerId: asWorkerId(id),
      name: id,
      kernels,
      threads: 1,
      peerAddress,
      ...(identity === undefined ? {} : { identity }),
    });
  }

  acquire(id: string | WorkerId, maxShards: number) {
    return this.apply({ type: "shards-requested", nowMs: this.nowMs, workerId: asWorkerId(id), maxShards });
  }

  /** Acquires and returns the grants (throws if refused). */
  grants(id: string | WorkerId, maxShards: number): Grant[] {
    return unwrap(this.acquire(id, maxShards).outcome);
  }

  heartbeat(id: string | WorkerId, leases: readonly LeaseKey[]) {
    return this.apply({ type: "heartbeat-received", nowMs: this.nowMs, workerId: asWorkerId(id), leases });
  }

  /** Size in bytes of the correct result for `lease` (0 if the job is unknown). */
  sizeOf(lease: LeaseKey): number {
    const job = this.state.jobs.get(lease.jobId);
    return job ? tileSizeBytes(job.plan, lease.shardIndex) : 0;
  }

  complete(id: string | WorkerId, lease: LeaseKey, sizeBytes?: number) {
    return this.apply({
      type: "shard-completed",
      nowMs: this.nowMs,
      workerId: asWorkerId(id),
      lease,
      sizeBytes: sizeBytes ?? this.sizeOf(lease),
    });
  }

  reject(id: string | WorkerId, lease: LeaseKey, reason = "row 0 fails Freivalds' test") {
    return this.apply({ type: "shard-rejected", nowMs: this.nowMs, workerId: asWorkerId(id), lease, reason });
  }

  fail(id: string | WorkerId, lease: LeaseKey, opts: { error?: string; release?: boolean; jitter?: number } = {}) {
    return this.apply({
      type: "shard-failed",
      nowMs: this.nowMs,
      workerId: asWorkerId(id),
      lease,
      error: opts.error ?? "boom",
      release: opts.release ?? false,
      jitter: opts.jitter ?? 0,
    });
  }

  cancel(jobId: JobId, clientId: ClientId = C1, reason = "") {
    return this.apply({ type: "job-cancel-requested", nowMs: this.nowMs, clientId, jobId, reason });
  }

  tick(jitter = 0) {
    return this.apply({ type: "ticked", nowMs: this.nowMs, jitter });
  }

  finalized(jobId: JobId, resultBlobId = blobOf("c")) {
    return this.apply({ type: "result-finalized", nowMs: this.nowMs, jobId, resultBlobId });
  }

  resultFailed(jobId: JobId, message = "disk full") {
    return this.apply({ type: "result-failed", nowMs: this.nowMs, jobId, message });
  }

  resultBufferLost(jobId: JobId) {
    return this.apply({ type: "result-buffer-lost", nowMs: this.nowMs, jobId });
  }

  drain() {
    return this.apply({ type: "drain-started", nowMs: this.nowMs });
  }
}

/**
 * Replays an event list on a fresh state with `config`, returning each step's result.
 * Used by the determinism property; also returns the final state.
 */
export function replay(
  config: Partial<CoreConfig>,
  events: readonly CoreEvent[],
): { results: StepResult<unknown>[]; state: CoreState } {
  const state = createCoreState(config);
  return { results: events.map((e) => step(state, e)), state };
}
