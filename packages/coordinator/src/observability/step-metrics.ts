import {
  type CoreError,
  type CoreEvent,
  type CoreState,
  isTerminal,
  type JobRecord,
  type JobStateName,
  type OutcomeMap,
  type StepResult,
} from "@dce/core";
import { Counter, Histogram, type Registry } from "prom-client";
import type { StepObserver, VerificationObserver } from "./events.js";

// The counters a coordinator's step hook and verification hook drive: jobs submitted and
// finished, shards completed, retried, released and failed, results refused, verification
// outcomes, leases granted and ended, workers registered. Each step's event and outcome
// tell what happened; the job and lease counts in the state before and after tell the rest.

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

const REASONS: readonly RejectionReason[] = ["stale", "duplicate", "revoked", "corrupt", "other"];
const VERIFY_OUTCOMES = ["passed", "unverifiable", "rejected", "error"] as const;
const VERIFY_BUCKETS_S = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LEASE_ENDS: readonly LeaseEndReason[] = ["completed", "superseded", "expired", "failed", "released", "revoked"];

/** What the observer remembers of a job to turn state changes into counter increments. */
interface JobMark {
  state: JobStateName;
  retried: number;
}

/** The hooks that drive the step counters; see {@link createStepMetrics}. */
export interface StepMetrics {
  /** Takes the jobs and live leases of `s` as counted already (for a coordinator restored from its journal). */
  baseline(s: Readonly<CoreState>): void;
  /** The step observer to register with the source. */
  readonly onStep: StepObserver;
  /** The verification observer to register with the source. */
  readonly onVerification: VerificationObserver;
}

/**
 * Registers, in `registers`, the counters driven by a coordinator's step and verification
 * hooks, and returns those hooks. `state()` is the attached source's live core state
 * (undefined while detached), read after each step and at scrape time.
 */
export function createStepMetrics(registers: Registry[], state: () => Readonly<CoreState> | undefined): StepMetrics {
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
  const jobsDeleted = new Counter({
    name: "dce_jobs_deleted_total",
    help: "Jobs deleted, by why: client (DeleteJob) or retention (finished longer ago than its retention).",
    labelNames: ["reason"] as const,
    registers,
  });
  for (const r of ["client", "retention"]) jobsDeleted.inc({ reason: r }, 0);
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

  const marks = new WeakMap<JobRecord, JobMark>();
  const trackJob = (jobId: string) => {
    const job = state()?.jobs.get(jobId as JobRecord["id"]);
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
    const now = state()?.leases.size ?? 0;
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
      case "job-delete-requested": {
        // Cancelled and gone in one step: trackJob no longer finds it, so its end is counted here.
        const o = outcome as OutcomeMap["job-delete-requested"];
        if (o.ok && o.value.cancelled) jobsFinished.inc({ state: "cancelled" });
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
          const jobs = state()?.jobs;
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
            worker_name: state()?.workers.get(event.workerId)?.name ?? "",
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
    for (const fx of result.effects) {
      if (fx.type === "job-changed") trackJob(fx.jobId);
      else if (fx.type === "job-deleted") jobsDeleted.inc({ reason: event.type === "ticked" ? "retention" : "client" });
    }
  };

  return {
    baseline(s) {
      for (const job of s.jobs.values()) marks.set(job, { state: job.state, retried: job.retriedCount });
      leaseCount = s.leases.size;
    },
    onStep,
    onVerification: (v) => {
      verifications.inc({ outcome: v.outcome });
      if (v.outcome !== "error") verifySeconds.observe(v.ms / 1000);
    },
  };
}
