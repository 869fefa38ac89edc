import { err, ok } from "./errors.js";
import type {
  Effect,
  JobCancelRequested,
  JobSubmitted,
  OutcomeMap,
  ResultBufferLost,
  ResultFailed,
  ResultFinalized,
} from "./events.js";
import { MAX_CLIENT_WEIGHT, setClientWeight } from "./fair-queue.js";
import { MAX_JOB_PRIORITY, MIN_JOB_PRIORITY } from "./fair-share.js";
import { dropPlacement } from "./grant-placement.js";
import { dropLease } from "./leases.js";
import { noteFinished } from "./retention.js";
import { sameSpec, validateMatMulSpec } from "./spec.js";
import { type CoreState, createJobRecord, idempotencyEntry, isTerminal, type JobRecord, ShardStatus } from "./state.js";
import { clipCodePoints, quote } from "./text.js";

// A job's life: submitted (admission, idempotency), cancelled, its result sealed or
// lost, and its end (failed or cancelled), which frees everything it holds.

/** Admits a job (`job-submitted`), or answers with the job an earlier submit of the same key created. */
export function submit(s: CoreState, e: JobSubmitted, fx: Effect[]): OutcomeMap["job-submitted"] {
  const v = validateMatMulSpec(e.spec, s.config.limits);
  if (!v.ok) return v;
  const spec = v.value;
  const priority = e.priority ?? 0;
  if (!Number.isInteger(priority) || priority < MIN_JOB_PRIORITY || priority > MAX_JOB_PRIORITY) {
    return err({
      kind: "invalid-spec",
      message: `priority must be an integer from ${MIN_JOB_PRIORITY} to ${MAX_JOB_PRIORITY}, got ${priority}`,
    });
  }
  const weight = e.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 1 || weight > MAX_CLIENT_WEIGHT) {
    return err({
      kind: "invalid-spec",
      message: `client weight must be an integer from 1 to ${MAX_CLIENT_WEIGHT}, got ${weight}`,
    });
  }
  const retentionMs = e.retentionMs ?? 0;
  if (!Number.isSafeInteger(retentionMs) || retentionMs < 0 || retentionMs > s.config.maxRetentionMs) {
    return err({
      kind: "invalid-spec",
      message: `retention_ms ${retentionMs} is above the maximum ${s.config.maxRetentionMs} (the coordinator's --max-retention)`,
    });
  }
  const idemKey = e.idempotencyKey === "" ? "" : idempotencyEntry(e.clientId, e.idempotencyKey);
  if (idemKey !== "") {
    const existing = s.idempotency.get(idemKey);
    if (existing !== undefined) {
      const job = s.jobs.get(existing);
      if (job && sameSpec(job.spec, spec)) return ok({ jobId: existing, created: false });
      return err({
        kind: "job-exists",
        jobId: existing,
        message: `idempotency key '${quote(e.idempotencyKey, 128)}' was already used for job ${existing} with a different spec`,
      });
    }
  }
  if (s.draining) return err({ kind: "draining" });
  if (s.activeJobs.length >= s.config.maxActiveJobs) {
    return err({
      kind: "over-capacity",
      message: `${s.activeJobs.length} jobs are queued or running, the limit maxActiveJobs=${s.config.maxActiveJobs}; retry later`,
    });
  }
  // Counted over the active list (at most maxActiveJobs long), so no per-client index has to be kept in step.
  let mine = 0;
  for (const id of s.activeJobs) if (s.jobs.get(id)?.clientId === e.clientId) mine++;
  if (mine >= s.config.maxActiveJobsPerClient) {
    return err({
      kind: "over-capacity",
      message: `this client has ${mine} jobs queued or running, the limit maxActiveJobsPerClient=${s.config.maxActiveJobsPerClient}; retry later`,
    });
  }
  if (s.jobs.has(e.jobId)) {
    // The shell hands out fresh ids; a reused one is a shell bug, reported rather than thrown.
    return err({ kind: "invalid-spec", message: `job id ${e.jobId} is already in use` });
  }
  const job = createJobRecord({
    id: e.jobId,
    clientId: e.clientId,
    idempotencyKey: e.idempotencyKey,
    spec,
    createdAtMs: e.nowMs,
    priority,
    weight,
    retentionMs,
  });
  const plan = job.plan;
  s.jobs.set(job.id, job);
  s.activeJobs.push(job.id);
  setClientWeight(s.fairShare, job.clientId, weight);
  if (idemKey !== "") s.idempotency.set(idemKey, job.id);
  fx.push({
    type: "persist",
    record: {
      type: "job-created",
      jobId: job.id,
      clientId: job.clientId,
      idempotencyKey: job.idempotencyKey,
      spec,
      createdAtMs: e.nowMs,
      priority,
      weight,
      // Written only when asked for, so records of jobs on the default stay as they were.
      ...(retentionMs > 0 ? { retentionMs } : {}),
    },
  });
  fx.push({ type: "prepare-result", jobId: job.id, rows: plan.rows, cols: plan.cols });
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "shards-available" });
  return ok({ jobId: job.id, created: true });
}

