import { isMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type CoreError,
  type CoreEvent,
  isTerminal,
  type JobRecord,
  type JobStateName,
  type OutcomeMap,
  type StepResult,
} from "@dce/core";
import {
  AcquireShardsResponseSchema,
  GetJobResponseSchema,
  ReadBlobResponseSchema,
  SubmitJobRequestSchema,
  UploadChunkRequestSchema,
} from "@dce/proto";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ObservableCoordinator } from "./source.js";

/** Options of {@link createCoordinatorMetrics}. */
export interface CoordinatorMetricsOptions {
  /** Also export the Node process metrics (`process_*`, `nodejs_*`) of prom-client. Default true. */
  processMetrics?: boolean;
}

/**
 * Called by the durable journal after each write (a group commit): how long it took,
 * in ms, and how many records it made durable (optional).
 */
export type JournalWriteObserver = (ms: number, records?: number) => void;

/**
 * The Prometheus metrics of one coordinator, in a registry of its own (never the
 * global one), so several coordinators can run in one process.
 *
 * Job, shard, lease and worker metrics are derived from the coordinator's step hook
 * and, at scrape time, from its read-only core state: see {@link CoordinatorMetrics.attach}.
 * RPC metrics come from {@link CoordinatorMetrics.interceptor}. The metric names are
 * listed in `docs/operations.md`.
 */
export interface CoordinatorMetrics {
  /** The registry holding every metric of this coordinator. */
  readonly registry: Registry;
  /** Content type of {@link CoordinatorMetrics.scrape}'s text (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /** Renders every metric in the Prometheus text exposition format. */
  scrape(): Promise<string>;
  /**
   * Starts deriving metrics from `source` (a {@link Coordinator}): registers a step
   * observer and reads `source.state` at scrape time. One source at a time; attaching
   * again replaces the previous one. Jobs that already exist are taken as a baseline
   * and are not counted again (for a coordinator restored from its journal).
   * @returns a function that detaches (idempotent).
   */
  attach(source: ObservableCoordinator): () => void;
  /**
   * Records one journal write: its duration in ms into the `dce_journal_write_seconds`
   * histogram and, when given, its record count into `dce_journal_records_total`.
   * A bound function: pass it as a callback, e.g. `{ onJournalCommit: metrics.observeJournalWriteMs }`.
   * Negative or non-finite values are ignored.
   */
  readonly observeJournalWriteMs: JournalWriteObserver;
  /**
   * A Connect server interceptor counting RPCs and timing them by service, method and
   * code, and counting the data bytes of `UploadChunk` (in) and `ReadBlob` (out). Put
   * it before the others (only the error boundary, which keeps codes, goes first) so
   * it sees the final code of every call.
   */
  readonly interceptor: Interceptor;
}

/**
 * How a lease ended, as the `reason` label of `dce_leases_ended_total`: its result was
 * accepted (`completed`), the other execution of a straggler won (`superseded`), it
 * expired, its worker reported a failure or handed it back (`released`), or its job
 * ended under it (`revoked`: cancelled or failed).
 */
export type LeaseEndReason = "completed" | "superseded" | "expired" | "failed" | "released" | "revoked";

/**
 * Why a completion was refused, as the `reason` label of `dce_shard_completions_rejected_total`;
 * `corrupt`: the result failed verification.
 */
export type RejectionReason = "stale" | "duplicate" | "revoked" | "corrupt" | "other";

/** Maps a core error kind from `shard-completed` to its {@link RejectionReason}. */
export function rejectionReason(kind: CoreError["kind"]): RejectionReason {
  switch (kind) {
    case "stale-fence":
    case "lease-lost":
      return "stale";
    case "already-completed":
      return "duplicate";
    case "lease-revoked":
      return "revoked";
    case "result-rejected":
      return "corrupt";
    default:
      return "other";
  }
}

/** Lower-case snake name of a Connect code (`not_found`), or `ok` for 0, as used in the `code` label. */
export function codeLabel(code: Code | 0): string {
  if (code === 0) return "ok";
  const name = Code[code];
  return name ? name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() : String(code);
}

