import { err, ok, type Result } from "./errors.js";
import type { LeaseKey } from "./events.js";
import type { ClientId, JobId, WorkerId } from "./ids.js";
import { checkLease } from "./leases.js";
import type { CoreState, JobRecord, LeaseRecord } from "./state.js";

// Read-only questions the shell asks the core between steps.

/**
 * Whether a completion from `workerId` for `lease` would be considered at `nowMs`:
 * the live lease, or the error `shard-completed` would answer. Read-only; the shell uses
 * it to skip verifying results that are refused anyway (stale, duplicate, revoked).
 */
export function checkCompletion(
  s: Readonly<CoreState>,
  workerId: WorkerId,
  lease: LeaseKey,
  nowMs: number,
): Result<{ job: JobRecord; lease: LeaseRecord }> {
  if (!s.workers.has(workerId)) return err({ kind: "worker-not-found", workerId });
  return checkLease(s as CoreState, workerId, lease, nowMs);
}

/** Reads a job's result address, for its owner only. */
export function resultOf(s: CoreState, clientId: ClientId, jobId: JobId): Result<{ job: JobRecord; blobId: string }> {
  const job = s.jobs.get(jobId);
  if (!job || job.clientId !== clientId) return err({ kind: "job-not-found", jobId });
  if (job.state !== "succeeded") return err({ kind: "result-not-ready", jobId, state: job.state });
  return ok({ job, blobId: job.resultBlobId });
}

/** Looks a job up for its owner; another client's job reads as not found. */
export function jobOf(s: CoreState, clientId: ClientId, jobId: JobId): Result<JobRecord> {
  const job = s.jobs.get(jobId);
  if (!job || job.clientId !== clientId) return err({ kind: "job-not-found", jobId });
  return ok(job);
}
