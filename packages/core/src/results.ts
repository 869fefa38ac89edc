import { err, ok } from "./errors.js";
import type { Effect, OutcomeMap, ShardCompleted, ShardFailed, ShardRejected } from "./events.js";
import { checkLease, dropLease, endLease, reportedLease } from "./leases.js";
import { tileBounds, tileSizeBytes } from "./plan.js";
import { observeLeaseEnd } from "./poison.js";
import { applyQuarantineRule, countRejection } from "./quarantine.js";
import { requeue } from "./retries.js";
import { type CoreState, isTerminal, ShardStatus, type WorkerRecord } from "./state.js";
import { clipCodePoints } from "./text.js";
import { chargeFailure } from "./workers.js";

// What workers report about their leases: a completed tile (the first valid one wins),
// a failure or hand-back, and a result the shell's check rejected (charged to the
// worker's identity, which may quarantine it; see quarantine.ts).

/** Accepts a shard's tile from the live lease's holder (`shard-completed`). */
export function complete(s: CoreState, e: ShardCompleted, fx: Effect[]): OutcomeMap["shard-completed"] {
  const r = reportedLease(s, e);
  if (!r.ok) return r;
  const { worker, job, lease } = r.value;
  const shard = lease.shardIndex;
  const expected = tileSizeBytes(job.plan, shard);
  if (e.sizeBytes !== expected) {
    return err({
      kind: "invalid-result",
      jobId: job.id,
      shardIndex: shard,
      message: `result is ${e.sizeBytes} bytes; the tile needs ${expected}`,
    });
  }
  // First valid completion wins: the other execution of a straggler (if any) is dropped and learns it
  // from its next heartbeat ("cancelled"). shardEpoch keeps the winner so a repeated report is recognised.
  dropLease(s, lease);
  const other = lease.epoch === job.shardEpoch[shard] ? job.shardBackupEpoch[shard] : job.shardEpoch[shard];
  const otherLease = s.leases.get(other ?? 0);
  if (otherLease) dropLease(s, otherLease);
  job.shardBackupEpoch[shard] = 0;
  job.shardEpoch[shard] = lease.epoch;
  job.leasedCount--;
  job.durationsMs.push(e.nowMs - lease.grantedAtMs);
  observeLeaseEnd(s.leaseEnds, false);
  worker.failureStreak = 0;
  job.shardAvoid.delete(shard);
  job.shardStatus[shard] = ShardStatus.done;
  job.doneCount++;
  job.version++;
  const bounds = tileBounds(job.plan, shard);
  fx.push({ type: "write-tile", jobId: job.id, shardIndex: shard, bounds });
  fx.push({ type: "persist", record: { type: "shard-accepted", jobId: job.id, shardIndex: shard, epoch: lease.epoch } });
  if (job.doneCount === job.plan.shardCount) {
    job.finalizing = true;
    fx.push({ type: "finalize-result", jobId: job.id });
  }
  fx.push({ type: "job-changed", jobId: job.id });
  return ok({ bounds });
}

/** A worker's failure report or hand-back (`shard-failed`): the shard runs again, or its job fails. */
export function fail(s: CoreState, e: ShardFailed, fx: Effect[]): OutcomeMap["shard-failed"] {
  const r = reportedLease(s, e);
  if (!r.ok) return r;
  const { job, lease } = r.value;
  const shard = lease.shardIndex;
  const why = clipCodePoints(e.error, 1024);
  if (!e.release) chargeFailure(s, e.workerId, e.nowMs, fx);
  if (endLease(s, job, lease)) {
    // The shard's other execution goes on; nothing to re-queue.
    job.version++;
    fx.push({ type: "job-changed", jobId: job.id });
    return ok({ jobFailed: false });
  }
  if (e.release) {
    // A hand-back is not a failed attempt: undo the count and make it grantable at once.
    job.shardAttempts[shard] = Math.max(0, (job.shardAttempts[shard] ?? 1) - 1);
    job.shardStatus[shard] = ShardStatus.pending;
    job.shardNotBeforeMs[shard] = e.nowMs;
    job.retryQueue.push(shard);
    job.version++;
    fx.push({ type: "job-changed", jobId: job.id });
    fx.push({ type: "shards-available" });
    return ok({ jobFailed: false });
  }
  job.shardLastError.set(shard, why);
  fx.push({ type: "log", level: "warn", msg: "shard failed", fields: { jobId: job.id, shard, epoch: lease.epoch, error: why } });
  requeue(s, job, shard, e.nowMs, e.jitter, why, fx);
  return ok({ jobFailed: isTerminal(job.state) });
}

