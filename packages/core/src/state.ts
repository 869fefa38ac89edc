import { createFairShare, type FairShareState } from "./fair-queue.js";
import type { ClientId, JobId, WorkerId } from "./ids.js";
import type { PanelHolders } from "./panel-holders.js";
import { type Plan, planMatMul } from "./plan.js";
import { createLeaseEnds, type LeaseEnds, type ShardDeaths } from "./poison.js";
import { DEFAULT_SPEC_LIMITS, type MatMulSpec, type SpecLimits } from "./spec.js";
import type { TileBlock } from "./tile-blocks.js";

/** Lifecycle of a job: queued → running → succeeded | failed | cancelled. */
export type JobStateName = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** True for the states a job never leaves. */
export const isTerminal = (s: JobStateName): boolean => s === "succeeded" || s === "failed" || s === "cancelled";

/** Per-shard status codes held in {@link JobRecord.shardStatus}. */
export const ShardStatus = { pending: 0, leased: 1, done: 2 } as const;

/** A kernel implementation a worker advertised. */
export interface KernelOffer {
  readonly name: string;
  readonly fingerprint: string;
}

/** One job and its shards. Per-shard data lives in typed arrays so plans of a million shards stay cheap. */
export interface JobRecord {
  readonly id: JobId;
  readonly clientId: ClientId;
  readonly idempotencyKey: string;
  readonly spec: MatMulSpec;
  readonly plan: Plan;
  /** Set at submit, -100..100: within its client, a higher priority is granted first (fair-share.ts). */
  readonly priority: number;
  /** The weight of the client's token at submit, 1..1000 (fair-share.ts). */
  readonly weight: number;
  /** How long the job is kept after it ends, in ms, as its client asked; 0 = {@link CoreConfig.retentionMs}. */
  readonly retentionMs: number;
  state: JobStateName;
  createdAtMs: number;
  startedAtMs: number;
  finishedAtMs: number;
  /** Reason for failed / cancelled. */
  error: string;
  /** Bumped on every observable change (long-poll cursor). */
  version: number;
  /** Kernel the job runs with; "auto" until the first grant pins it. */
  kernel: string;
  /** Kernel fingerprint pinned at the first grant; "" until then. */
  fingerprint: string;
  /** ShardStatus per shard. */
  readonly shardStatus: Uint8Array;
  /** Epoch of the current lease (leased) or of the accepted execution (done); 0 if none. */
  readonly shardEpoch: Float64Array;
  /** Epoch of a straggler's backup lease, live alongside the primary; 0 if none. */
  readonly shardBackupEpoch: Float64Array;
  /** Lease-to-acceptance times of accepted shards, for the straggler median. */
  readonly durationsMs: number[];
  /** Leased shards that ran too long and wait for a backup execution. */
  backupQueue: number[];
  /** Executions started per shard (failed attempts count; released ones and deaths do not). */
  readonly shardAttempts: Uint16Array;
  /** Deaths of the workers that held each shard (sparse; see poison.ts). Durable. */
  readonly shardDeaths: Map<number, ShardDeaths>;
  /** Earliest time a re-queued shard may be granted again (retry backoff). */
  readonly shardNotBeforeMs: Float64Array;
  /** Last error reported for each shard that failed (sparse). */
  readonly shardLastError: Map<number, string>;
  /**
   * Worker identities whose result for a shard failed verification, or that died holding
   * it (sparse): the shard's retry goes to another identity while one that can run the
   * job is registered.
   */
  readonly shardAvoid: Map<number, string[]>;
  /**
   * The blocks its fresh (never leased) tiles are granted from (tile-blocks.ts); null
   * until its first fresh grant cuts the grid, and again once it ends. Not durable.
   */
  tileBlocks: TileBlock[] | null;
  /** Who was granted a shard of each A row panel and B column panel (panel-holders.ts); null until its first grant, and once it ends. Not durable. */
  panelHolders: PanelHolders | null;
  /** Shards handed back for another execution, in the order they came back. */
  retryQueue: number[];
  doneCount: number;
  leasedCount: number;
  retriedCount: number;
  /** All tiles accepted; waiting for the shell to assemble the result. */
  finalizing: boolean;
  /** Content address of C once succeeded. */
  resultBlobId: string;
}

/** A live lease: one grant of one shard to one worker, keyed by its fencing epoch. */
export interface LeaseRecord {
  readonly epoch: number;
  readonly jobId: JobId;
  readonly shardIndex: number;
  readonly workerId: WorkerId;
  readonly grantedAtMs: number;
  expiresAtMs: number;
}

