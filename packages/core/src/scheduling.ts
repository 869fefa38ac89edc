import { err, ok } from "./errors.js";
import type { Effect, Grant, OutcomeMap, ShardsRequested } from "./events.js";
import { chargeGrant, nextClient } from "./fair-queue.js";
import { clientQueues, shardCost } from "./fair-share.js";
import { hasFreshTiles, heldPanels, nextFreshShard, panelPeersFor } from "./grant-placement.js";
import type { WorkerId } from "./ids.js";
import { tileBounds } from "./plan.js";
import { isShutOut, shutOutError } from "./quarantine.js";
import {
  type CoreState,
  isTerminal,
  type JobRecord,
  type KernelOffer,
  type LeaseRecord,
  ShardStatus,
  type WorkerRecord,
} from "./state.js";

// Scheduling: which shards a worker gets when it asks (weighted fair share between
// clients, priority then submit order within a client, retries before fresh shards,
// spreading small jobs over the workers, straggler backups), on which kernel.
// Fresh shards go in compact 2-D blocks of the tile grid, one per worker, row-major
// within a block; a worker whose block is done steals the far half of the busiest one
// (tile-blocks.ts). A retry whose A or B panel the worker holds goes first. Each grant
// names the peers that hold its panels (panel-holders.ts).

/** The kernel offer of `worker` that can run `job`, or undefined. */
function kernelFor(job: JobRecord, kernels: readonly KernelOffer[], known: readonly string[]): KernelOffer | undefined {
  if (job.fingerprint !== "") {
    return kernels.find((k) => k.name === job.kernel && k.fingerprint === job.fingerprint);
  }
  if (job.kernel === "auto") {
    // The worker lists its kernels fastest first; take the first one the engine knows.
    return kernels.find((k) => known.includes(k.name));
  }
  return kernels.find((k) => k.name === job.kernel);
}

/**
 * Grants a worker up to `maxShards` leases (`shards-requested`). Each grant goes to the
 * client that weighted fair share picks (fair-queue.ts); within that client, to its
 * highest-priority job that this worker can run, first submitted first; within the job,
 * a straggler's backup, then a retry, then a fresh shard.
 */
export function acquire(s: CoreState, e: ShardsRequested, fx: Effect[]): OutcomeMap["shards-requested"] {
  const worker = s.workers.get(e.workerId);
  if (!worker) return err({ kind: "worker-not-found", workerId: e.workerId });
  worker.lastSeenMs = e.nowMs;
  if (s.draining) return err({ kind: "draining" });
  const shutOut = shutOutError(s, worker);
  if (shutOut) return err(shutOut);
  const grants: Grant[] = [];
  // A worker that keeps failing waits out its throttle period (it long-polls meanwhile).
  if (worker.throttledUntilMs > e.nowMs) return ok(grants);
  const want = Math.max(0, Math.floor(e.maxShards));
  if (want === 0) return ok(grants);
  const queues = clientQueues(s);
  /** Grants left for each job in this request (spreadShards), set when the job is first tried. */
  const room = new Map<JobRecord, number>();
  const changed = new Set<JobRecord>();
  while (grants.length < want) {
    const clientId = nextClient(s.fairShare, queues.keys());
    if (clientId === undefined) break;
    const queue = queues.get(clientId) as JobRecord[];
    let granted: Grant | undefined;
    let capped = false;
    while (!granted && queue.length > 0) {
      const job = queue[0] as JobRecord;
      // The fair choice has work left but spreading holds it back from this worker: end the
      // request rather than give its turn to another client (that would hand a worker that
      // asks for many shards at once, as prefetching workers do, far more of the other
      // client's work than its share). A worker with nothing yet still gets other work.
      capped = grants.length > 0 && room.get(job) === 0 && hasFreshWork(job);
      if (capped) break;
      granted = grantOne(s, job, worker, e.nowMs, room, fx);
      // A job this worker cannot run, or has no more to give it now, is done for this request.
      if (!granted) queue.shift();
    }
    if (capped) break;
    if (!granted) {
      queues.delete(clientId);
      continue;
    }
    const job = queue[0] as JobRecord;
    chargeGrant(s.fairShare, clientId, shardCost(job, granted.lease.shardIndex));
    changed.add(job);
    grants.push(granted);
  }
  for (const job of changed) {
    job.version++;
    fx.push({ type: "job-changed", jobId: job.id });
  }
  return ok(grants);
}