/** The shell rejected a worker's result (`shard-rejected`): charge its identity, re-queue the shard. */
export function rejected(s: CoreState, e: ShardRejected, fx: Effect[]): OutcomeMap["shard-rejected"] {
  const worker = s.workers.get(e.workerId);
  if (!worker) return err({ kind: "worker-not-found", workerId: e.workerId });
  worker.lastSeenMs = e.nowMs;
  const why = `result rejected: ${clipCodePoints(e.reason, 512)}`;
  const identity = worker.identity;
  const rec = countRejection(s, worker, why);
  const { jobId, shardIndex, epoch } = e.lease;
  fx.push({
    type: "log",
    level: "warn",
    msg: "shard result rejected",
    fields: {
      jobId,
      shard: shardIndex,
      epoch,
      workerId: worker.id,
      identity,
      rejectedResults: rec.rejectedResults,
      workerRejectedResults: worker.rejectedResults,
      reason: why,
    },
  });
  let requeued = false;
  let leaseEnded = false;
  // Only the live lease's holder can lose the lease; a late wrong result still counts against its sender.
  const r = checkLease(s, e.workerId, e.lease, e.nowMs);
  if (r.ok) {
    const { job, lease } = r.value;
    const avoid = job.shardAvoid.get(shardIndex) ?? [];
    if (!avoid.includes(identity)) job.shardAvoid.set(shardIndex, [...avoid, identity]);
    job.shardLastError.set(shardIndex, why);
    leaseEnded = true;
    if (endLease(s, job, lease)) {
      // The straggler twin carries on; its result is checked like any other.
      job.version++;
      fx.push({ type: "job-changed", jobId: job.id });
    } else {
      requeue(s, job, shardIndex, e.nowMs, 0, why, fx);
      // The shard is not at fault, its executor was: no backoff before another worker takes it.
      if (!isTerminal(job.state)) job.shardNotBeforeMs[shardIndex] = e.nowMs;
      requeued = true;
    }
  }
  const q = applyQuarantineRule(s, worker, e.nowMs, fx);
  for (const w of q.shutOut) takeBack(s, w, e.nowMs, fx);
  return ok({
    leaseEnded,
    requeued,
    quarantined: q.workerQuarantined || q.identityQuarantined,
    identityQuarantined: q.identityQuarantined,
  });
}

/**
 * Takes back the live leases of a quarantined worker at once (like a hand-back: no
 * attempt is charged), so their shards go to other workers now rather than after the
 * quarantined worker's results.
 */
function takeBack(s: CoreState, w: WorkerRecord, nowMs: number, fx: Effect[]): void {
  for (const epoch of [...w.leases]) {
    const lease = s.leases.get(epoch);
    const job = lease ? s.jobs.get(lease.jobId) : undefined;
    if (!lease || !job) continue;
    const shard = lease.shardIndex;
    job.version++;
    fx.push({ type: "job-changed", jobId: job.id });
    if (endLease(s, job, lease)) continue;
    job.shardAttempts[shard] = Math.max(0, (job.shardAttempts[shard] ?? 1) - 1);
    job.shardStatus[shard] = ShardStatus.pending;
    job.shardNotBeforeMs[shard] = nowMs;
    job.retryQueue.push(shard);
    fx.push({ type: "shards-available" });
  }
}
