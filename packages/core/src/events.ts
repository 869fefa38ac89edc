import type { Result } from "./errors.js";
import type { ClientId, JobId, WorkerId } from "./ids.js";
import type { PanelPeer } from "./panel-holders.js";
import type { TileBounds } from "./plan.js";
import type { DurableRecord } from "./records.js";
import type { MatMulSpec, MatMulSpecInput } from "./spec.js";
import type { KernelOffer } from "./state.js";

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
  /** The job's priority within its client, an integer in -100..100; default 0. */
  priority?: number;
  /** The weight of the client's token (an integer in 1..1000, default 1), as the shell authenticated it. */
  weight?: number;
  /** How long to keep the job after it ends, in ms; 0 or absent: the configured default. */
  retentionMs?: number;
}
/** A client (or an admin, acting as the owner) asked to delete a job; a running one is cancelled first. */
export interface JobDeleteRequested {
  type: "job-delete-requested";
  nowMs: number;
  clientId: ClientId;
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
  /** host:port the worker's panel server listens on (validated by the shell); "" = it serves no peers. */
  peerAddress: string;
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
/**
 * After a restart the shell found no result buffer for an active job whose journal lists
 * accepted tiles: their bytes are gone, so every accepted tile is computed again.
 */
export interface ResultBufferLost {
  type: "result-buffer-lost";
  nowMs: number;
  jobId: JobId;
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
  | JobDeleteRequested
  | WorkerRegistered
  | ShardsRequested
  | HeartbeatReceived
  | ShardCompleted
  | ShardRejected
  | ShardFailed
  | Ticked
  | ResultFinalized
  | ResultFailed
  | ResultBufferLost
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
  /**
   * Up to two other workers that hold or fetch the A row panel this tile needs (granted
   * a shard of the same tile row), earliest first; see panel-holders.ts.
   */
  readonly aPeers: readonly PanelPeer[];
  /** The same for the B column panel (granted a shard of the same tile column). */
  readonly bPeers: readonly PanelPeer[];
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
  /** ok once the job is gone; `cancelled`: it was still queued or running and was cancelled first. */
  "job-delete-requested": Result<{ jobId: JobId; cancelled: boolean }>;
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
  /** ok with the number of accepted tiles that run again (0 for a job already over). */
  "result-buffer-lost": Result<{ tiles: number }>;
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
  /**
   * A job was deleted (by its client or by retention): it is gone from the state, and the
   * blobs it named (`blobIds`: A, B and C) may now be unreferenced. The shell drops what
   * it holds for the job and may start a blob garbage-collection pass.
   */
  | { type: "job-deleted"; jobId: JobId; blobIds: string[] }
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
