// Test-only: drives the pure core directly and calls observers like Coordinator does.
// Not part of the build (tsconfig.build.json excludes src/test-support).
import {
  asClientId,
  asJobId,
  asWorkerId,
  type CoreConfig,
  type CoreEvent,
  type CoreState,
  createCoreState,
  type Grant,
  type JobId,
  type OutcomeMap,
  type StepResult,
  step,
  type WorkerId,
} from "@dce/core";
import type { StepObserver, VerificationEvent, VerificationObserver } from "../observability/events.js";
import type { ObservableCoordinator } from "../observability/source.js";

const BLOB_A = "a".repeat(64);
const BLOB_B = "b".repeat(64);

/** A core state plus observers and one helper per event, on a virtual clock. */
export class FakeCoordinator implements ObservableCoordinator {
  readonly state: CoreState;
  nowMs = 1_000_000;
  readonly #observers = new Set<StepObserver>();
  readonly #checkObservers = new Set<VerificationObserver>();
  #seq = 0;

  constructor(config: Partial<CoreConfig> = {}) {
    this.state = createCoreState({ leaseTtlMs: 1_000, retryBaseMs: 10, retryMaxMs: 10, maxAttempts: 3, ...config });
  }

  observe(observer: StepObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  observeVerification(observer: VerificationObserver): () => void {
    this.#checkObservers.add(observer);
    return () => this.#checkObservers.delete(observer);
  }

  /** Reports a result check to the verification observers, as the coordinator does. */
  verified(v: VerificationEvent): void {
    for (const o of this.#checkObservers) o(v);
  }

  apply<E extends CoreEvent>(event: E): StepResult<OutcomeMap[E["type"]]> {
    const out = step(this.state, event);
    for (const o of this.#observers) o(event, out as StepResult<OutcomeMap[CoreEvent["type"]]>);
    return out;
  }

  submit(m: number, k: number, n: number, tile: number): JobId {
    const jobId = asJobId(`job-${++this.#seq}`);
    const out = this.apply({
      type: "job-submitted",
      nowMs: this.nowMs,
      clientId: asClientId("c"),
      idempotencyKey: "",
      spec: {
        a: { rows: m, cols: k, blobId: BLOB_A },
        b: { rows: k, cols: n, blobId: BLOB_B },
        tileRows: tile,
        tileCols: tile,
        kernel: "reference",
      },
      jobId,
    });
    if (!out.outcome.ok) throw new Error(out.outcome.error.kind);
    return jobId;
  }

  register(name: string, threads = 1, identity?: string): WorkerId {
    const workerId = asWorkerId(`worker-${++this.#seq}`);
    this.apply({
      type: "worker-registered",
      nowMs: this.nowMs,
      workerId,
      name,
      kernels: [{ name: "reference", fingerprint: "fp" }],
      threads,
      ...(identity === undefined ? {} : { identity }),
    });
    return workerId;
  }

  acquire(workerId: WorkerId, maxShards: number): Grant[] {
    const out = this.apply({ type: "shards-requested", nowMs: this.nowMs, workerId, maxShards });
    if (!out.outcome.ok) throw new Error(out.outcome.error.kind);
    return out.outcome.value;
  }

  complete(workerId: WorkerId, g: Grant): OutcomeMap["shard-completed"] {
    const b = g.bounds;
    const sizeBytes = (b.rowEnd - b.rowStart) * (b.colEnd - b.colStart) * 8;
    return this.apply({ type: "shard-completed", nowMs: this.nowMs, workerId, lease: g.lease, sizeBytes }).outcome;
  }

  /** The shell found `g`'s result wrong. */
  reject(workerId: WorkerId, g: Grant): OutcomeMap["shard-rejected"] {
    return this.apply({
      type: "shard-rejected",
      nowMs: this.nowMs,
      workerId,
      lease: g.lease,
      reason: "row 0 fails Freivalds' test",
    }).outcome;
  }

  fail(workerId: WorkerId, g: Grant, release = false): OutcomeMap["shard-failed"] {
    return this.apply({
      type: "shard-failed",
      nowMs: this.nowMs,
      workerId,
      lease: g.lease,
      error: "boom",
      release,
      jitter: 0,
    }).outcome;
  }

  tick(advanceMs: number): number {
    this.nowMs += advanceMs;
    const out = this.apply({ type: "ticked", nowMs: this.nowMs, jitter: 0 });
    return out.outcome.ok ? out.outcome.value.expired : 0;
  }

  finalize(jobId: JobId): void {
    this.apply({ type: "result-finalized", nowMs: this.nowMs, jobId, resultBlobId: "c".repeat(64) });
  }

  cancel(jobId: JobId): void {
    this.apply({ type: "job-cancel-requested", nowMs: this.nowMs, clientId: asClientId("c"), jobId, reason: "test" });
  }
}