/** A registered worker (one OS process). */
export interface WorkerRecord {
  readonly id: WorkerId;
  readonly name: string;
  /**
   * Who the worker is, as authenticated by the shell: the subject of its client
   * certificate, or its registered name when certificates are not in use. Rejected
   * results count against the worker and against its identity; see `quarantine.ts`.
   */
  readonly identity: string;
  readonly kernels: readonly KernelOffer[];
  readonly threads: number;
  /** host:port its panel server listens on, where peers fetch the A and B panels it holds; "" = serves no peers. */
  readonly peerAddress: string;
  lastSeenMs: number;
  /** Failed or expired executions in a row; reset by an accepted result. */
  failureStreak: number;
  /** A worker that keeps failing gets no leases until then. */
  throttledUntilMs: number;
  /**
   * When expired leases were last counted against it (`chargeExpiry`): leases that expire
   * with no word from the worker since then are the same loss of contact, charged once.
   */
  expiryChargedAtMs?: number;
  /** Epochs of the leases it holds. */
  readonly leases: Set<number>;
  /** When its leases last expired (it died, or stalled past its TTL); unset until then. See shard-deaths.ts. */
  diedAtMs?: number;
  /** Results of this registration that failed verification. */
  rejectedResults: number;
  /** When this registration was quarantined; 0 while it is not. A quarantined worker gets no leases. */
  quarantinedAtMs: number;
}

/** A worker registration quarantined for its own wrong results, as its identity remembers it. */
export interface QuarantinedWorker {
  readonly workerId: WorkerId;
  readonly name: string;
  readonly rejectedResults: number;
  readonly atMs: number;
}

/** What the coordinator remembers about one worker identity's rejected results. */
export interface IdentityRecord {
  readonly identity: string;
  /** Results of this identity that failed verification (since the coordinator started), over all its registrations. */
  rejectedResults: number;
  /** Registrations of this identity with at least one rejected result (since the coordinator started). */
  rejectingWorkers: number;
  /**
   * When the identity was quarantined; 0 while it is not. A quarantined identity gets no
   * leases and cannot register.
   */
  quarantinedAtMs: number;
  /** Its registrations quarantined for their own results (kept after the worker is forgotten). */
  readonly quarantinedWorkers: QuarantinedWorker[];
  /** Why its last result was rejected. */
  lastReason: string;
}

/** Tunables of the coordinator's decisions. */
export interface CoreConfig {
  /** A lease expires this long after grant or last renewal. */
  readonly leaseTtlMs: number;
  /** Reported failures (and rejected results) of one shard before its job fails (poison shard). */
  readonly maxAttempts: number;
  /**
   * Deaths of workers holding one shard after which its job fails, whatever the rest of the
   * fleet does; 0 never fails a job for deaths. Fewer deaths suffice when they follow the
   * shard rather than the fleet (poison.ts).
   */
  readonly maxShardDeaths: number;
  /** Distinct worker processes that must have died holding a shard before the death-rate rule may call it poison. */
  readonly poisonMinWorkers: number;
  /** The death-rate rule calls a shard poison once its deaths had at most this chance at the fleet's death rate (poison.ts). */
  readonly poisonMaxChance: number;
  /** First retry delay; doubles each attempt, with jitter in [0.5, 1.5). */
  readonly retryBaseMs: number;
  /** Cap on the retry delay. */
  readonly retryMaxMs: number;
  /** A worker unseen this long is forgotten (its leases expire on their own). */
  readonly workerTtlMs: number;
  /** Jobs that are queued or running at once, over all clients. */
  readonly maxActiveJobs: number;
  /** Jobs that one client may have queued or running at once. */
  readonly maxActiveJobsPerClient: number;
  /** A shard running longer than this × the job's median shard time gets a backup execution (0 disables). */
  readonly stragglerFactor: number;
  /** ...once at least this fraction of the job's shards is done. */
  readonly stragglerMinDoneFraction: number;
  /** Consecutive failures after which a worker is throttled. */
  readonly throttleAfterFailures: number;
  /** First throttle period; doubles per further failure, capped by throttleMaxMs. */
  readonly throttleBaseMs: number;
  readonly throttleMaxMs: number;
  /**
   * Results failing verification after which a worker registration is quarantined (no
   * more leases); its identity is quarantined (refused registration too) once that many
   * came from two or more of its registrations. 0 never quarantines. See `quarantine.ts`.
   */
  readonly quarantineAfterRejections: number;
  /**
   * Spread a job over the workers that can run it: one request takes at most the job's
   * unleased shards divided among those workers (rounded up), and at least one per
   * thread of the asking worker. Without it, a worker that asks first may take every
   * shard of a small job and run them one after another while the others idle.
   */
  readonly spreadShards: boolean;
  /**
   * A finished job (succeeded, failed, cancelled) is deleted this long after it ended,
   * unless it asked for its own retention at submit (job-deletion.ts).
   */
  readonly retentionMs: number;
  /** The longest retention a submit may ask for; a longer one is refused, and no job is kept longer. */
  readonly maxRetentionMs: number;
  readonly limits: SpecLimits;
}

