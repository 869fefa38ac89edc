import type { DurableRecord } from "./durable.js";
import { err, ok, type Result } from "./errors.js";
import type { ClientId, JobId, WorkerId } from "./ids.js";
import { type TileBounds, tileBounds, tileSizeBytes } from "./plan.js";
import { judgeShardDeaths, observeLeaseEnd } from "./poison.js";
import { applyQuarantineRule, checkIdentity, countRejection, isShutOut, shutOutError } from "./quarantine.js";
import { recordDeaths } from "./shard-deaths.js";
import { type MatMulSpec, type MatMulSpecInput, sameSpec, validateMatMulSpec } from "./spec.js";
import {
  type CoreState,
  createJobRecord,
  isTerminal,
  type JobRecord,
  type KernelOffer,
  type LeaseRecord,
  ShardStatus,
  type WorkerRecord,
} from "./state.js";
import { clipCodePoints, quote } from "./text.js";

// ---------------------------------------------------------------------------
// Events: what happened. Every input the decision depends on (time, fresh ids,
// random jitter) is a field of the event, so a run replays from its event list.
// ---------------------------------------------------------------------------

/** A client submitted a job. `jobId` is a fresh id chosen by the shell (used only if a job is created). */
export interface JobSubmitted {
  type: "job-submitted";
  nowMs: number;
  clientId: ClientId;
  idempotencyKey: string;
  spec: MatMulSpecInput;
  jobId: JobId;
}
/** A client asked to cancel a job. */
export interface JobCancelRequested {
  type: "job-cancel-requested";
  nowMs: number;
  clientId: ClientId;
  jobId: JobId;
  reason: string;
}
/** A worker registered; `workerId` is fresh, chosen by the shell. */
export interface WorkerRegistered {
  type: "worker-registered";
  nowMs: number;
  workerId: WorkerId;
  name: string;
  kernels: readonly KernelOffer[];
  threads: number;
  /**
   * The worker's authenticated identity (its certificate subject); defaults to `name`
   * when the shell has no stronger identity. See `quarantine.ts` for how rejected results
   * count against the worker and against its identity.
   */
  identity?: string;
}
/** A worker asked for up to `maxShards` leases. */
export interface ShardsRequested {
  type: "shards-requested";
  nowMs: number;
  workerId: WorkerId;
  maxShards: number;
}
/** Identifies a lease on the wire. */
export interface LeaseKey {
  jobId: JobId;
  shardIndex: number;
  epoch: number;
}
/** A worker renewed its leases. */
export interface HeartbeatReceived {
  type: "heartbeat-received";
  nowMs: number;
  workerId: WorkerId;
  leases: readonly LeaseKey[];
}
/** A worker reported a shard's result of `sizeBytes` bytes (the bytes stay in the shell). */
export interface ShardCompleted {
  type: "shard-completed";
  nowMs: number;
  workerId: WorkerId;
  lease: LeaseKey;
  sizeBytes: number;
}
/**
 * The shell checked a worker's result for `lease` and found it wrong (the bytes stay in
 * the shell and are dropped). The worker's identity is charged whether or not the lease
 * is still live; a live lease ends and its shard runs again, on another identity if one
 * can take it.
 */
export interface ShardRejected {
  type: "shard-rejected";
  nowMs: number;
  workerId: WorkerId;
  lease: LeaseKey;
  reason: string;
}
/** A worker reported a shard failure, or handed a lease back unstarted (`release`). `jitter` ∈ [0,1). */
export interface ShardFailed {
  type: "shard-failed";
  nowMs: number;
  workerId: WorkerId;
  lease: LeaseKey;
  error: string;
  release: boolean;
  jitter: number;
}
/** Time passed: expire leases and forget silent workers. `jitter` ∈ [0,1) spreads retries. */
export interface Ticked {
  type: "ticked";
  nowMs: number;
  jitter: number;
}
/** The shell assembled a job's result. */
export interface ResultFinalized {
  type: "result-finalized";
  nowMs: number;
  jobId: JobId;
  resultBlobId: string;
}
/** The shell could not store a tile or assemble the result. */
export interface ResultFailed {
  type: "result-failed";
  nowMs: number;
  jobId: JobId;
  message: string;
}
/** The coordinator stops granting work (graceful shutdown). */
export interface DrainStarted {
  type: "drain-started";
  nowMs: number;
}