/** True when `job` has shards never leased or waiting to run again. */
function hasFreshWork(job: JobRecord): boolean {
  return job.retryQueue.length > 0 || hasFreshTiles(job);
}

/** One lease of `job` for `worker` (a straggler's backup first), or undefined if it has none for it now. */
function grantOne(
  s: CoreState,
  job: JobRecord,
  worker: WorkerRecord,
  nowMs: number,
  room: Map<JobRecord, number>,
  fx: Effect[],
): Grant | undefined {
  if (job.finalizing || isTerminal(job.state)) return undefined;
  const offer = kernelFor(job, worker.kernels, s.config.limits.kernels);
  if (!offer) return undefined;
  // Spreading: a worker takes at most its share of the job's unleased shards (and at least
  // one per thread) in one request, so a job of a few shards is spread over the workers
  // instead of queued behind one worker's threads. Jobs of many shards are not held back.
  let left = room.get(job);
  if (left === undefined) left = s.config.spreadShards ? fairShare(s, job, worker) : Number.POSITIVE_INFINITY;
  if (left <= 0) return undefined;
  const grant = grantBackup(s, job, worker, nowMs, fx) ?? grantShard(s, job, worker, offer, nowMs, fx);
  if (grant) room.set(job, left - 1);
  return grant;
}

/** A straggler's backup: a second live lease with a higher epoch; the first valid result wins. */
function grantBackup(s: CoreState, job: JobRecord, worker: WorkerRecord, nowMs: number, fx: Effect[]): Grant | undefined {
  const backup = nextBackup(s, job, worker.id);
  if (backup < 0) return undefined;
  const epoch = s.nextEpoch++;
  s.leases.set(epoch, {
    epoch,
    jobId: job.id,
    shardIndex: backup,
    workerId: worker.id,
    grantedAtMs: nowMs,
    expiresAtMs: nowMs + s.config.leaseTtlMs,
  });
  worker.leases.add(epoch);
  job.shardBackupEpoch[backup] = epoch;
  fx.push({
    type: "log",
    level: "info",
    msg: "backup leased for straggler",
    fields: { jobId: job.id, shard: backup, epoch },
  });
  return {
    lease: { jobId: job.id, shardIndex: backup, epoch },
    kernel: job.kernel,
    ttlMs: s.config.leaseTtlMs,
    attempt: job.shardAttempts[backup] ?? 1,
    spec: job.spec,
    bounds: tileBounds(job.plan, backup),
    ...panelPeersFor(s, job, worker, backup),
  };
}

/** A retry or a fresh shard of `job`, pinning the job's kernel at its first grant. */
function grantShard(
  s: CoreState,
  job: JobRecord,
  worker: WorkerRecord,
  offer: KernelOffer,
  nowMs: number,
  fx: Effect[],
): Grant | undefined {
  const shard = nextShard(s, job, nowMs, worker, offer);
  if (shard < 0) return undefined;
  if (job.fingerprint === "") {
    // Pin the implementation at the first grant: a job's bytes never mix kernels.
    job.kernel = offer.name;
    job.fingerprint = offer.fingerprint;
    fx.push({
      type: "persist",
      record: {
        type: "kernel-pinned",
        jobId: job.id,
        kernel: offer.name,
        fingerprint: offer.fingerprint,
        startedAtMs: nowMs,
      },
    });
  }
  const epoch = s.nextEpoch++;
  const lease: LeaseRecord = {
    epoch,
    jobId: job.id,
    shardIndex: shard,
    workerId: worker.id,
    grantedAtMs: nowMs,
    expiresAtMs: nowMs + s.config.leaseTtlMs,
  };
  s.leases.set(epoch, lease);
  worker.leases.add(epoch);
  job.shardStatus[shard] = ShardStatus.leased;
  job.shardEpoch[shard] = epoch;
  job.shardAttempts[shard] = (job.shardAttempts[shard] ?? 0) + 1;
  job.leasedCount++;
  if (job.state === "queued") {
    job.state = "running";
    job.startedAtMs = nowMs;
    fx.push({
      type: "log",
      level: "info",
      msg: "job started",
      fields: { jobId: job.id, kernel: job.kernel, workerId: worker.id },
    });
  }
  return {
    lease: { jobId: job.id, shardIndex: shard, epoch },
    kernel: job.kernel,
    ttlMs: s.config.leaseTtlMs,
    attempt: job.shardAttempts[shard] ?? 1,
    spec: job.spec,
    bounds: tileBounds(job.plan, shard),
    ...panelPeersFor(s, job, worker, shard),
  };
}

