import { randomUUID } from "node:crypto";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  asJobId,
  asWorkerId,
  type CoreEvent,
  type CoreState,
  type Effect,
  type OutcomeMap,
  type StepResult,
  step,
} from "@dce/core";
import { BlobService, ErrorReason, JobService, WorkerService } from "@dce/proto";
import type { Logger } from "pino";
import { type CoordinatorConfig, MESSAGE_OVERHEAD_BYTES } from "./config.js";
import { createDiskStorage } from "./disk-storage.js";
import { dceError } from "./errors.js";
import type { RecoveryReport } from "./journal.js";
import type { StepObserver, VerificationObserver } from "./observability/events.js";
import { type Clock, every, systemClock } from "./ports/clock.js";
import type { CoordinatorPorts, FatalHandler } from "./ports/coordinator-ports.js";
import type { BlobStorePort, FreeSpacePort, JournalPort, ResultSinkPort } from "./ports/storage.js";
import { createBlobService } from "./services/blob-service.js";
import { createJobService } from "./services/job-service.js";
import { createWorkerService } from "./services/worker-service.js";
import { type BlobCollector, createBlobCollector } from "./shell/blob-gc.js";
import type { Applied, ShellContext } from "./shell/context.js";
import { executeEffect } from "./shell/effects.js";
import { EpochReservations } from "./shell/epoch-reservations.js";
import { InvariantWatch } from "./shell/invariant-watch.js";
import { PanelHashes } from "./shell/panel-hashes.js";
import { recoverState } from "./shell/recovery.js";
import { ResultFinalizer } from "./shell/result-finalizer.js";
import { ResultVerification } from "./shell/result-verification.js";
import { Waiters } from "./shell/waiters.js";
import { WorkerIdentities } from "./shell/worker-identity.js";
import { StagedTiles } from "./staged-tiles.js";

export type { CoordinatorConfig } from "./config.js";
export { MESSAGE_OVERHEAD_BYTES } from "./config.js";
export type { StorageStats } from "./shell/blob-gc.js";

/** What a coordinator was opened with, besides its settings and logger. */
interface CoordinatorParts {
  readonly state: CoreState;
  readonly blobs: BlobStorePort;
  readonly sink: ResultSinkPort;
  readonly journal: JournalPort;
  readonly clock: Clock;
  readonly onFatal: FatalHandler;
  readonly random: () => number;
  readonly newId: () => string;
  readonly verifyRandomWords: ((count: number) => Uint32Array) | undefined;
  readonly step: typeof step;
  readonly recovery: Coordinator["recovery"];
  readonly space: FreeSpacePort | undefined;
  readonly stagedTiles: StagedTiles | undefined;
}

/**
 * The coordinator: a thin shell around the pure core. It turns RPCs (the services in
 * `services/`) and timer ticks into core events, carries out the effects the core
 * decides (writing tiles, sealing results, waking long-polls) and answers with the
 * core's outcome. It reaches the world only through its ports (`ports/`), so the same
 * shell runs on disk in the `coordinator` bin and in memory on a virtual clock.
 */
export class Coordinator {
  readonly config: CoordinatorConfig;
  /** What recovery found when this coordinator opened its journal. */
  readonly recovery: RecoveryReport & { jobs: number; activeJobs: number };
  /** The blob garbage collector: `requestPass()` after jobs leave the state; `stats()` for metrics. */
  readonly gc: BlobCollector;
  readonly #log: Logger;
  readonly #state: CoreState;
  readonly #blobs: BlobStorePort;
  readonly #sink: ResultSinkPort;
  readonly #journal: JournalPort;
  readonly #clock: Clock;
  readonly #onFatal: FatalHandler;
  readonly #step: typeof step;
  readonly #waiters: Waiters;
  readonly #identities: WorkerIdentities;
  readonly #verification: ResultVerification;
  readonly #finalizer: ResultFinalizer;
  readonly #shell: ShellContext;
  readonly #observers = new Set<StepObserver>();
  #stopping = false;
  #stopTicker: (() => void) | undefined;
  readonly #invariants: InvariantWatch;
  #closed: Promise<void> | undefined;