/** Defaults for {@link CoreConfig}. */
export const DEFAULT_CORE_CONFIG: CoreConfig = {
  leaseTtlMs: 10_000,
  maxAttempts: 5,
  maxShardDeaths: 32,
  poisonMinWorkers: 3,
  poisonMaxChance: 1e-9,
  retryBaseMs: 100,
  retryMaxMs: 5_000,
  workerTtlMs: 60_000,
  maxActiveJobs: 1_000,
  maxActiveJobsPerClient: 256,
  stragglerFactor: 1.5,
  stragglerMinDoneFraction: 0.75,
  throttleAfterFailures: 3,
  throttleBaseMs: 1_000,
  throttleMaxMs: 30_000,
  quarantineAfterRejections: 3,
  spreadShards: true,
  retentionMs: 7 * 24 * 3_600_000,
  maxRetentionMs: 30 * 24 * 3_600_000,
  limits: DEFAULT_SPEC_LIMITS,
};

/**
 * The whole decision state of a coordinator. Only {@link step} changes it; the
 * same initial state and the same events always give the same state and decisions.
 */
export interface CoreState {
  readonly config: CoreConfig;
  /** Next fencing epoch to hand out; never decreases (persisted by durable shells). */
  nextEpoch: number;
  readonly jobs: Map<JobId, JobRecord>;
  /** Jobs that may still have shards to grant, oldest first. */
  activeJobs: JobId[];
  /** (client, idempotency key) → job, keyed by {@link idempotencyEntry}. */
  readonly idempotency: Map<string, JobId>;
  readonly workers: Map<WorkerId, WorkerRecord>;
  readonly leases: Map<number, LeaseRecord>;
  /** Worker identities with rejected results or a quarantine (durable: quarantines only). */
  readonly identities: Map<string, IdentityRecord>;
  /** Leases that ended since this coordinator started, and how many with their holder's death (not durable). */
  readonly leaseEnds: LeaseEnds;
  /** Weighted fair share between clients (not durable; see fair-share.ts). */
  readonly fairShare: FairShareState;
  /**
   * No finished job's retention runs out before this time (a lower bound, not durable):
   * the tick looks for jobs to delete only from then on (job-deletion.ts).
   */
  retentionDueMs: number;
  draining: boolean;
}

/** Creates an empty state. */
export function createCoreState(config: Partial<CoreConfig> = {}): CoreState {
  return {
    config: { ...DEFAULT_CORE_CONFIG, ...config },
    nextEpoch: 1,
    jobs: new Map(),
    activeJobs: [],
    idempotency: new Map(),
    workers: new Map(),
    leases: new Map(),
    identities: new Map(),
    leaseEnds: createLeaseEnds(),
    fairShare: createFairShare(),
    // 0: the first tick looks at every job (restored finished jobs may be due already).
    retentionDueMs: 0,
    draining: false,
  };
}

/** A fresh job record in state `queued`, every shard pending. Used by submit and by restart recovery. */
export function createJobRecord(init: {
  id: JobId;
  clientId: ClientId;
  idempotencyKey: string;
  spec: MatMulSpec;
  createdAtMs: number;
  /** Default 0. */
  priority?: number;
  /** Default 1. */
  weight?: number;
  retentionMs?: number;
}): JobRecord {
  const plan: Plan = planMatMul(init.spec);
  const n = plan.shardCount;
  return {
    ...init,
    priority: init.priority ?? 0,
    weight: init.weight ?? 1,
    retentionMs: init.retentionMs ?? 0,
    plan,
    state: "queued",
    startedAtMs: 0,
    finishedAtMs: 0,
    error: "",
    version: 1,
    kernel: init.spec.kernel,
    fingerprint: "",
    shardStatus: new Uint8Array(n),
    shardEpoch: new Float64Array(n),
    shardBackupEpoch: new Float64Array(n),
    durationsMs: [],
    backupQueue: [],
    shardAttempts: new Uint16Array(n),
    shardDeaths: new Map(),
    shardNotBeforeMs: new Float64Array(n),
    shardLastError: new Map(),
    shardAvoid: new Map(),
    tileBlocks: null,
    panelHolders: null,
    retryQueue: [],
    doneCount: 0,
    leasedCount: 0,
    retriedCount: 0,
    finalizing: false,
    resultBlobId: "",
  };
}

/** The key of {@link CoreState.idempotency} for a client's idempotency key: one job per pair. */
export function idempotencyEntry(clientId: string, idempotencyKey: string): string {
  return `${clientId}\u0000${idempotencyKey}`;
}
