import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  asClientId,
  asJobId,
  asWorkerId,
  type ClientId,
  type CoreConfig,
  type CoreEvent,
  type CoreState,
  checkCompletion,
  checkInvariants,
  type Effect,
  isTerminal,
  type JobId,
  jobOf,
  type LeaseKey,
  type OutcomeMap,
  quote,
  restoreCoreState,
  resultOf,
  type StepResult,
  sameIdentityPeers,
  step,
  tileBounds,
  tileSizeBytes,
  validateMatMulSpec,
  viewJob,
  type WorkerId,
} from "@dce/core";
import {
  BlobService,
  GetJobResponseSchema,
  JobService,
  type MatrixRef,
  MatrixRefSchema,
  type ShardLease,
  type ShardOutcome,
  ShardOutcomeSchema,
  WorkerService,
} from "@dce/proto";
import type { Logger } from "pino";
import { DEVELOPMENT_PRINCIPAL, principalKey } from "./auth.js";
import { BlobError, BlobStore } from "./blob-store.js";
import { DataDirSpace } from "./disk-space.js";
import { type CrashPoint, Journal, type RecoveryReport } from "./journal.js";
import type { StepObserver, VerificationEvent, VerificationObserver } from "./observability/events.js";
import { ResultSink } from "./result-sink.js";
import { DataDirError } from "./storage-errors.js";
import { stageTiles } from "./tile-staging.js";
import { type Verdict, Verifier } from "./verify/verifier.js";
import { fromLeaseRef, toConnectError, toJobStatus, toLeaseRef, toLeaseStatus, toShardLease } from "./wire.js";

/** Settings of a {@link Coordinator}, every default resolved. */
export interface CoordinatorConfig {
  /** Folder for blobs and result buffers. */
  readonly dataDir: string;
  /** Largest message read or written on any RPC, in bytes. */
  readonly maxMessageBytes: number;
  /** Longest long-poll (GetJob / AcquireShards wait_ms), in ms. */
  readonly maxLongPollMs: number;
  /** Most shards one AcquireShards may return. */
  readonly maxShardsPerAcquire: number;
  /** Uploads open at once. */
  readonly maxOpenUploads: number;
  /** An upload without a chunk for this long is dropped, in ms. */
  readonly uploadIdleMs: number;
  /** How often leases are checked for expiry, in ms. */
  readonly tickIntervalMs: number;
  /** How often the run-time invariant check runs, in ms (0 = never). */
  readonly invariantCheckIntervalMs: number;
  /** fsync journal commits and data files (default true; off only for tests that do not crash). */
  readonly fsync: boolean;
  /** Offer the blob store to workers and clients on this host (LocalStore in responses). */
  readonly localStore: boolean;
  /** Fault injection for crash-point tests only (see {@link CrashPoint}). */
  readonly crashAt?: CrashPoint;
  /** Called with each journal group commit's duration, for metrics. */
  readonly onJournalCommit?: (ms: number, records: number) => void;
  /** Checking workers' results before accepting them (Freivalds' test; see docs/verification.md). */
  readonly verify: {
    /** Check every result (default true). Off, results are accepted as they come. */
    readonly enabled: boolean;
    /** Verification threads. */
    readonly threads: number;
    /** Tile bytes waiting for a verification thread beyond which results are answered UNAVAILABLE. */
    readonly maxBacklogBytes: number;
  };
  /** Decision tunables passed to the core. */
  readonly core: CoreConfig;
}

/** What checking one result came to: a verdict, or the check could not run now. */
type CheckOutcome = Verdict | { ok: false; unavailable: true; reason: string };

/** Space kept free in every message for fields other than the data chunk. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/** The single client identity while authentication is off (development mode). */
const ANONYMOUS: ClientId = asClientId("anonymous");
/** Largest matrix accepted inline in SubmitJob, and largest C returned inline by GetJob. */
export const MAX_INLINE_BYTES = 1024 * 1024;
/** Input matrices up to this size travel inline with a grant (once per job per response). */
const GRANT_INLINE_MAX_BYTES = 64 * 1024;
/** The worker identity of a caller without a principal (routes served without the server's adapter). */
const ANONYMOUS_WORKER = "anonymous";

type Waiter = () => void;

/**
 * The coordinator: a thin shell around the pure core. It turns RPCs and timer ticks
 * into core events, carries out the effects the core decides (writing tiles, sealing
 * results, waking long-polls) and answers with the core's outcome.
 */
export class Coordinator {
  readonly config: CoordinatorConfig;
  readonly #log: Logger;
  readonly #state: CoreState;
  readonly #blobs: BlobStore;
  readonly #sink: ResultSink;
  readonly #journal: Journal;
  /** Delay before the next try of each result that could not be sealed (disk full), in ms. */
  readonly #sealRetryMs = new Map<string, number>();
  #stopping = false;
  readonly #jobWaiters = new Map<string, Set<Waiter>>();
  readonly #workerWaiters = new Set<Waiter>();
  /**
   * The certificate identity that registered each worker id. Every later call naming
   * that id must come from the same identity, so no worker can renew, complete or fail
   * another's leases (PERMISSION_DENIED). Pruned with the core's worker table.
   */
  readonly #workerIdentities = new Map<string, string>();
  #ticker: NodeJS.Timeout | undefined;
  #lastInvariantCheckMs = 0;
  #closed: Promise<void> | undefined;
  /** Epochs below this are covered by a durable `epochs-reserved` record. */
  #epochsReservedUpTo: number;
  readonly #observers = new Set<StepObserver>();
  readonly #verificationObservers = new Set<VerificationObserver>();
  readonly #verifier: Verifier | undefined;
  /** What recovery found when this coordinator opened its data dir. */
  readonly recovery: RecoveryReport & { jobs: number; activeJobs: number };