/** Every event the core accepts. */
export type CoreEvent =
  | JobSubmitted
  | JobCancelRequested
  | WorkerRegistered
  | ShardsRequested
  | HeartbeatReceived
  | ShardCompleted
  | ShardRejected
  | ShardFailed
  | Ticked
  | ResultFinalized
  | ResultFailed
  | DrainStarted;

// ---------------------------------------------------------------------------
// Outcomes (the answer to the event's sender) and effects (work for the shell).
// ---------------------------------------------------------------------------

/** A granted lease with everything the worker needs to run it. */
export interface Grant {
  readonly lease: LeaseKey;
  readonly kernel: string;
  readonly ttlMs: number;
  readonly attempt: number;
  readonly spec: MatMulSpec;
  readonly bounds: TileBounds;
}

/** What a heartbeat tells the worker about one lease. */
export interface LeaseCheck {
  readonly lease: LeaseKey;
  readonly state: "active" | "cancelled" | "lost";
  readonly ttlMs: number;
}

/** The typed answer for each event type. */
export interface OutcomeMap {
  "job-submitted": Result<{ jobId: JobId; created: boolean }>;
  "job-cancel-requested": Result<{ jobId: JobId }>;
  "worker-registered": Result<{ workerId: WorkerId }>;
  "shards-requested": Result<Grant[]>;
  "heartbeat-received": Result<LeaseCheck[]>;
  "shard-completed": Result<{ bounds: TileBounds }>;
  /**
   * ok once the rejection is recorded. `leaseEnded`: the lease was live and is over;
   * `requeued`: its shard runs again (false when a straggler twin carries on);
   * `quarantined`: this rejection shut the sending worker out (it or its identity was
   * quarantined); `identityQuarantined`: its identity was, so every worker presenting it is.
   */
  "shard-rejected": Result<{ leaseEnded: boolean; requeued: boolean; quarantined: boolean; identityQuarantined: boolean }>;
  "shard-failed": Result<{ jobFailed: boolean }>;
  ticked: Result<{ expired: number }>;
  "result-finalized": Result<null>;
  "result-failed": Result<null>;
  "drain-started": Result<null>;
}

/** Work the shell must carry out, in order. */
export type Effect =
  /** Make a fact durable before the reply to this event leaves (see DurableRecord). */
  | { type: "persist"; record: DurableRecord }
  /** Create the file-backed buffer that tiles of a new job are written into. */
  | { type: "prepare-result"; jobId: JobId; rows: number; cols: number }
  /** Write the accepted tile (bytes held by the shell for this request) at its place in C. */
  | { type: "write-tile"; jobId: JobId; shardIndex: number; bounds: TileBounds }
  /** Every tile is written: seal C and report `result-finalized` (or `result-failed`). */
  | { type: "finalize-result"; jobId: JobId }
  /** Drop a job's partial result (cancelled or failed). */
  | { type: "discard-result"; jobId: JobId }
  /** A job's status changed: wake whoever long-polls it. */
  | { type: "job-changed"; jobId: JobId }
  /** Shards became grantable: wake long-polling workers. */
  | { type: "shards-available" }
  /** Something worth a log line (job failures, retries, forgotten workers). */
  | { type: "log"; level: "info" | "warn" | "error"; msg: string; fields: Record<string, string | number> };

/** Result of one {@link step}. */
export interface StepResult<T> {
  readonly outcome: T;
  readonly effects: Effect[];
}

/**
 * Applies one event to the coordinator state and returns the answer for its sender
 * and the effects the shell must carry out. Deterministic: it reads no clock, no
 * randomness and does no I/O; `state` is updated in place (the shell owns the only
 * copy), and the same initial state fed the same events always yields the same
 * outcomes and effects. It never throws for expected outcomes.
 */