  private constructor(config: CoordinatorConfig, logger: Logger, parts: CoordinatorParts) {
    this.config = config;
    this.#log = logger;
    this.#state = parts.state;
    this.#blobs = parts.blobs;
    this.#sink = parts.sink;
    this.#journal = parts.journal;
    this.#clock = parts.clock;
    this.#onFatal = parts.onFatal;
    this.#step = parts.step;
    this.recovery = parts.recovery;
    this.#waiters = new Waiters(parts.clock);
    this.#invariants = new InvariantWatch(config.invariantCheckIntervalMs, logger);
    this.#identities = new WorkerIdentities(logger);
    const { state, blobs, clock, sink } = parts;
    this.#verification = new ResultVerification({
      config,
      log: logger,
      state,
      blobs,
      clock,
      randomWords: parts.verifyRandomWords,
    });
    const apply = <E extends CoreEvent>(event: E, tile?: Uint8Array) => this.#apply(event, tile);
    this.#finalizer = new ResultFinalizer({
      log: logger,
      clock,
      sink,
      state,
      apply,
      isClosed: () => this.#closed !== undefined,
      ...(config.sealAtOnceMaxBytes === undefined ? {} : { sealAtOnceMaxBytes: config.sealAtOnceMaxBytes }),
    });
    const epochs = new EpochReservations(parts.journal, parts.state, (e) => this.#diskFailed(e));
    this.#shell = {
      config,
      log: logger,
      clock: parts.clock,
      state: parts.state,
      blobs: parts.blobs,
      sink: parts.sink,
      waiters: this.#waiters,
      identities: this.#identities,
      verification: this.#verification,
      panelHashes: new PanelHashes({ blobs, jobState: (jobId) => state.jobs.get(asJobId(jobId))?.state }),
      maxChunkBytes: this.maxChunkBytes,
      apply,
      reserveEpochs: (count) => epochs.reserve(count),
      journalSettled: () => parts.journal.settled,
      settle: () =>
        parts.journal.settled ? Promise.resolve() : parts.journal.commit().catch((e: unknown) => this.#diskFailed(e)),
      newId: parts.newId,
      random: parts.random,
      space: parts.space,
      stagedTiles: parts.stagedTiles,
    };
    this.gc = createBlobCollector(config.gc, { ...this.#shell, commit: () => parts.journal.commit() });
    this.#stopTicker = every(parts.clock, config.tickIntervalMs, () => this.#tick());
  }

  /**
   * Opens a coordinator on its storage: recovers every acknowledged job from the
   * journal (accepted tiles stay accepted), reopens unfinished result buffers, and
   * reseals results whose last tile was accepted before a crash.
   * @param ports where it reaches the world; by default files in `config.dataDir` and the
   *   wall clock (see {@link CoordinatorPorts}).
   */
  static async open(config: CoordinatorConfig, logger: Logger, ports: CoordinatorPorts = {}): Promise<Coordinator> {
    const clock = ports.clock ?? systemClock;
    const { blobs, sink, openJournal, space, stagingDir } = ports.storage ?? createDiskStorage(config, logger, ports);
    const { journal, report } = await openJournal();
    const restored = await recoverState(config.core, journal, sink, clock, logger);
    const c = new Coordinator(config, logger, {
      state: restored.state,
      blobs,
      sink,
      journal,
      clock,
      onFatal: ports.onFatal ?? (() => {}),
      random: ports.random ?? Math.random,
      newId: ports.newId ?? randomUUID,
      verifyRandomWords: ports.verifyRandomWords,
      step: ports.step ?? step,
      space,
      // Offered with the local store: workers on this host then write result tiles there.
      stagedTiles:
        config.localStore && stagingDir !== undefined
          ? StagedTiles.open({ dir: stagingDir, state: restored.state, clock, log: logger, leaseTtlMs: config.core.leaseTtlMs })
          : undefined,
      recovery: { ...report, jobs: restored.state.jobs.size, activeJobs: restored.active.length },
    });
    logger.info({ ...c.recovery, ms: Math.round(report.ms) }, "recovered journal");
    for (const id of restored.toFinalize) {
      const job = restored.state.jobs.get(id);
      if (job?.finalizing) c.#finalizer.finalize(id);
    }
    return c;
  }

  /** Largest data payload per chunk on this coordinator. */
  get maxChunkBytes(): number {
    return this.config.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
  }

  /** Registers the three services on a Connect router. */
  routes(router: ConnectRouter): void {
    router.service(JobService, createJobService(this.#shell));
    router.service(BlobService, createBlobService(this.#shell));
    router.service(WorkerService, createWorkerService(this.#shell));
  }

  /** Stops granting work; pending long-polls return, and new pulls get UNAVAILABLE. */
  drain(): void {
    this.#apply({ type: "drain-started", nowMs: this.#clock.nowMs() });
    this.#waiters.wakeWorkers();
  }

  /** True once {@link drain} ran. */
  get draining(): boolean {
    return this.#state.draining;
  }

  /** Stops timers, commits the journal and closes files. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.gc.close();
      this.#shell.stagedTiles?.close();
      this.#stopTicker?.();
      this.#stopTicker = undefined;
      await this.#verification.close();
      this.#waiters.wakeAll();
      try {
        await this.#journal.close();
      } finally {
        this.#sink.close();
        this.#blobs.close();
      }
    })();
    return this.#closed;
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
    return this.#verification.observe(observer);
  }

  /** True when results are checked before they are accepted. */
  get verifying(): boolean {
    return this.#verification.enabled;
  }

  /** The core state, read-only, for snapshots (dashboards, metrics). Do not mutate. */
  get state(): Readonly<CoreState> {
    return this.#state;
  }

  // -------------------------------------------------------------------------

  /**
   * Feeds one event to the core and carries out its effects. Facts the core marks
   * durable are journaled; `durable` resolves once they are on disk, and only then are
   * long-polls woken, so nobody observes a state that a crash could take back.
   * Handlers await `durable` before replying.
   */
  #apply<E extends CoreEvent>(event: E, tile?: Uint8Array): Applied<E> {
    const out = this.#step(this.#state, event);
    const notify: Effect[] = [];
    const deleted: Extract<Effect, { type: "job-deleted" }>[] = [];
    let persisted = false;
    for (const fx of out.effects) {
      if (fx.type === "persist") {
        this.#journal.append(fx.record);
        persisted = true;
      } else if (fx.type === "job-changed" || fx.type === "shards-available") {
        notify.push(fx);
      } else if (fx.type === "job-deleted") {
        this.#verification.forget(fx.jobId);
        this.gc.release(fx.blobIds);
        deleted.push(fx);
      } else {
        this.#execute(fx, tile);
      }
    }
    let durable: Promise<void>;
    if (persisted) {
      durable = this.#journal.commit().then(
        () => {
          for (const fx of notify) this.#execute(fx, undefined);
          // Only once the deletion is durable: a crash before that finds the jobs (and their blobs) still there.
          if (deleted.length > 0) this.#onJobsDeleted(deleted);
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
   * naming it), and the fatal handler runs once (the bin exits 70); covered by
   * coordinator-disk.test.ts and test/integration/disk-full.test.ts.
   */
  #diskFailed(e: unknown): never {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#log.fatal({ err: e }, "journal write failed; stopping (restart recovers from the journal)");
      this.#onFatal(e);
    }
    if (e instanceof ConnectError) throw e;
    throw dceError(
      Code.Unavailable,
      ErrorReason.JOURNAL_FAILED,
      "the journal could not be written; the coordinator restarts",
      undefined,
      e,
    );
  }

  #execute(fx: Effect, tile: Uint8Array | undefined): void {
    executeEffect(fx, tile, {
      log: this.#log,
      sink: this.#sink,
      journal: this.#journal,
      waiters: this.#waiters,
      verification: this.#verification,
      finalizer: this.#finalizer,
    });
  }

  /**
   * Jobs were deleted (by their clients or by retention) and their deletion is durable:
   * the blobs they named (`blobIds`: inputs and result) may have no job left referencing
   * them. This is the one place a blob garbage-collection pass is asked for; the job's
   * result buffer is already gone (`discard-result`, or released once its result was sealed).
   */
  #onJobsDeleted(deleted: readonly { jobId: string; blobIds: readonly string[] }[]): void {
    const blobIds = deleted.flatMap((d) => d.blobIds);
    this.#log.debug({ jobs: deleted.length, blobIds: blobIds.length }, "jobs deleted");
    this.gc.requestPass().catch((e: unknown) => this.#log.error({ err: e }, "blob collection failed"));
  }

  #tick(): void {
    const nowMs = this.#clock.nowMs();
    this.#apply({ type: "ticked", nowMs, jitter: this.#shell.random() });
    this.#blobs.expireIdle(nowMs);
    this.#identities.prune((id) => this.#state.workers.has(asWorkerId(id)));
    this.#invariants.maybeCheck(this.#state, nowMs);
  }
}