  private constructor(
    config: CoordinatorConfig,
    logger: Logger,
    parts: { state: CoreState; blobs: BlobStore; sink: ResultSink; journal: Journal; recovery: Coordinator["recovery"] },
  ) {
    this.config = config;
    this.#log = logger;
    this.#state = parts.state;
    this.#blobs = parts.blobs;
    this.#sink = parts.sink;
    this.#journal = parts.journal;
    this.recovery = parts.recovery;
    this.#epochsReservedUpTo = parts.state.nextEpoch;
    this.#verifier = config.verify.enabled ? new Verifier({ threads: config.verify.threads }) : undefined;
    this.#ticker = setInterval(() => this.#tick(), config.tickIntervalMs);
    this.#ticker.unref();
  }

  /**
   * Opens a coordinator on its data dir: recovers every acknowledged job from the
   * journal (accepted tiles stay accepted), reopens unfinished result buffers, and
   * reseals results whose last tile was accepted before a crash.
   */
  static async open(config: CoordinatorConfig, logger: Logger): Promise<Coordinator> {
    const space = new DataDirSpace(config.dataDir);
    const blobs = new BlobStore({
      dir: config.dataDir,
      maxBlobBytes: config.core.limits.maxMatrixBytes,
      maxOpenUploads: config.maxOpenUploads,
      uploadIdleMs: config.uploadIdleMs,
      space,
    });
    const sink = new ResultSink(config.dataDir, blobs, space);
    // Space that uploads in progress and running jobs' results will still take.
    space.promise(() => blobs.pendingUploadBytes() + sink.unwrittenBytes());
    const { journal, report } = await Journal.open({
      dir: join(config.dataDir, "journal"),
      fsync: config.fsync,
      beforeCommit: () => sink.syncDirty(),
      onSnapshotFailed: (e) => logger.error({ err: e }, "journal snapshot failed; the segments are kept until one succeeds"),
      ...(config.onJournalCommit ? { onCommit: config.onJournalCommit } : {}),
      ...(config.crashAt ? { crashAt: config.crashAt } : {}),
    });
    const restored = restoreCoreState(config.core, journal.model);
    const active = new Set<string>(restored.active);
    sink.retain(active);
    for (const id of restored.active) {
      const job = restored.state.jobs.get(id);
      if (!job) continue;
      if (job.doneCount > 0 && !sink.has(id)) {
        // Accepted tiles whose bytes are gone cannot be trusted: compute them again. The reset is
        // durable before the new buffer exists, so a second restart does not trust the old tiles in it.
        for (const fx of step(restored.state, { type: "result-buffer-lost", nowMs: Date.now(), jobId: id }).effects) {
          if (fx.type === "persist") journal.append(fx.record);
          else if (fx.type === "log") logger[fx.level](fx.fields, fx.msg);
          // job-changed, shards-available: nobody waits on a coordinator that is not open yet.
        }
        await journal.commit();
      }
      sink.prepare(id, job.plan.rows, job.plan.cols);
    }
    const c = new Coordinator(config, logger, {
      state: restored.state,
      blobs,
      sink,
      journal,
      recovery: { ...report, jobs: restored.state.jobs.size, activeJobs: restored.active.length },
    });
    logger.info({ ...c.recovery, ms: Math.round(report.ms) }, "recovered journal");
    for (const id of restored.toFinalize) {
      const job = restored.state.jobs.get(id);
      if (job?.finalizing) c.#finalize(id);
    }
    return c;
  }

  /** Largest data payload per chunk on this coordinator. */
  get maxChunkBytes(): number {
    return this.config.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
  }