export function step<E extends CoreEvent>(state: CoreState, event: E): StepResult<OutcomeMap[E["type"]]> {
  const fx: Effect[] = [];
  const outcome = dispatch(state, event, fx);
  return { outcome: outcome as OutcomeMap[E["type"]], effects: fx };
}

function dispatch(s: CoreState, e: CoreEvent, fx: Effect[]): OutcomeMap[CoreEvent["type"]] {
  switch (e.type) {
    case "job-submitted":
      return submit(s, e, fx);
    case "job-cancel-requested":
      return cancel(s, e, fx);
    case "worker-registered":
      return register(s, e);
    case "shards-requested":
      return acquire(s, e, fx);
    case "heartbeat-received":
      return heartbeat(s, e);
    case "shard-completed":
      return complete(s, e, fx);
    case "shard-rejected":
      return rejected(s, e, fx);
    case "shard-failed":
      return fail(s, e, fx);
    case "ticked":
      return tick(s, e, fx);
    case "result-finalized":
      return finalized(s, e, fx);
    case "result-failed":
      return resultFailed(s, e, fx);
    case "drain-started":
      s.draining = true;
      return ok(null);
  }
}

// ---------------------------------------------------------------------------

function submit(s: CoreState, e: JobSubmitted, fx: Effect[]): OutcomeMap["job-submitted"] {
  const v = validateMatMulSpec(e.spec, s.config.limits);
  if (!v.ok) return v;
  const spec = v.value;
  const idemKey = e.idempotencyKey === "" ? "" : `${e.clientId}\u0000${e.idempotencyKey}`;
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
  });
  const plan = job.plan;
  s.jobs.set(job.id, job);
  s.activeJobs.push(job.id);
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
    },
  });
  fx.push({ type: "prepare-result", jobId: job.id, rows: plan.rows, cols: plan.cols });
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "shards-available" });
  return ok({ jobId: job.id, created: true });
}

