import { err, ok, type Result } from "./errors.js";
import type { HeartbeatReceived, LeaseCheck, LeaseKey, OutcomeMap, ShardCompleted, ShardFailed } from "./events.js";
import type { WorkerId } from "./ids.js";
import { type CoreState, isTerminal, type JobRecord, type LeaseRecord, ShardStatus, type WorkerRecord } from "./state.js";

// Leases: the fencing check every report about a lease goes through, heartbeats that
// renew leases, and ending a lease (with a straggler twin taking over as the primary).

/** Classifies a report about `key` from `workerId`: the live lease, or why it is not valid. */
export function checkLease(
  s: CoreState,
  workerId: WorkerId,
  key: LeaseKey,
  nowMs: number,
): Result<{ job: JobRecord; lease: LeaseRecord }> {
  const job = s.jobs.get(key.jobId);
  if (!job || !Number.isInteger(key.shardIndex) || key.shardIndex < 0 || key.shardIndex >= job.plan.shardCount) {
    return err({ kind: "job-not-found", jobId: key.jobId });
  }
  const { shardIndex, epoch } = key;
  const current = job.shardEpoch[shardIndex] ?? 0;
  const status = job.shardStatus[shardIndex];
  if (status === ShardStatus.done) {
    if (current === epoch) return err({ kind: "already-completed", jobId: job.id, shardIndex, epoch });
    return err({ kind: "stale-fence", jobId: job.id, shardIndex, epoch, currentEpoch: current });
  }
  if (isTerminal(job.state)) {
    return err({ kind: "lease-revoked", jobId: job.id, shardIndex, epoch, message: `job is ${job.state}` });
  }
  const backup = job.shardBackupEpoch[shardIndex] ?? 0;
  if ((epoch !== current && epoch !== backup) || status !== ShardStatus.leased) {
    const newest = Math.max(current, backup);
    if (epoch < newest) return err({ kind: "stale-fence", jobId: job.id, shardIndex, epoch, currentEpoch: newest });
    return err({ kind: "lease-lost", jobId: job.id, shardIndex, epoch });
  }
  const lease = s.leases.get(epoch);
  // Expired counts as lost even before the next tick re-queues the shard: fencing does not depend on tick timing.
  if (!lease || lease.expiresAtMs <= nowMs) return err({ kind: "lease-lost", jobId: job.id, shardIndex, epoch });
  if (lease.workerId !== workerId) {
    return err({ kind: "not-lease-holder", jobId: job.id, shardIndex, epoch, workerId });
  }
  return ok({ job, lease });
}

export function heartbeat(s: CoreState, e: HeartbeatReceived): OutcomeMap["heartbeat-received"] {
  const worker = s.workers.get(e.workerId);
  if (!worker) return err({ kind: "worker-not-found", workerId: e.workerId });
  worker.lastSeenMs = e.nowMs;
  const checks: LeaseCheck[] = [];
  for (const key of e.leases) {
    const r = checkLease(s, e.workerId, key, e.nowMs);
    if (r.ok) {
      r.value.lease.expiresAtMs = e.nowMs + s.config.leaseTtlMs;
      checks.push({ lease: key, state: "active", ttlMs: s.config.leaseTtlMs });
      continue;
    }
    // Finished elsewhere or job over: stop quietly ("cancelled"). Otherwise the lease is gone ("lost").
    const kind = r.error.kind;
    const doneElsewhere = kind === "stale-fence" && s.jobs.get(key.jobId)?.shardStatus[key.shardIndex] === ShardStatus.done;
    const cancelled = kind === "lease-revoked" || kind === "already-completed" || doneElsewhere;
    checks.push({ lease: key, state: cancelled ? "cancelled" : "lost", ttlMs: 0 });
  }
  return ok(checks);
}

/** Removes a lease from the lease table and from its worker's set. */
export function dropLease(s: CoreState, lease: LeaseRecord): void {
  s.leases.delete(lease.epoch);
  s.workers.get(lease.workerId)?.leases.delete(lease.epoch);
}

/**
 * Ends one of a shard's live leases. If the shard still has its other execution
 * (primary or straggler backup), that one carries on as the primary and true is
 * returned; otherwise the shard has no live lease left (the caller decides what next).
 */
export function endLease(s: CoreState, job: JobRecord, lease: LeaseRecord): boolean {
  dropLease(s, lease);
  const shard = lease.shardIndex;
  const primary = job.shardEpoch[shard] ?? 0;
  const backup = job.shardBackupEpoch[shard] ?? 0;
  job.shardBackupEpoch[shard] = 0;
  const other = lease.epoch === primary ? backup : primary;
  if (other !== 0 && s.leases.has(other)) {
    job.shardEpoch[shard] = other;
    return true;
  }
  job.leasedCount--;
  return false;
}

/** A worker's report about one of its leases: the worker is seen, and the lease must be live and its own. */
export function reportedLease(
  s: CoreState,
  e: ShardCompleted | ShardFailed,
): Result<{ worker: WorkerRecord; job: JobRecord; lease: LeaseRecord }> {
  const worker = s.workers.get(e.workerId);
  if (!worker) return err({ kind: "worker-not-found", workerId: e.workerId });
  worker.lastSeenMs = e.nowMs;
  const r = checkLease(s, e.workerId, e.lease, e.nowMs);
  return r.ok ? ok({ worker, ...r.value }) : r;
}