  /** Registers the three services on a Connect router. */
  routes(router: ConnectRouter): void {
    router.service(JobService, this.#jobService());
    router.service(BlobService, this.#blobService());
    router.service(WorkerService, this.#workerService());
  }

  /** Stops granting work; pending long-polls return, and new pulls get UNAVAILABLE. */
  drain(): void {
    this.#apply({ type: "drain-started", nowMs: Date.now() });
    this.#wakeWorkers();
  }

  /** True once {@link drain} ran. */
  get draining(): boolean {
    return this.#state.draining;
  }

  /** Stops timers, commits the journal and closes files. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#ticker) clearInterval(this.#ticker);
      this.#ticker = undefined;
      await this.#verifier?.close().catch((e: unknown) => this.#log.warn({ err: e }, "verifier did not close cleanly"));
      this.#wakeWorkers();
      for (const set of this.#jobWaiters.values()) for (const w of set) w();
      try {
        await this.#journal.close();
      } finally {
        this.#sink.close();
        this.#blobs.close();
      }
    })();
    return this.#closed;
  }

  // -------------------------------------------------------------------------

  /**
   * Feeds one event to the core and carries out its effects. Facts the core marks
   * durable are journaled; `durable` resolves once they are on disk, and only then are
   * long-polls woken, so nobody observes a state that a crash could take back.
   * Handlers await `durable` before replying.
   */
  #apply<E extends CoreEvent>(event: E, tile?: Uint8Array): StepResult<OutcomeMap[E["type"]]> & { durable: Promise<void> } {
    const out = step(this.#state, event);
    const notify: Effect[] = [];
    let persisted = false;
    for (const fx of out.effects) {
      if (fx.type === "persist") {
        this.#journal.append(fx.record);
        persisted = true;
      } else if (fx.type === "job-changed" || fx.type === "shards-available") {
        notify.push(fx);
      } else {
        this.#execute(fx, tile);
      }
    }
    let durable: Promise<void>;
    if (persisted) {
      durable = this.#journal.commit().then(
        () => {
          for (const fx of notify) this.#execute(fx, undefined);
        },
        (e: unknown) => this.#diskFailed(e),
      );
    } else {
      for (const fx of notify) this.#execute(fx, undefined);
      // Even a step that wrote nothing may answer with state another step is still writing
      // (a retried submit, a grant under a reservation in flight): replies wait for every
      // commit in progress. Found by the simulation suite (test/sim, seeds 26 and 5495).
      durable = this.#journal.commit().catch((e: unknown) => this.#diskFailed(e));
    }
    // Steps whose caller does not wait (ticks, sealing) must not leave a rejection unhandled.
    durable.catch(() => {});
    for (const observer of this.#observers) {
      try {
        observer(event, out as StepResult<OutcomeMap[CoreEvent["type"]]>);
      } catch (e) {
        this.#log.error({ err: e }, "step observer failed");
      }
    }
    return { ...out, durable };
  }

  /**
   * Memory is ahead of disk: stop; a restart recovers from the journal, which holds
   * everything acknowledged and nothing of the failed write. The calls that waited for
   * it are answered first, with what happened (a full data dir is RESOURCE_EXHAUSTED,
   * naming it); covered by coordinator-disk.test.ts and test/integration/disk-full.test.ts.
   */
  #diskFailed(e: unknown): never {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#log.fatal({ err: e }, "journal write failed; stopping (restart recovers from the journal)");
      setTimeout(() => process.exit(70), 200);
    }
    if (e instanceof ConnectError) throw e;
    throw new ConnectError(
      "the journal could not be written; the coordinator restarts",
      Code.Unavailable,
      undefined,
      undefined,
      e,
    );
  }