/**
 * How many more shards of `job` `worker` may take now: the job's shards not yet done,
 * divided among the unquarantined workers that can run it (rounded up), less the ones
 * this worker already holds; at least the worker's thread count.
 */
function fairShare(s: CoreState, job: JobRecord, worker: WorkerRecord): number {
  let takers = 0;
  for (const w of s.workers.values()) {
    if (!isShutOut(s, w) && kernelFor(job, w.kernels, s.config.limits.kernels)) takers++;
  }
  let held = 0;
  for (const epoch of worker.leases) if (s.leases.get(epoch)?.jobId === job.id) held++;
  const share = Math.ceil((job.plan.shardCount - job.doneCount) / Math.max(1, takers));
  return Math.max(worker.threads, 1, share - held);
}

/** Takes a straggler of `job` that still needs a backup and that `workerId` is not already running. -1 if none. */
function nextBackup(s: CoreState, job: JobRecord, workerId: WorkerId): number {
  const q = job.backupQueue;
  for (let i = 0; i < q.length; i++) {
    const shard = q[i] as number;
    const live = job.shardStatus[shard] === ShardStatus.leased && (job.shardBackupEpoch[shard] ?? 0) === 0;
    if (!live) {
      q.splice(i--, 1);
      continue;
    }
    if (s.leases.get(job.shardEpoch[shard] ?? 0)?.workerId === workerId) continue;
    q.splice(i, 1);
    return shard;
  }
  return -1;
}

/**
 * Takes the next grantable shard of `job` for `worker`: retries whose backoff has passed
 * first (of those, the first with the most of its A and B panels on the worker), then fresh
 * shards from the job's tile blocks. A retry whose last result from this worker's
 * identity was rejected is left for another identity while one that can run the job is
 * registered. -1 if none.
 */
function nextShard(s: CoreState, job: JobRecord, nowMs: number, worker: WorkerRecord, offer: KernelOffer): number {
  const q = job.retryQueue;
  let pick = -1;
  let held = -1;
  for (let i = 0; i < q.length && held < 2; i++) {
    const shard = q[i] as number;
    if ((job.shardNotBeforeMs[shard] ?? 0) > nowMs) continue;
    const avoid = job.shardAvoid.get(shard);
    if (avoid?.includes(worker.identity) && anotherTaker(s, job, avoid)) continue;
    const h = heldPanels(job, worker.id, shard);
    if (h > held) [pick, held] = [i, h];
  }
  if (pick >= 0) return q.splice(pick, 1)[0] as number;
  // The blocks are cut for the workers that can run the job as this grant pins it.
  const pinned = (w: WorkerRecord): boolean =>
    job.fingerprint === ""
      ? w.kernels.some((k) => k.name === offer.name && k.fingerprint === offer.fingerprint)
      : kernelFor(job, w.kernels, s.config.limits.kernels) !== undefined;
  return nextFreshShard(s, job, worker, pinned);
}

/** True when a registered, unquarantined worker whose identity is not in `avoid` can run `job`. */
function anotherTaker(s: CoreState, job: JobRecord, avoid: readonly string[]): boolean {
  for (const w of s.workers.values()) {
    if (avoid.includes(w.identity) || isShutOut(s, w)) continue;
    if (kernelFor(job, w.kernels, s.config.limits.kernels)) return true;
  }
  return false;
}

/**
 * Queues a backup execution for shards that run much longer than their job's
 * median (only once most of the job is done, when a straggler holds everyone up).
 */
export function findStragglers(s: CoreState, nowMs: number, fx: Effect[]): void {
  for (const id of s.activeJobs) {
    const job = s.jobs.get(id);
    if (!job || job.finalizing || job.leasedCount === 0 || job.durationsMs.length === 0) continue;
    if (job.doneCount < job.plan.shardCount * s.config.stragglerMinDoneFraction) continue;
    const sorted = [...job.durationsMs].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)] as number;
    const limit = Math.max(1, median * s.config.stragglerFactor);
    let queued = false;
    for (let shard = 0; shard < job.plan.shardCount; shard++) {
      if (job.shardStatus[shard] !== ShardStatus.leased || (job.shardBackupEpoch[shard] ?? 0) !== 0) continue;
      const primary = s.leases.get(job.shardEpoch[shard] ?? 0);
      if (!primary || nowMs - primary.grantedAtMs <= limit || job.backupQueue.includes(shard)) continue;
      job.backupQueue.push(shard);
      queued = true;
    }
    if (queued) fx.push({ type: "shards-available" });
  }
}