const JOB_STATES: readonly JobStateName[] = ["queued", "running", "succeeded", "failed", "cancelled"];
const REASONS: readonly RejectionReason[] = ["stale", "duplicate", "revoked", "corrupt", "other"];
const VERIFY_OUTCOMES = ["passed", "unverifiable", "rejected", "error"] as const;
const VERIFY_BUCKETS_S = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LEASE_ENDS: readonly LeaseEndReason[] = ["completed", "superseded", "expired", "failed", "released", "revoked"];
// Long-polls (GetJob, AcquireShards) hold a call up to 30 s, so the buckets reach past it.
const RPC_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const JOURNAL_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** What the observer remembers of a job to turn state changes into counter increments. */
interface JobMark {
  state: JobStateName;
  retried: number;
}

/**
 * Creates the metrics of one coordinator. Nothing is observed until
 * {@link CoordinatorMetrics.attach}; the RPC interceptor works from the start.
 */
export function createCoordinatorMetrics(options: CoordinatorMetricsOptions = {}): CoordinatorMetrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  let source: ObservableCoordinator | undefined;
  let detach: (() => void) | undefined;
  const state = () => source?.state;
  const registers = [registry];

  // --- gauges read from the core state at scrape time -----------------------------
  new Gauge({
    name: "dce_jobs",
    help: "Jobs known to the coordinator, by state.",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const counts = new Map<JobStateName, number>(JOB_STATES.map((s) => [s, 0]));
      for (const job of state()?.jobs.values() ?? []) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
      for (const [s, n] of counts) this.set({ state: s }, n);
    },
  });
  new Gauge({
    name: "dce_shards",
    help: "Shards of queued or running jobs, by shard state (queued = waiting for a lease, including retries).",
    labelNames: ["state"] as const,
    registers,
    collect() {
      let queued = 0;
      let leased = 0;
      let done = 0;
      for (const job of state()?.jobs.values() ?? []) {
        if (isTerminal(job.state)) continue;
        leased += job.leasedCount;
        done += job.doneCount;
        queued += job.plan.shardCount - job.doneCount - job.leasedCount;
      }
      this.set({ state: "queued" }, queued);
      this.set({ state: "leased" }, leased);
      this.set({ state: "done" }, done);
    },
  });
  new Gauge({
    name: "dce_shards_awaiting_retry",
    help: "Shards of running jobs put back for another execution and not leased yet (retry backoff).",
    registers,
    collect() {
      let n = 0;
      for (const job of state()?.jobs.values() ?? []) if (!isTerminal(job.state)) n += job.retryQueue.length;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_leases_active",
    help: "Live shard leases.",
    registers,
    collect() {
      this.set(state()?.leases.size ?? 0);
    },
  });
  new Gauge({
    name: "dce_workers",
    help: "Registered workers (forgotten after the worker TTL without contact).",
    registers,
    collect() {
      this.set(state()?.workers.size ?? 0);
    },
  });
  new Gauge({
    name: "dce_worker_threads",
    help: "Compute threads offered by the registered workers.",
    registers,
    collect() {
      let n = 0;
      for (const w of state()?.workers.values() ?? []) n += w.threads;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_workers_quarantined",
    help: "Workers (registrations) quarantined for their own results that failed verification since the coordinator started; they get no more work.",
    registers,
    collect() {
      let n = 0;
      for (const ident of state()?.identities.values() ?? []) n += ident.quarantinedWorkers.length;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_worker_identities_quarantined",
    help: "Worker identities quarantined after wrong results from two or more of their workers: none of their workers gets work, and they cannot register.",
    registers,
    collect() {
      let n = 0;
      for (const ident of state()?.identities.values() ?? []) if (ident.quarantinedAtMs > 0) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_worker_rejected_results",
    help: "Results that failed verification, by worker identity (only identities with at least one), and whether the identity is quarantined.",
    labelNames: ["identity", "quarantined"] as const,
    registers,
    collect() {
      this.reset();
      for (const ident of state()?.identities.values() ?? []) {
        this.set({ identity: ident.identity, quarantined: ident.quarantinedAtMs > 0 ? "true" : "false" }, ident.rejectedResults);
      }
    },
  });
  new Gauge({
    name: "dce_coordinator_draining",
    help: "1 while the coordinator drains (grants no new work), else 0.",
    registers,
    collect() {
      this.set(state()?.draining ? 1 : 0);
    },
  });

  // --- counters driven by the step observer -----------------------------------------
  const jobsSubmitted = new Counter({
    name: "dce_jobs_submitted_total",
    help: "Jobs created (an idempotent resubmission is not counted).",
    registers,
  });
  const jobsFinished = new Counter({
    name: "dce_jobs_finished_total",
    help: "Jobs that reached a terminal state, by that state.",
    labelNames: ["state"] as const,
    registers,
  });
  for (const s of ["succeeded", "failed", "cancelled"]) jobsFinished.inc({ state: s }, 0);
  const shardsCompleted = new Counter({
    name: "dce_shards_completed_total",
    help: "Shard results accepted (first valid completion of each shard).",
    registers,
  });
  const shardsRetried = new Counter({
    name: "dce_shards_retried_total",
    help: "Shards put back for another execution after a failure or an expired lease.",
    registers,
  });
  const shardsReleased = new Counter({
    name: "dce_shards_released_total",
    help: "Leases handed back unstarted by a draining worker (not a failed attempt).",
    registers,
  });
  const shardFailures = new Counter({
    name: "dce_shard_failures_total",
    help: "Shard executions a worker reported as failed.",
    registers,
  });
  const rejected = new Counter({
    name: "dce_shard_completions_rejected_total",
    help: "Shard results refused, by reason: stale (old epoch or expired lease), duplicate (already accepted), revoked (job ended), other.",
    labelNames: ["reason"] as const,
    registers,
  });
  for (const reason of REASONS) rejected.inc({ reason }, 0);
  const resultBytes = new Counter({
    name: "dce_shard_result_bytes_total",
    help: "Bytes of accepted shard results (tiles of C).",
    registers,
  });
  const verifications = new Counter({
    name: "dce_shard_verifications_total",
    help: "Worker results checked before acceptance, by outcome: passed, unverifiable (some rows' inputs hold NaN/Inf or near-overflow values), rejected, error (the check could not run; the worker retries).",
    labelNames: ["outcome"] as const,
    registers,
  });
  for (const outcome of VERIFY_OUTCOMES) verifications.inc({ outcome }, 0);
  const verifySeconds = new Histogram({
    name: "dce_shard_verification_seconds",
    help: "Time to check one worker result (Freivalds' test), in seconds.",
    buckets: VERIFY_BUCKETS_S,
    registers,
  });
  const leasesGranted = new Counter({ name: "dce_leases_granted_total", help: "Shard leases granted.", registers });
  const leasesBackup = new Counter({
    name: "dce_leases_backup_total",
    help: "Backup leases granted for straggler shards (a second execution; the first valid result wins).",
    registers,
  });
  const leasesEnded = new Counter({
    name: "dce_leases_ended_total",
    help: "Leases that ended, by how: completed, superseded (the straggler twin won), expired, failed, released, revoked (job ended).",
    labelNames: ["reason"] as const,
    registers,
  });
  for (const reason of LEASE_ENDS) leasesEnded.inc({ reason }, 0);
  const leasesExpired = new Counter({
    name: "dce_leases_expired_total",
    help: "Shard leases that expired without a result.",
    registers,
  });
  const workersRegistered = new Counter({
    name: "dce_workers_registered_total",
    help: "Worker registrations accepted.",
    registers,
  });
  // Series of workers the core has forgotten are dropped at scrape time, so worker churn
  // cannot grow the registry without bound.
  const workerLabels = new Map<string, { worker_id: string; worker_name: string }>();
  const perWorker = new Counter({
    name: "dce_worker_shards_completed_total",
    help: "Shard results accepted, by worker.",
    labelNames: ["worker_id", "worker_name"] as const,
    registers,
    collect() {
      const workers = state()?.workers;
      for (const [id, labels] of workerLabels) {
        if (workers?.has(id as never)) continue;
        this.remove(labels);
        workerLabels.delete(id);
      }
    },
  });

  // --- RPCs, blobs and the journal ---------------------------------------------------
  const rpcStarted = new Counter({
    name: "dce_rpc_started_total",
    help: "RPCs started, by service and method.",
    labelNames: ["service", "method"] as const,
    registers,
  });
  const rpcHandled = new Counter({
    name: "dce_rpc_handled_total",
    help: "RPCs finished, by service, method and code (ok, not_found, aborted...).",
    labelNames: ["service", "method", "code"] as const,
    registers,
  });
  const rpcSeconds = new Histogram({
    name: "dce_rpc_handling_seconds",
    help: "RPC handling time in seconds, by service, method and code (long-polls included).",
    labelNames: ["service", "method", "code"] as const,
    buckets: RPC_BUCKETS_S,
    registers,
  });
  const blobBytes = new Counter({
    name: "dce_blob_bytes_total",
    help: "Matrix data bytes moved: in = UploadChunk data and matrices inline in SubmitJob; out = ReadBlob data, inputs inline in grants and C inline in GetJob.",
    labelNames: ["direction"] as const,
    registers,
  });
  blobBytes.inc({ direction: "in" }, 0);
  blobBytes.inc({ direction: "out" }, 0);
  const journalSeconds = new Histogram({
    name: "dce_journal_write_seconds",
    help: "Duration of one journal write (append + flush), in seconds.",
    buckets: JOURNAL_BUCKETS_S,
    registers,
  });
  const journalRecords = new Counter({
    name: "dce_journal_records_total",
    help: "Records made durable by journal writes.",
    registers,
  });

  const marks = new WeakMap<JobRecord, JobMark>();
  const trackJob = (jobId: string) => {
    const job = source?.state.jobs.get(jobId as JobRecord["id"]);
    if (!job) return;
    // A job first seen here was created after attach, so it started queued with no retries.
    const mark = marks.get(job) ?? { state: "queued", retried: 0 };
    if (job.state !== mark.state && isTerminal(job.state)) jobsFinished.inc({ state: job.state });
    if (job.retriedCount > mark.retried) shardsRetried.inc(job.retriedCount - mark.retried);
    marks.set(job, { state: job.state, retried: job.retriedCount });
  };

  // Live leases after the previous step: the drop across a step tells how many leases it ended.
  let leaseCount = 0;
  const countEndedLeases = (event: CoreEvent, outcome: OutcomeMap[CoreEvent["type"]], granted: number) => {
    const now = source?.state.leases.size ?? 0;
    let removed = leaseCount + granted - now;
    leaseCount = now;
    if (removed <= 0) return;
    const end = (reason: LeaseEndReason, n: number) => {
      if (n <= 0) return;
      leasesEnded.inc({ reason }, n);
      removed -= n;
    };
    if (event.type === "shard-completed" && outcome.ok) {
      end("completed", 1);
      end("superseded", removed);
    } else if (event.type === "shard-failed" && outcome.ok) {
      end(event.release ? "released" : "failed", 1);
    } else if (event.type === "shard-rejected" && outcome.ok) {
      // The wrong result's own lease fails; others go back when their worker or identity is quarantined.
      end("failed", (outcome as OutcomeMap["shard-rejected"] & { ok: true }).value.leaseEnded ? 1 : 0);
      end("released", removed);
    } else if (event.type === "ticked" && outcome.ok) {
      end("expired", Math.min(removed, (outcome as OutcomeMap["ticked"] & { ok: true }).value.expired));
    }
    // Whatever else went: leases of a job that ended (cancelled, or failed by a poison shard).
    end("revoked", removed);
  };

  const onStep = (event: CoreEvent, result: StepResult<OutcomeMap[CoreEvent["type"]]>) => {
    const { outcome } = result;
    let granted = 0;
    switch (event.type) {
      case "job-submitted": {
        const o = outcome as OutcomeMap["job-submitted"];
        if (o.ok && o.value.created) jobsSubmitted.inc();
        break;
      }
      case "worker-registered":
        if (outcome.ok) workersRegistered.inc();
        break;
      case "shards-requested": {
        const o = outcome as OutcomeMap["shards-requested"];
        if (o.ok && o.value.length > 0) {
          granted = o.value.length;
          leasesGranted.inc(granted);
          const jobs = source?.state.jobs;
          const backups = o.value.filter((g) => jobs?.get(g.lease.jobId)?.shardBackupEpoch[g.lease.shardIndex] === g.lease.epoch);
          if (backups.length > 0) leasesBackup.inc(backups.length);
        }
        break;
      }
      case "shard-completed": {
        const o = outcome as OutcomeMap["shard-completed"];
        if (o.ok) {
          shardsCompleted.inc();
          resultBytes.inc(event.sizeBytes);
          const labels = {
            worker_id: event.workerId,
            worker_name: source?.state.workers.get(event.workerId)?.name ?? "",
          };
          workerLabels.set(event.workerId, labels);
          perWorker.inc(labels);
        } else {
          rejected.inc({ reason: rejectionReason(o.error.kind) });
        }
        break;
      }
      case "shard-rejected":
        if (outcome.ok) rejected.inc({ reason: "corrupt" });
        break;
      case "shard-failed":
        if (outcome.ok) (event.release ? shardsReleased : shardFailures).inc();
        break;
      case "ticked": {
        const o = outcome as OutcomeMap["ticked"];
        if (o.ok && o.value.expired > 0) leasesExpired.inc(o.value.expired);
        break;
      }
      default:
        break;
    }
    countEndedLeases(event, outcome, granted);
    for (const fx of result.effects) if (fx.type === "job-changed") trackJob(fx.jobId);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    rpcStarted.inc({ service, method });
    const startedAt = performance.now();
    let finished = false;
    const finish = (code: string) => {
      if (finished) return;
      finished = true;
      rpcHandled.inc({ service, method, code });
      rpcSeconds.observe({ service, method, code }, (performance.now() - startedAt) / 1000);
    };
    // A client that goes away mid-call surfaces as a transport error, not a ConnectError.
    const codeOf = (e: unknown) =>
      !(e instanceof ConnectError) && req.signal.aborted ? "canceled" : codeLabel(ConnectError.from(e).code);
    if (!req.stream && isMessage(req.message, UploadChunkRequestSchema)) {
      blobBytes.inc({ direction: "in" }, req.message.data.byteLength);
    }
    if (!req.stream && isMessage(req.message, SubmitJobRequestSchema)) {
      const m = req.message.matmul;
      const inline = (m?.a?.inlineData.byteLength ?? 0) + (m?.b?.inlineData.byteLength ?? 0);
      if (inline > 0) blobBytes.inc({ direction: "in" }, inline);
    }
    try {
      const res = await next(req);
      if (!res.stream) {
        if (isMessage(res.message, ReadBlobResponseSchema)) blobBytes.inc({ direction: "out" }, res.message.data.byteLength);
        else if (isMessage(res.message, GetJobResponseSchema) && res.message.result !== undefined) {
          blobBytes.inc({ direction: "out" }, res.message.result.inlineData.byteLength);
        } else if (isMessage(res.message, AcquireShardsResponseSchema)) {
          let inline = 0;
          for (const l of res.message.leases)
            inline += (l.matmul?.a?.inlineData.byteLength ?? 0) + (l.matmul?.b?.inlineData.byteLength ?? 0);
          if (inline > 0) blobBytes.inc({ direction: "out" }, inline);
        }
        finish("ok");
        return res;
      }
      // A streaming call ends when its last message is sent; time it until then.
      const messages = res.message;
      async function* timed() {
        try {
          yield* messages;
          finish("ok");
        } catch (e) {
          finish(codeOf(e));
          throw e;
        } finally {
          finish("canceled");
        }
      }
      return { ...res, message: timed() };
    } catch (e) {
      finish(codeOf(e));
      throw e;
    }
  };

  return {
    registry,
    contentType: registry.contentType,
    scrape: () => registry.metrics(),
    attach(s) {
      detach?.();
      source = s;
      for (const job of s.state.jobs.values()) marks.set(job, { state: job.state, retried: job.retriedCount });
      leaseCount = s.state.leases.size;
      const unobserveSteps = s.observe(onStep);
      const unobserveChecks =
        s.observeVerification?.((v) => {
          verifications.inc({ outcome: v.outcome });
          if (v.outcome !== "error") verifySeconds.observe(v.ms / 1000);
        }) ?? (() => {});
      const unobserve = () => {
        unobserveSteps();
        unobserveChecks();
      };
      let done = false;
      const off = () => {
        if (done) return;
        done = true;
        unobserve();
        if (source === s) source = undefined;
        if (detach === off) detach = undefined;
      };
      detach = off;
      return off;
    },
    observeJournalWriteMs: (ms, records) => {
      if (Number.isFinite(ms) && ms >= 0) journalSeconds.observe(ms / 1000);
      if (records !== undefined && Number.isFinite(records) && records > 0) journalRecords.inc(records);
    },
    interceptor,
  };
}