/** Cancels a job for its owner; cancelling a cancelled job again is ok. */
export function cancel(s: CoreState, e: JobCancelRequested, fx: Effect[]): OutcomeMap["job-cancel-requested"] {
  const job = s.jobs.get(e.jobId);
  // A job of another client answers exactly like a missing one, so ids reveal nothing.
  if (!job || job.clientId !== e.clientId) return err({ kind: "job-not-found", jobId: e.jobId });
  if (job.state === "cancelled") return ok({ jobId: job.id });
  if (isTerminal(job.state)) {
    return err({
      kind: "job-finished",
      jobId: job.id,
      state: job.state,
      message: `job ${job.id} already ${job.state}; it cannot be cancelled`,
    });
  }
  endJob(s, job, "cancelled", e.reason === "" ? "cancelled by client" : clipCodePoints(e.reason, 1024), e.nowMs, fx);
  return ok({ jobId: job.id });
}

/** The shell sealed a job's result: the job succeeded. */
export function finalized(s: CoreState, e: ResultFinalized, fx: Effect[]): OutcomeMap["result-finalized"] {
  const job = s.jobs.get(e.jobId);
  if (!job) return err({ kind: "job-not-found", jobId: e.jobId });
  if (!job.finalizing || isTerminal(job.state)) return ok(null); // cancelled meanwhile: nothing to do
  job.finalizing = false;
  job.resultBlobId = e.resultBlobId;
  job.state = "succeeded";
  job.finishedAtMs = e.nowMs;
  dropPlacement(job);
  job.version++;
  s.activeJobs = s.activeJobs.filter((id) => id !== job.id);
  noteFinished(s, job);
  fx.push({
    type: "persist",
    record: { type: "job-succeeded", jobId: job.id, resultBlobId: e.resultBlobId, finishedAtMs: e.nowMs },
  });
  fx.push({ type: "job-changed", jobId: job.id });
  return ok(null);
}

/** The shell could not store the result: the job fails. */
export function resultFailed(s: CoreState, e: ResultFailed, fx: Effect[]): OutcomeMap["result-failed"] {
  const job = s.jobs.get(e.jobId);
  if (!job) return err({ kind: "job-not-found", jobId: e.jobId });
  if (isTerminal(job.state)) return ok(null);
  endJob(s, job, "failed", `result could not be stored: ${e.message}`, e.nowMs, fx);
  return ok(null);
}

/**
 * The result buffer of an active job is gone (found on restart): its accepted tiles
 * cannot be trusted, so they are computed again. The reset is journaled (a
 * `result-buffer-lost` record) so that a second restart, which finds the new buffer,
 * does not take the old tiles as written in it.
 */
export function resultBufferLost(s: CoreState, e: ResultBufferLost, fx: Effect[]): OutcomeMap["result-buffer-lost"] {
  const job = s.jobs.get(e.jobId);
  if (!job) return err({ kind: "job-not-found", jobId: e.jobId });
  if (isTerminal(job.state)) return ok({ tiles: 0 }); // nothing will be written into it again
  const tiles = job.doneCount;
  for (let shard = 0; shard < job.plan.shardCount; shard++) {
    if (job.shardStatus[shard] !== ShardStatus.done) continue;
    job.shardStatus[shard] = ShardStatus.pending;
    job.shardEpoch[shard] = 0;
  }
  // Fresh tiles come from the job's blocks: cut them afresh so the reset tiles are found.
  job.tileBlocks = null;
  job.doneCount = 0;
  job.finalizing = false;
  job.version++;
  fx.push({ type: "persist", record: { type: "result-buffer-lost", jobId: job.id, atMs: e.nowMs } });
  fx.push({
    type: "log",
    level: "error",
    msg: "result buffer missing after restart; recomputing its tiles",
    fields: { jobId: job.id, tiles },
  });
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "shards-available" });
  return ok({ tiles });
}

/** Moves a job to a terminal state other than succeeded and frees everything it holds. */
export function endJob(
  s: CoreState,
  job: JobRecord,
  to: "failed" | "cancelled",
  message: string,
  nowMs: number,
  fx: Effect[],
): void {
  for (const lease of [...s.leases.values()]) {
    if (lease.jobId !== job.id) continue;
    dropLease(s, lease);
    // No lease, so not "leased": later reports get lease-revoked from the job's terminal state.
    job.shardStatus[lease.shardIndex] = ShardStatus.pending;
    job.shardBackupEpoch[lease.shardIndex] = 0;
  }
  job.leasedCount = 0;
  job.backupQueue = [];
  job.state = to;
  job.error = message;
  job.finishedAtMs = nowMs;
  job.finalizing = false;
  job.retryQueue = [];
  dropPlacement(job);
  job.version++;
  s.activeJobs = s.activeJobs.filter((id) => id !== job.id);
  noteFinished(s, job);
  fx.push({ type: "persist", record: { type: "job-ended", jobId: job.id, state: to, error: message, finishedAtMs: nowMs } });
  fx.push({ type: "discard-result", jobId: job.id });
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({
    type: "log",
    level: to === "failed" ? "error" : "info",
    msg: `job ${to}`,
    fields: { jobId: job.id, reason: message },
  });
}