  /**
   * Registers a read-only observer called after every core step with the event and
   * its outcome and effects (metrics, dashboards). It must not throw or mutate.
   * @returns a function that removes the observer.
   */
  observe(observer: StepObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /**
   * Registers a read-only observer called after every check of a worker's result (only
   * while verification is on). It must not throw.
   * @returns a function that removes the observer.
   */
  observeVerification(observer: VerificationObserver): () => void {
    this.#verificationObservers.add(observer);
    return () => this.#verificationObservers.delete(observer);
  }

  /** True when results are checked before they are accepted. */
  get verifying(): boolean {
    return this.#verifier !== undefined;
  }

  /** The core state, read-only, for snapshots (dashboards, metrics). Do not mutate. */
  get state(): Readonly<CoreState> {
    return this.#state;
  }

  /** Seals a job's result after the current reply is sent (it reads the whole file). */
  #finalize(jobId: JobId): void {
    setImmediate(() => {
      let out: { durable: Promise<void> } | undefined;
      try {
        const blobId = this.#sink.finalize(jobId);
        this.#sealRetryMs.delete(jobId);
        out = this.#apply({ type: "result-finalized", nowMs: Date.now(), jobId, resultBlobId: blobId });
        // The job's summary: with "job submitted" and "job started" it tells the story at info level.
        const job = this.#state.jobs.get(jobId);
        this.#log.info(
          {
            jobId,
            resultBlobId: blobId,
            ...(job
              ? {
                  shards: job.plan.shardCount,
                  retried: job.retriedCount,
                  kernel: job.kernel,
                  runMs: job.finishedAtMs - job.startedAtMs,
                  totalMs: job.finishedAtMs - job.createdAtMs,
                }
              : {}),
          },
          "job succeeded",
        );
      } catch (e) {
        if (e instanceof DataDirError) {
          // Not the job's fault: it stays running, its tiles kept, and sealing is tried again.
          const ms = Math.min(2 * (this.#sealRetryMs.get(jobId) ?? 500), 30_000);
          this.#sealRetryMs.set(jobId, ms);
          this.#log.error({ jobId, err: e.rawMessage, retryInMs: ms }, "result could not be sealed; trying again");
          setTimeout(() => {
            if (this.#closed === undefined && this.#state.jobs.get(jobId)?.finalizing) this.#finalize(jobId);
          }, ms).unref();
          return;
        }
        this.#log.error({ jobId, err: e }, "result could not be sealed");
        this.#apply({ type: "result-failed", nowMs: Date.now(), jobId, message: String(e) });
        return;
      }
      // The buffer goes only once the success is durable: a crash before that reseals it.
      out.durable.then(
        () => this.#sink.release(jobId),
        () => {},
      );
    });
  }

  /** Makes sure the next `count` epochs are covered by a durable reservation (epochs never go backwards). */
  async #reserveEpochs(count: number): Promise<void> {
    if (this.#state.nextEpoch + count <= this.#epochsReservedUpTo) {
      // Covered, but the reservation may still be on its way to disk: wait for it.
      await this.#journal.commit().catch((e: unknown) => this.#diskFailed(e));
      return;
    }
    const upTo = this.#state.nextEpoch + count + 100_000;
    this.#epochsReservedUpTo = upTo;
    this.#journal.append({ type: "epochs-reserved", upTo });
    await this.#journal.commit().catch((e: unknown) => this.#diskFailed(e));
  }

  #execute(fx: Effect, tile: Uint8Array | undefined): void {
    switch (fx.type) {
      case "persist":
        // Journaled by #apply, which also decides when replies and wake-ups may go out.
        return;
      case "prepare-result":
        try {
          this.#sink.prepare(fx.jobId, fx.rows, fx.cols);
        } catch (e) {
          // The job is acknowledged anyway; its first tile opens the buffer (see stageTiles).
          if (!(e instanceof DataDirError)) throw e;
          this.#log.error({ jobId: fx.jobId, err: e.rawMessage }, "result buffer not created yet");
        }
        return;
      case "write-tile":
        // Tiles are written by stageTiles before the step; only an unstaged one comes here.
        if (tile) this.#sink.writeTile(fx.jobId, fx.bounds, tile);
        return;
      case "finalize-result":
        this.#verifier?.forget(fx.jobId);
        this.#finalize(fx.jobId);
        return;
      case "discard-result":
        this.#verifier?.forget(fx.jobId);
        // The buffer goes once the job's end is durable: a crash before that finds the job
        // running with its accepted tiles (found by test/sim's poison mode).
        void this.#journal.commit().then(
          () => this.#sink.release(fx.jobId),
          () => {}, // #apply stops the process on a failed commit
        );
        return;
      case "job-changed": {
        const set = this.#jobWaiters.get(fx.jobId);
        if (set) {
          this.#jobWaiters.delete(fx.jobId);
          for (const w of set) w();
        }
        return;
      }
      case "shards-available":
        this.#wakeWorkers();
        return;
      case "log":
        this.#log[fx.level](fx.fields, fx.msg);
        return;
    }
  }

  #wakeWorkers(): void {
    const ws = [...this.#workerWaiters];
    this.#workerWaiters.clear();
    for (const w of ws) w();
  }

  #tick(): void {
    const nowMs = Date.now();
    this.#apply({ type: "ticked", nowMs, jitter: Math.random() });
    this.#blobs.expireIdle(nowMs);
    for (const id of this.#workerIdentities.keys()) {
      if (!this.#state.workers.has(asWorkerId(id))) this.#workerIdentities.delete(id);
    }
    const every = this.config.invariantCheckIntervalMs;
    if (every > 0 && nowMs - this.#lastInvariantCheckMs >= every) {
      this.#lastInvariantCheckMs = nowMs;
      const broken = checkInvariants(this.#state);
      // Loud on purpose: any line here is a bug in the core (pinned by core property tests).
      for (const msg of broken) this.#log.fatal({ invariant: msg }, "INVARIANT VIOLATED");
    }
  }

  /** Waits until `register` is woken, `ms` passes, or the call is aborted. */
  #wait(register: (w: Waiter) => () => void, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let unregister = () => {};
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        unregister();
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      unregister = register(done);
    });
  }

  #waitForJob(jobId: string, ms: number, signal: AbortSignal): Promise<void> {
    return this.#wait(
      (w) => {
        const set = this.#jobWaiters.get(jobId) ?? new Set<Waiter>();
        this.#jobWaiters.set(jobId, set);
        set.add(w);
        return () => {
          set.delete(w);
          if (set.size === 0 && this.#jobWaiters.get(jobId) === set) this.#jobWaiters.delete(jobId);
        };
      },
      ms,
      signal,
    );
  }

  #waitForShards(ms: number, signal: AbortSignal): Promise<void> {
    return this.#wait(
      (w) => {
        this.#workerWaiters.add(w);
        return () => this.#workerWaiters.delete(w);
      },
      ms,
      signal,
    );
  }

  /**
   * Stores a matrix sent inline in SubmitJob as a blob and names it by its SHA-256.
   * @throws ConnectError INVALID_ARGUMENT when it is too large, the wrong length, or
   *   contradicts a given blob id.
   */
  #storeInline(name: string, ref: MatrixRef): void {
    const bytes = ref.inlineData.byteLength;
    if (bytes > MAX_INLINE_BYTES) {
      throw new ConnectError(
        `matrix ${name}: inline_data is ${bytes} bytes, over the limit maxInlineBytes=${MAX_INLINE_BYTES}; upload it with BlobService`,
        Code.ResourceExhausted,
      );
    }
    const want = ref.rows * ref.cols * 8;
    if (bytes !== want) {
      throw new ConnectError(
        `matrix ${name}: inline_data is ${bytes} bytes but ${ref.rows}x${ref.cols} float64 needs ${want}`,
        Code.InvalidArgument,
      );
    }
    const blobId = this.#blobs.put(ref.inlineData);
    if (ref.blobId !== "" && ref.blobId !== blobId) {
      throw new ConnectError(`matrix ${name}: blob_id is not the SHA-256 of inline_data`, Code.InvalidArgument);
    }
    ref.blobId = blobId;
    ref.inlineData = new Uint8Array(0);
  }

  /**
   * Puts small input matrices inline in the first lease of each job in a grant, so a
   * worker computes a small shard without a ReadBlob round trip (it caches them).
   */
  #withInlineInputs(leases: ShardLease[]): ShardLease[] {
    const seen = new Set<string>();
    for (const lease of leases) {
      const t = lease.matmul;
      if (t?.a === undefined || t.b === undefined) continue;
      for (const ref of [t.a, t.b]) {
        const size = ref.rows * ref.cols * 8;
        if (size > GRANT_INLINE_MAX_BYTES || seen.has(ref.blobId)) continue;
        const r = this.#blobs.sizeOf(ref.blobId) === size ? this.#blobs.read(ref.blobId, 0, size) : undefined;
        if (r === undefined || r.data.byteLength !== size) continue;
        ref.inlineData = r.data;
        seen.add(ref.blobId);
      }
    }
    return leases;
  }

  /**
   * The client a job request acts as: the token's name. An admin acts on any job as
   * its owner (so it sees, downloads and cancels every job); anybody else's job stays
   * NOT_FOUND for a client, exactly like a job that does not exist.
   */
  #clientOf(ctx: HandlerContext, jobId?: string): ClientId {
    const p = ctx.values.get(principalKey);
    if (p?.clientId === undefined) return ANONYMOUS;
    if (jobId !== undefined && p.roles.has("admin")) {
      const job = this.#state.jobs.get(asJobId(jobId));
      if (job) return job.clientId;
    }
    return asClientId(p.clientId);
  }

  /** The certificate identity of a worker call. */
  #workerIdentityOf(ctx: HandlerContext): string {
    return ctx.values.get(principalKey)?.workerIdentity ?? ANONYMOUS_WORKER;
  }

  /** Refuses a call naming a worker id that another identity registered. */
  #checkWorkerOwner(ctx: HandlerContext, workerId: string): void {
    const owner = this.#workerIdentities.get(workerId);
    const caller = this.#workerIdentityOf(ctx);
    if (owner !== undefined && owner !== caller) {
      this.#log.warn({ workerId, owner, caller }, "worker call refused: the worker id belongs to another identity");
      throw new ConnectError(
        `worker ${quote(workerId, 64)} was registered by another identity; register your own worker`,
        Code.PermissionDenied,
      );
    }
  }

  /**
   * Checks a result before the core sees it: the verdict, at once for tiny tiles or as a
   * promise for big ones. Undefined when there is nothing to check: verification is off,
   * or the core will refuse the report anyway (stale, duplicate, revoked, wrong size), so
   * checking it would only cost time. A check that cannot run answers `unavailable`: the
   * worker retries, and nothing unchecked is accepted.
   */
  #verify(workerId: WorkerId, lease: LeaseKey, data: Uint8Array): CheckOutcome | undefined | Promise<CheckOutcome | undefined> {
    if (!this.#verifier) return undefined;
    const pre = checkCompletion(this.#state, workerId, lease, Date.now());
    if (!pre.ok) return undefined;
    const { job } = pre.value;
    if (data.byteLength !== tileSizeBytes(job.plan, lease.shardIndex)) return undefined;
    const bounds = tileBounds(job.plan, lease.shardIndex);
    const target = {
      id: job.id,
      plan: job.plan,
      aPath: this.#blobs.pathOf(job.spec.a.blobId),
      bPath: this.#blobs.pathOf(job.spec.b.blobId),
    };
    const failed = (e: unknown): CheckOutcome => {
      this.#log.error(
        { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, err: e },
        "result could not be verified; the worker will retry",
      );
      this.#notifyVerification({ jobId: job.id, shardIndex: lease.shardIndex, workerId, outcome: "error", ms: 0 });
      return { ok: false, unavailable: true, reason: "the result could not be verified right now; retry" };
    };
    try {
      const now = this.#verifier.checkNow(target, bounds, data);
      if (now !== undefined) return this.#checked(workerId, lease, now);
    } catch (e) {
      return failed(e);
    }
    if (this.#verifier.backlogBytes > this.config.verify.maxBacklogBytes) {
      // Back-pressure: the worker retries later (its heartbeats keep the lease alive meanwhile).
      return { ok: false, unavailable: true, reason: "the coordinator is busy verifying results; retry" };
    }
    return this.#verifier.check(target, bounds, data).then((v) => this.#checked(workerId, lease, v), failed);
  }

  /** Reports a verdict to the log and the verification observers. */
  #checked(workerId: WorkerId, lease: LeaseKey, verdict: Verdict): Verdict {
    const outcome = !verdict.ok ? "rejected" : verdict.rowsUnverifiable > 0 ? "unverifiable" : "passed";
    if (verdict.ok && verdict.rowsUnverifiable > 0) {
      this.#log.warn(
        { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, rowsUnverifiable: verdict.rowsUnverifiable },
        "result accepted with rows that cannot be verified (inputs with NaN, Inf or near-overflow values)",
      );
    }
    this.#notifyVerification({ jobId: lease.jobId, shardIndex: lease.shardIndex, workerId, outcome, ms: verdict.ms });
    return verdict;
  }

  #notifyVerification(v: VerificationEvent): void {
    for (const observer of this.#verificationObservers) {
      try {
        observer(v);
      } catch (e) {
        this.#log.error({ err: e }, "verification observer failed");
      }
    }
  }

  /**
   * The identity rejected results count against (besides the worker itself; see the core's
   * `quarantine.ts`): the CN of the worker's verified certificate, or, in development mode
   * (no certificates), the name it registers with — so one bad worker does not shut out
   * every anonymous one.
   */
  #quarantineIdentityOf(ctx: HandlerContext, name: string): string {
    const p = ctx.values.get(principalKey);
    return p !== undefined && p !== DEVELOPMENT_PRINCIPAL && p.workerIdentity !== undefined ? p.workerIdentity : name;
  }

  // -------------------------------------------------------------------------

  #jobService(): ServiceImpl<typeof JobService> {
    return {
      submitJob: async (req, ctx) => {
        if (req.idempotencyKey.length > 128) {
          throw new ConnectError("idempotency_key is longer than 128 characters", Code.InvalidArgument);
        }
        const m = req.matmul;
        if (!m) throw new ConnectError("matmul spec is required", Code.InvalidArgument);
        const spec = { a: m.a, b: m.b, tileRows: m.tileRows, tileCols: m.tileCols, kernel: m.kernel };
        // Limits first (pure, no I/O): a spec over a limit fails with that limit's name, whatever
        // blobs it names. Other problems are reported in their usual order, below and by the core.
        // An inline matrix gets its blob id once stored.
        const early = (r: MatrixRef | undefined) =>
          r && r.blobId === "" && r.inlineData.byteLength > 0 ? { rows: r.rows, cols: r.cols, blobId: "0".repeat(64) } : r;
        const valid = validateMatMulSpec({ ...spec, a: early(m.a), b: early(m.b) }, this.config.core.limits);
        if (!valid.ok && valid.error.kind === "over-limit") throw toConnectError(valid.error);
        // The data must be uploaded (or sent inline), and its length must match the declared shape.
        for (const [name, ref] of [
          ["A", m.a],
          ["B", m.b],
        ] as const) {
          if (!ref) continue; // reported by spec validation
          if (ref.inlineData.byteLength > 0) this.#storeInline(name, ref);
          const size = this.#blobs.sizeOf(ref.blobId);
          if (size === undefined) {
            throw new ConnectError(`matrix ${name}: blob ${quote(ref.blobId, 64)} not found; upload it first`, Code.NotFound);
          }
          const want = ref.rows * ref.cols * 8;
          if (size !== want) {
            throw new ConnectError(
              `matrix ${name}: data is ${size} bytes but ${ref.rows}x${ref.cols} float64 needs ${want}`,
              Code.InvalidArgument,
            );
          }
        }
        const clientId = this.#clientOf(ctx);
        // A new job's C must fit on disk (a retry of a submitted one is answered as before).
        // The key is the core's (state.ts): a client's idempotency key names at most one job.
        if (valid.ok && !this.#state.idempotency.has(`${clientId}\u0000${req.idempotencyKey}`)) {
          this.#sink.admit(valid.value.a.rows, valid.value.b.cols);
        }
        const out = this.#apply({
          type: "job-submitted",
          nowMs: Date.now(),
          clientId,
          idempotencyKey: req.idempotencyKey,
          spec,
          jobId: asJobId(randomUUID()),
        });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        const { jobId, created } = out.outcome.value;
        const job = this.#state.jobs.get(jobId);
        // Logged before the commit wakes the workers, so it is the job's first line
        // (a failed commit stops the process with a fatal line of its own).
        if (created && job) {
          this.#log.info(
            { jobId, rows: job.plan.rows, cols: job.plan.cols, inner: job.plan.inner, shards: job.plan.shardCount },
            "job submitted",
          );
        } else {
          this.#log.debug({ jobId }, "job submitted again (same idempotency key)");
        }
        await out.durable;
        return { jobId, created, ...(job ? { status: toJobStatus(viewJob(job)) } : {}) };
      },

      getJob: async (req, ctx) => {
        const clientId = this.#clientOf(ctx, req.jobId);
        const jobId = asJobId(req.jobId);
        const first = jobOf(this.#state, clientId, jobId);
        if (!first.ok) throw toConnectError(first.error);
        const waitMs = Math.min(req.waitMs, this.config.maxLongPollMs);
        const deadline = Date.now() + waitMs;
        let job = first.value;
        while (
          waitMs > 0 &&
          (req.untilTerminal || BigInt(job.version) <= req.afterVersion) &&
          !isTerminal(job.state) &&
          Date.now() < deadline &&
          !ctx.signal.aborted
        ) {
          await this.#waitForJob(jobId, deadline - Date.now(), ctx.signal);
          const again = jobOf(this.#state, clientId, jobId);
          if (!again.ok) throw toConnectError(again.error);
          job = again.value;
        }
        const res = create(GetJobResponseSchema, { status: toJobStatus(viewJob(job)) });
        const inlineMax = Math.min(req.inlineResultMaxBytes, MAX_INLINE_BYTES);
        if (job.state === "succeeded" && inlineMax > 0 && job.plan.rows * job.plan.cols * 8 <= inlineMax) {
          const r = resultOf(this.#state, clientId, jobId);
          if (r.ok) {
            const { blobId } = r.value;
            const size = job.plan.rows * job.plan.cols * 8;
            res.result = create(MatrixRefSchema, {
              rows: job.plan.rows,
              cols: job.plan.cols,
              blobId,
              inlineData: this.#blobs.read(blobId, 0, size).data,
            });
          }
        }
        return res;
      },

      getResult: (req, ctx) => {
        const r = resultOf(this.#state, this.#clientOf(ctx, req.jobId), asJobId(req.jobId));
        if (!r.ok) throw toConnectError(r.error);
        const { job, blobId } = r.value;
        return {
          result: { rows: job.plan.rows, cols: job.plan.cols, blobId },
          sizeBytes: BigInt(job.plan.rows * job.plan.cols * 8),
          ...this.#localStoreField(),
        };
      },

      cancelJob: async (req, ctx) => {
        const clientId = this.#clientOf(ctx, req.jobId);
        const out = this.#apply({
          type: "job-cancel-requested",
          nowMs: Date.now(),
          clientId,
          jobId: asJobId(req.jobId),
          reason: req.reason,
        });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        await out.durable;
        const job = jobOf(this.#state, clientId, out.outcome.value.jobId);
        if (!job.ok) throw toConnectError(job.error);
        return { status: toJobStatus(viewJob(job.value)) };
      },
    };
  }

  /** The blob store as peers on this host may reach it, when offered. */
  #localStore(): { dir: string; storeId: string } | undefined {
    return this.config.localStore ? { dir: this.#blobs.dir, storeId: this.#blobs.storeId } : undefined;
  }

  #localStoreField(): { localStore?: { dir: string; storeId: string } } {
    const local = this.#localStore();
    return local ? { localStore: local } : {};
  }

  #blobService(): ServiceImpl<typeof BlobService> {
    const toConnect = (e: unknown): unknown => {
      if (!(e instanceof BlobError)) return e;
      const code = {
        invalid: Code.InvalidArgument,
        "not-found": Code.NotFound,
        "over-limit": Code.ResourceExhausted,
        "out-of-order": Code.FailedPrecondition,
      }[e.kind];
      return new ConnectError(e.message, code);
    };
    const guard = <T>(fn: () => T): T => {
      try {
        return fn();
      } catch (e) {
        throw toConnect(e);
      }
    };
    return {
      beginUpload: (req) =>
        guard(() => {
          if (req.sizeBytes > BigInt(Number.MAX_SAFE_INTEGER)) {
            throw new ConnectError("size_bytes out of range", Code.InvalidArgument);
          }
          const r = this.#blobs.begin(Number(req.sizeBytes), req.sha256, Date.now());
          if (!r) return { uploadId: "", alreadyPresent: true, maxChunkBytes: this.maxChunkBytes };
          const local = this.#localStore();
          return {
            uploadId: r.uploadId,
            alreadyPresent: false,
            maxChunkBytes: this.maxChunkBytes,
            ...(local ? { localStore: local, localPath: this.#blobs.uploadPathOf(r.uploadId) } : {}),
          };
        }),
      uploadChunk: (req) =>
        guard(() => {
          if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConnectError("offset out of range", Code.InvalidArgument);
          const received = this.#blobs.append(req.uploadId, Number(req.offset), req.data, Date.now());
          return { receivedBytes: BigInt(received) };
        }),
      finishUpload: async (req) => {
        if (!req.writtenLocally) return guard(() => ({ blobId: this.#blobs.finish(req.uploadId) }));
        if (!this.config.localStore) {
          throw new ConnectError("this coordinator does not accept local uploads (--local-store off)", Code.FailedPrecondition);
        }
        try {
          return { blobId: await this.#blobs.finishLocal(req.uploadId) };
        } catch (e) {
          throw toConnect(e);
        }
      },
      readBlob: (req) =>
        guard(() => {
          if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConnectError("offset out of range", Code.InvalidArgument);
          const max = req.maxBytes === 0 ? this.maxChunkBytes : Math.min(req.maxBytes, this.maxChunkBytes);
          const r = this.#blobs.read(req.blobId, Number(req.offset), max);
          return { data: r.data, totalBytes: BigInt(r.totalBytes) };
        }),
    };
  }

  #workerService(): ServiceImpl<typeof WorkerService> {
    return {
      registerWorker: (req, ctx) => {
        if (req.kernels.length === 0) throw new ConnectError("a worker must offer at least one kernel", Code.InvalidArgument);
        if (req.kernels.length > 32 || req.name.length > 256) {
          throw new ConnectError("registration too large (at most 32 kernels, name of 256 characters)", Code.InvalidArgument);
        }
        const workerId = asWorkerId(randomUUID());
        const out = this.#apply({
          type: "worker-registered",
          nowMs: Date.now(),
          workerId,
          name: req.name,
          kernels: req.kernels.map((k) => ({ name: k.name, fingerprint: k.fingerprint })),
          threads: req.threads,
          identity: this.#quarantineIdentityOf(ctx, req.name),
        });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        const identity = this.#workerIdentityOf(ctx);
        this.#workerIdentities.set(workerId, identity);
        this.#log.info(
          { workerId, identity, name: req.name, kernels: req.kernels.map((k) => k.name), threads: req.threads },
          "worker registered",
        );
        // Live: heard from within a long poll and a lease TTL (the dashboard's "stale" bound).
        const liveSinceMs = Date.now() - this.config.maxLongPollMs - this.config.core.leaseTtlMs - 5_000;
        const peers = sameIdentityPeers(this.#state, workerId, liveSinceMs).slice(0, 8);
        if (peers.length > 0) {
          const others = peers.map((w) => ({ workerId: w.id, name: w.name }));
          const hint =
            "give each worker its own certificate (coordinator init-certs --workers N): wrong results from two workers of one identity quarantine all of them";
          this.#log.warn(
            { workerId, name: req.name, identity: peers[0]?.identity, others, hint },
            "two live workers present the same identity",
          );
        }
        const ttl = this.config.core.leaseTtlMs;
        return {
          workerId,
          leaseTtlMs: ttl,
          heartbeatIntervalMs: Math.max(50, Math.floor(ttl / 3)),
          maxMessageBytes: this.config.maxMessageBytes,
          ...this.#localStoreField(),
        };
      },

      acquireShards: async (req, ctx) => {
        if (req.maxShards < 1) throw new ConnectError("max_shards must be at least 1", Code.InvalidArgument);
        const maxShards = Math.min(req.maxShards, this.config.maxShardsPerAcquire);
        const waitMs = Math.min(req.waitMs, this.config.maxLongPollMs);
        const deadline = Date.now() + waitMs;
        const workerId = asWorkerId(req.workerId);
        this.#checkWorkerOwner(ctx, workerId);
        for (;;) {
          await this.#reserveEpochs(maxShards);
          const out = this.#apply({ type: "shards-requested", nowMs: Date.now(), workerId, maxShards });
          if (!out.outcome.ok) throw toConnectError(out.outcome.error);
          await out.durable;
          const grants = out.outcome.value;
          if (grants.length > 0 || Date.now() >= deadline || ctx.signal.aborted) {
            for (const g of grants) {
              this.#log.debug(
                { jobId: g.lease.jobId, shard: g.lease.shardIndex, epoch: g.lease.epoch, workerId },
                "lease granted",
              );
            }
            return { leases: this.#withInlineInputs(grants.map(toShardLease)) };
          }
          await this.#waitForShards(deadline - Date.now(), ctx.signal);
        }
      },

      heartbeat: (req, ctx) => {
        this.#checkWorkerOwner(ctx, req.workerId);
        const out = this.#apply({
          type: "heartbeat-received",
          nowMs: Date.now(),
          workerId: asWorkerId(req.workerId),
          leases: req.leases.map(fromLeaseRef),
        });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        return { leases: out.outcome.value.map(toLeaseStatus) };
      },

      completeShards: async (req, ctx) => {
        const workerId = asWorkerId(req.workerId);
        this.#checkWorkerOwner(ctx, workerId);
        if (!this.#state.workers.has(workerId)) {
          throw new ConnectError(`worker ${quote(req.workerId, 64)} is not registered (register again)`, Code.NotFound);
        }
        type Item = { lease: LeaseKey; data?: Uint8Array; early?: ShardOutcome; verdict?: CheckOutcome | undefined };
        const items: Item[] = req.results.map((r) => {
          const lease = fromLeaseRef(r.lease);
          if (r.payload.case === "data") return { lease, data: r.payload.value };
          if (r.payload.case === "blobId") {
            const size = this.#blobs.sizeOf(r.payload.value);
            if (size === undefined) {
              return {
                lease,
                early: create(ShardOutcomeSchema, {
                  lease: toLeaseRef(lease),
                  code: Code.NotFound,
                  message: "result blob not found",
                }),
              };
            }
            return { lease, data: this.#blobs.read(r.payload.value, 0, size).data };
          }
          return {
            lease,
            early: create(ShardOutcomeSchema, {
              lease: toLeaseRef(lease),
              code: Code.InvalidArgument,
              message: "result has no payload",
            }),
          };
        });
        // Check every result first (tiny ones at once, big ones in the verification threads), then
        // hand them all to the core in one go, so one group commit still covers the whole report.
        const waiting: Promise<void>[] = [];
        for (const item of items) {
          if (item.data === undefined) continue;
          const v = this.#verify(workerId, item.lease, item.data);
          if (v instanceof Promise) {
            waiting.push(
              v.then((x) => {
                item.verdict = x;
              }),
            );
          } else item.verdict = v;
        }
        if (waiting.length > 0) await Promise.all(waiting);
        // Tile bytes go to the result buffers before the core accepts them (see stageTiles).
        const nowMs = Date.now();
        const stagedAll = stageTiles(this.#state, this.#sink, workerId, items, nowMs);
        const durables: Promise<void>[] = [];
        let unverified: string | undefined;
        let diskError: DataDirError | undefined;
        const outcomes = items.map(({ lease, data, early, verdict }, i) => {
          if (early !== undefined || data === undefined) return early as ShardOutcome;
          const staged = stagedAll[i];
          if (staged instanceof DataDirError) {
            diskError ??= staged;
            return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: staged.code, message: staged.rawMessage });
          }
          if (verdict !== undefined && !verdict.ok) {
            if ("unavailable" in verdict) {
              unverified = verdict.reason;
              return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: Code.Unavailable, message: verdict.reason });
            }
            const out = this.#apply({ type: "shard-rejected", nowMs: Date.now(), workerId, lease, reason: verdict.reason });
            durables.push(out.durable);
            const ce = toConnectError(
              out.outcome.ok ? { kind: "result-rejected", ...lease, message: verdict.reason } : out.outcome.error,
            );
            return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: ce.code, message: ce.rawMessage });
          }
          const out = this.#apply(
            { type: "shard-completed", nowMs, workerId, lease, sizeBytes: data.byteLength },
            staged === "written" ? undefined : data,
          );
          durables.push(out.durable);
          if (out.outcome.ok) {
            this.#log.debug({ jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId }, "shard accepted");
            return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: 0 });
          }
          const ce = toConnectError(out.outcome.error);
          this.#log.info(
            {
              jobId: lease.jobId,
              shard: lease.shardIndex,
              epoch: lease.epoch,
              workerId,
              code: Code[ce.code],
              reason: ce.rawMessage,
            },
            "shard result rejected",
          );
          return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: ce.code, message: ce.rawMessage });
        });
        // One group commit covers every accepted tile of this report (tile bytes first, then records).
        await Promise.all(durables);
        // As below: the worker retries the call (holding its leases) until the disk has room.
        if (diskError !== undefined) {
          this.#log.warn({ workerId, err: diskError.rawMessage }, "tiles refused by the disk; the worker retries");
          throw diskError;
        }
        // The whole call fails so the worker retries it (the others in it are then ALREADY_EXISTS).
        if (unverified !== undefined) throw new ConnectError(unverified, Code.Unavailable);
        return { outcomes };
      },

      failShard: async (req, ctx) => {
        this.#checkWorkerOwner(ctx, req.workerId);
        const out = this.#apply({
          type: "shard-failed",
          nowMs: Date.now(),
          workerId: asWorkerId(req.workerId),
          lease: fromLeaseRef(req.lease),
          error: req.error,
          release: req.release,
          jitter: Math.random(),
        });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        await out.durable;
        return {};
      },
    };
  }
}
