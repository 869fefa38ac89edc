import { err, ok } from "./errors.js";
import type { Effect, JobDeleteRequested, OutcomeMap } from "./events.js";
import { endJob } from "./job-lifecycle.js";
import { dropLease } from "./leases.js";
import { expiresAtMsOf } from "./retention.js";
import { type CoreState, idempotencyEntry, isTerminal, type JobRecord } from "./state.js";

// The end of a job's life: deleted by its client (DeleteJob), or by retention once it
// has been finished for its retention time. A deleted job is gone from the state: its
// shards, leases, result reference and idempotency entry with it. The deletion is a
// durable record (`job-deleted`), so a restart never brings the job back, and the
// shell is told with a `job-deleted` effect (it may then collect unreferenced blobs).

/** Deletes a job for its owner (`job-delete-requested`); a queued or running one is cancelled first. */
export function deleteRequested(s: CoreState, e: JobDeleteRequested, fx: Effect[]): OutcomeMap["job-delete-requested"] {
  const job = s.jobs.get(e.jobId);
  // A job of another client answers exactly like a missing one, so ids reveal nothing.
  if (!job || job.clientId !== e.clientId) return err({ kind: "job-not-found", jobId: e.jobId });
  const cancelled = !isTerminal(job.state);
  if (cancelled) endJob(s, job, "cancelled", "deleted by client", e.nowMs, fx);
  removeJob(s, job, e.nowMs, "deleted by client", fx);
  return ok({ jobId: job.id, cancelled });
}

/**
 * Deletes every finished job whose retention ran out by `nowMs` (called by the tick).
 * Scans the jobs only once {@link CoreState.retentionDueMs} has come, and sets it to the
 * next expiry it sees.
 * @returns how many jobs it deleted.
 */
export function expireRetention(s: CoreState, nowMs: number, fx: Effect[]): number {
  if (nowMs < s.retentionDueMs) return 0;
  const due: JobRecord[] = [];
  let next = Number.POSITIVE_INFINITY;
  for (const job of s.jobs.values()) {
    if (!isTerminal(job.state)) continue;
    const at = expiresAtMsOf(job, s.config);
    if (at <= nowMs) due.push(job);
    else if (at < next) next = at;
  }
  s.retentionDueMs = next;
  for (const job of due) removeJob(s, job, nowMs, "retention ran out", fx);
  return due.length;
}

/** Removes a job from the state for good and says so (durable record, effects, log line). */
function removeJob(s: CoreState, job: JobRecord, nowMs: number, why: string, fx: Effect[]): void {
  // A finished job holds no lease (endJob freed them); this is only a guard for the invariant.
  for (const lease of [...s.leases.values()]) if (lease.jobId === job.id) dropLease(s, lease);
  s.jobs.delete(job.id);
  if (s.activeJobs.includes(job.id)) s.activeJobs = s.activeJobs.filter((id) => id !== job.id);
  if (job.idempotencyKey !== "") {
    const key = idempotencyEntry(job.clientId, job.idempotencyKey);
    if (s.idempotency.get(key) === job.id) s.idempotency.delete(key);
  }
  const blobIds = [job.spec.a.blobId, job.spec.b.blobId, ...(job.resultBlobId === "" ? [] : [job.resultBlobId])];
  fx.push({ type: "persist", record: { type: "job-deleted", jobId: job.id, atMs: nowMs } });
  fx.push({ type: "job-deleted", jobId: job.id, blobIds: [...new Set(blobIds)] });
  // Long-polls on the job wake up and find it gone (NOT_FOUND).
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "log", level: "info", msg: "job deleted", fields: { jobId: job.id, state: job.state, reason: why } });
}