function cancel(s: CoreState, e: JobCancelRequested, fx: Effect[]): OutcomeMap["job-cancel-requested"] {
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

function register(s: CoreState, e: WorkerRegistered): OutcomeMap["worker-registered"] {
  if (s.workers.has(e.workerId)) return err({ kind: "invalid-spec", message: `worker id ${e.workerId} is already in use` });
  const identity = e.identity ?? e.name;
  const refused = checkIdentity(s, identity);
  if (!refused.ok) return refused;
  // An empty fingerprint would leave a job unpinned and let it mix kernel builds.
  const blank = e.kernels.find((k) => k.name === "" || k.fingerprint === "");
  if (blank) return err({ kind: "invalid-spec", message: "every kernel needs a non-empty name and fingerprint" });
  s.workers.set(e.workerId, {
    id: e.workerId,
    name: e.name,
    identity,
    kernels: e.kernels.map((k) => ({ name: k.name, fingerprint: k.fingerprint })),
    threads: e.threads,
    lastSeenMs: e.nowMs,
    failureStreak: 0,
    throttledUntilMs: 0,
    leases: new Set(),
    rejectedResults: 0,
    quarantinedAtMs: 0,
  });
  return ok({ workerId: e.workerId });
}

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

function acquire(s: CoreState, e: ShardsRequested, fx: Effect[]): OutcomeMap["shards-requested"] {
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
  for (const jobId of s.activeJobs) {
    if (grants.length >= want) break;
    const job = s.jobs.get(jobId);
    if (!job || job.finalizing || isTerminal(job.state)) continue;
    const offer = kernelFor(job, worker.kernels, s.config.limits.kernels);
    if (!offer) continue;
    let changed = false;
    // Fair share: a worker takes at most its share of the job's unleased shards (and at
    // least one per thread), so a job of a few shards is spread over the workers instead
    // of queued behind one worker's threads. Jobs of many shards are not held back.
    const stop = s.config.spreadShards ? grants.length + fairShare(s, job, worker) : want;
    while (grants.length < want && grants.length < stop) {
      const backup = nextBackup(s, job, worker.id);
      if (backup >= 0) {
        // A straggler's backup: a second live lease with a higher epoch; the first valid result wins.
        const epoch = s.nextEpoch++;
        s.leases.set(epoch, {
          epoch,
          jobId: job.id,
          shardIndex: backup,
          workerId: worker.id,
          grantedAtMs: e.nowMs,
          expiresAtMs: e.nowMs + s.config.leaseTtlMs,
        });
        worker.leases.add(epoch);
        job.shardBackupEpoch[backup] = epoch;
        changed = true;
        fx.push({
          type: "log",
          level: "info",
          msg: "backup leased for straggler",
          fields: { jobId: job.id, shard: backup, epoch },
        });
        grants.push({
          lease: { jobId: job.id, shardIndex: backup, epoch },
          kernel: job.kernel,
          ttlMs: s.config.leaseTtlMs,
          attempt: job.shardAttempts[backup] ?? 1,
          spec: job.spec,
          bounds: tileBounds(job.plan, backup),
        });
        continue;
      }
      const shard = nextShard(s, job, e.nowMs, worker);
      if (shard < 0) break;
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
            startedAtMs: e.nowMs,
          },
        });
      }
      const epoch = s.nextEpoch++;
      const lease: LeaseRecord = {
        epoch,
        jobId: job.id,
        shardIndex: shard,
        workerId: worker.id,
        grantedAtMs: e.nowMs,
        expiresAtMs: e.nowMs + s.config.leaseTtlMs,
      };
      s.leases.set(epoch, lease);
      worker.leases.add(epoch);
      job.shardStatus[shard] = ShardStatus.leased;
      job.shardEpoch[shard] = epoch;
      job.shardAttempts[shard] = (job.shardAttempts[shard] ?? 0) + 1;
      job.leasedCount++;
      if (job.state === "queued") {
        job.state = "running";
        job.startedAtMs = e.nowMs;
        fx.push({
          type: "log",
          level: "info",
          msg: "job started",
          fields: { jobId: job.id, kernel: job.kernel, workerId: worker.id },
        });
      }
      changed = true;
      grants.push({
        lease: { jobId: job.id, shardIndex: shard, epoch },
        kernel: job.kernel,
        ttlMs: s.config.leaseTtlMs,
        attempt: job.shardAttempts[shard] ?? 1,
        spec: job.spec,
        bounds: tileBounds(job.plan, shard),
      });
    }
    if (changed) {
      job.version++;
      fx.push({ type: "job-changed", jobId: job.id });
    }
  }
  return ok(grants);
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
 * first, then fresh shards. A retry whose last result from this worker's identity was
 * rejected is left for another identity while one that can run the job is registered.
 * -1 if none.
 */
function nextShard(s: CoreState, job: JobRecord, nowMs: number, worker: WorkerRecord): number {
  const q = job.retryQueue;
  for (let i = 0; i < q.length; i++) {
    const shard = q[i] as number;
    if ((job.shardNotBeforeMs[shard] ?? 0) > nowMs) continue;
    const avoid = job.shardAvoid.get(shard);
    if (avoid?.includes(worker.identity) && anotherTaker(s, job, avoid)) continue;
    q.splice(i, 1);
    return shard;
  }
  while (job.cursor < job.plan.shardCount) {
    const shard = job.cursor++;
    if (job.shardStatus[shard] === ShardStatus.pending) return shard;
  }
  return -1;
}

/** True when a registered, unquarantined worker whose identity is not in `avoid` can run `job`. */
function anotherTaker(s: CoreState, job: JobRecord, avoid: readonly string[]): boolean {
  for (const w of s.workers.values()) {
    if (avoid.includes(w.identity) || isShutOut(s, w)) continue;
    if (kernelFor(job, w.kernels, s.config.limits.kernels)) return true;
  }
  return false;
}

/** Classifies a report about `key` from `workerId`: the live lease, or why it is not valid. */
function checkLease(
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

function heartbeat(s: CoreState, e: HeartbeatReceived): OutcomeMap["heartbeat-received"] {
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

function dropLease(s: CoreState, lease: LeaseRecord): void {
  s.leases.delete(lease.epoch);
  s.workers.get(lease.workerId)?.leases.delete(lease.epoch);
}

/**
 * Ends one of a shard's live leases. If the shard still has its other execution
 * (primary or straggler backup), that one carries on as the primary and true is
 * returned; otherwise the shard has no live lease left (the caller decides what next).
 */
function endLease(s: CoreState, job: JobRecord, lease: LeaseRecord): boolean {
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

/** Counts a failed or expired execution against its worker; a worker that keeps failing is throttled. */
function chargeFailure(s: CoreState, workerId: WorkerId, nowMs: number, fx: Effect[]): void {
  const w = s.workers.get(workerId);
  if (!w) return;
  w.failureStreak++;
  const over = w.failureStreak - s.config.throttleAfterFailures;
  if (over >= 0) {
    const ms = Math.min(s.config.throttleMaxMs, s.config.throttleBaseMs * 2 ** over);
    w.throttledUntilMs = nowMs + ms;
    fx.push({
      type: "log",
      level: "warn",
      msg: "worker throttled",
      fields: { workerId: w.id, name: w.name, failures: w.failureStreak, ms },
    });
  }
}

/** A worker's report about one of its leases: the worker is seen, and the lease must be live and its own. */
function reportedLease(
  s: CoreState,
  e: ShardCompleted | ShardFailed,
): Result<{ worker: WorkerRecord; job: JobRecord; lease: LeaseRecord }> {
  const worker = s.workers.get(e.workerId);
  if (!worker) return err({ kind: "worker-not-found", workerId: e.workerId });
  worker.lastSeenMs = e.nowMs;
  const r = checkLease(s, e.workerId, e.lease, e.nowMs);
  return r.ok ? ok({ worker, ...r.value }) : r;
}

function complete(s: CoreState, e: ShardCompleted, fx: Effect[]): OutcomeMap["shard-completed"] {
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

/** Puts a shard back for another execution, or fails its job when attempts are exhausted. */
function requeue(s: CoreState, job: JobRecord, shard: number, nowMs: number, jitter: number, why: string, fx: Effect[]): void {
  job.shardStatus[shard] = ShardStatus.pending;
  const attempts = job.shardAttempts[shard] ?? 0;
  if (attempts >= s.config.maxAttempts) {
    const message = `shard ${shard} failed ${attempts} times (maxAttempts=${s.config.maxAttempts}); last error: ${why}`;
    endJob(s, job, "failed", message, nowMs, fx);
    return;
  }
  const backoff = Math.min(s.config.retryMaxMs, s.config.retryBaseMs * 2 ** Math.max(0, attempts - 1));
  job.shardNotBeforeMs[shard] = nowMs + Math.floor(backoff * (0.5 + jitter));
  job.retryQueue.push(shard);
  job.retriedCount++;
  job.version++;
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "shards-available" });
}

function fail(s: CoreState, e: ShardFailed, fx: Effect[]): OutcomeMap["shard-failed"] {
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

function rejected(s: CoreState, e: ShardRejected, fx: Effect[]): OutcomeMap["shard-rejected"] {
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

function tick(s: CoreState, e: Ticked, fx: Effect[]): OutcomeMap["ticked"] {
  let expired = 0;
  // Collect first: requeue may end a job, which removes that job's leases from the map.
  const due: LeaseRecord[] = [];
  for (const lease of s.leases.values()) if (lease.expiresAtMs <= e.nowMs) due.push(lease);
  // Every death of the tick is recorded before any is judged: a mass expiry is the fleet's.
  const charged = recordDeaths(s, due, e.nowMs, fx);
  for (const lease of due) {
    expired++; // also one that its job's failure earlier in this tick already ended
    if (!s.leases.has(lease.epoch)) continue;
    const job = s.jobs.get(lease.jobId);
    if (!job) continue;
    chargeFailure(s, lease.workerId, e.nowMs, fx);
    fx.push({
      type: "log",
      level: "warn",
      msg: "lease expired",
      // charged: counted as a death of the shard (a lease its worker was running, shard-deaths.ts)
      fields: {
        jobId: job.id,
        shard: lease.shardIndex,
        epoch: lease.epoch,
        workerId: lease.workerId,
        charged: charged.has(lease.epoch) ? 1 : 0,
      },
    });
    const shard = lease.shardIndex;
    const why = `lease epoch ${lease.epoch} held by worker ${lease.workerId} expired`;
    // A death is not a failed attempt: only the death rule (poison.ts) can fail the job for it,
    // even while a straggler twin still runs the shard (a poison shard's twins die too).
    const deaths = charged.has(lease.epoch) ? job.shardDeaths.get(shard) : undefined;
    const verdict = deaths ? judgeShardDeaths(deaths, s.leaseEnds, s.config) : ({ poison: false } as const);
    if (verdict.poison) {
      job.shardLastError.set(shard, why);
      endJob(s, job, "failed", `shard ${shard}: ${verdict.reason}; last error: ${why}`, e.nowMs, fx);
      continue;
    }
    if (endLease(s, job, lease)) continue; // its straggler twin goes on
    job.shardLastError.set(shard, why);
    job.shardAttempts[shard] = Math.max(0, (job.shardAttempts[shard] ?? 1) - 1);
    requeue(s, job, shard, e.nowMs, e.jitter, why, fx);
  }
  for (const w of [...s.workers.values()]) {
    if (w.leases.size === 0 && e.nowMs - w.lastSeenMs > s.config.workerTtlMs) {
      s.workers.delete(w.id);
      fx.push({ type: "log", level: "info", msg: "worker forgotten", fields: { workerId: w.id, name: w.name } });
    }
  }
  if (s.config.stragglerFactor > 0) findStragglers(s, e.nowMs, fx);
  // Retry backoffs that ran out make shards grantable again.
  if (s.activeJobs.some((id) => (s.jobs.get(id)?.retryQueue.length ?? 0) > 0)) fx.push({ type: "shards-available" });
  return ok({ expired });
}

function finalized(s: CoreState, e: ResultFinalized, fx: Effect[]): OutcomeMap["result-finalized"] {
  const job = s.jobs.get(e.jobId);
  if (!job) return err({ kind: "job-not-found", jobId: e.jobId });
  if (!job.finalizing || isTerminal(job.state)) return ok(null); // cancelled meanwhile: nothing to do
  job.finalizing = false;
  job.resultBlobId = e.resultBlobId;
  job.state = "succeeded";
  job.finishedAtMs = e.nowMs;
  job.version++;
  s.activeJobs = s.activeJobs.filter((id) => id !== job.id);
  fx.push({
    type: "persist",
    record: { type: "job-succeeded", jobId: job.id, resultBlobId: e.resultBlobId, finishedAtMs: e.nowMs },
  });
  fx.push({ type: "job-changed", jobId: job.id });
  return ok(null);
}

function resultFailed(s: CoreState, e: ResultFailed, fx: Effect[]): OutcomeMap["result-failed"] {
  const job = s.jobs.get(e.jobId);
  if (!job) return err({ kind: "job-not-found", jobId: e.jobId });
  if (isTerminal(job.state)) return ok(null);
  endJob(s, job, "failed", `result could not be stored: ${e.message}`, e.nowMs, fx);
  return ok(null);
}

/** Moves a job to a terminal state other than succeeded and frees everything it holds. */
/**
 * Queues a backup execution for shards that run much longer than their job's
 * median (only once most of the job is done, when a straggler holds everyone up).
 */
function findStragglers(s: CoreState, nowMs: number, fx: Effect[]): void {
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

function endJob(s: CoreState, job: JobRecord, to: "failed" | "cancelled", message: string, nowMs: number, fx: Effect[]): void {
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
  job.version++;
  s.activeJobs = s.activeJobs.filter((id) => id !== job.id);
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
