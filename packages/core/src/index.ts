/**
 * The pure core of dce: job-spec validation, the deterministic shard planner, the
 * lease table with fencing epochs, first-result-wins aggregation and the job state
 * machine, all behind one `step(state, event)` function. No I/O, clocks or
 * randomness: time, fresh ids and jitter arrive inside events.
 *
 * @packageDocumentation
 */

export { referencedBlobs } from "./blob-refs.js";
export type {
  DurableDeath,
  DurableJob,
  DurableModel,
  DurableQuarantine,
  DurableRecord,
  DurableSnapshot,
  Restored,
} from "./durable.js";
export { applyRecord, createDurableModel, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
export type { CoreError, Result } from "./errors.js";
export { describeError, err, ok } from "./errors.js";
export type {
  CoreEvent,
  DrainStarted,
  Effect,
  Grant,
  HeartbeatReceived,
  JobCancelRequested,
  JobDeleteRequested,
  JobSubmitted,
  LeaseCheck,
  LeaseKey,
  OutcomeMap,
  ResultBufferLost,
  ResultFailed,
  ResultFinalized,
  ShardCompleted,
  ShardFailed,
  ShardRejected,
  ShardsRequested,
  StepResult,
  Ticked,
  WorkerRegistered,
} from "./events.js";
export type { ClientShare, FairShareState } from "./fair-queue.js";
export { MAX_CLIENT_WEIGHT } from "./fair-queue.js";
export { MAX_JOB_PRIORITY, MIN_JOB_PRIORITY, shardCost } from "./fair-share.js";
export type { TileCheck, TileSums } from "./freivalds.js";
export {
  checkCostFlops,
  FREIVALDS_DETECTION_FACTOR,
  FREIVALDS_ROUNDS,
  judgeTileRows,
  PANEL_WIDTH,
  probePanel,
  probesFromWords,
} from "./freivalds.js";
export type { ClientId, JobId, WorkerId } from "./ids.js";
export { asClientId, asJobId, asWorkerId } from "./ids.js";
export { checkInvariants } from "./invariants.js";
export type { JobCursor, JobListQuery, JobPage } from "./job-list.js";
export { listJobs } from "./job-list.js";
export type { Plan, TileBounds } from "./plan.js";
export { planMatMul, tileBounds, tileSizeBytes } from "./plan.js";
export type { DeathVerdict, LeaseEnds, PoisonRule, ShardDeaths } from "./poison.js";
export {
  addShardDeath,
  createLeaseEnds,
  fleetDeathRate,
  judgeShardDeaths,
  observeLeaseEnd,
  restoredShardDeath,
} from "./poison.js";
export type { QuarantineDecision } from "./quarantine.js";
export { isShutOut, sameIdentityPeers } from "./quarantine.js";
export { checkCompletion, jobOf, resultOf } from "./queries.js";
export { expiresAtMsOf, retentionOf } from "./retention.js";
export type { MatMulSpec, MatMulSpecInput, MatrixDesc, SpecLimits } from "./spec.js";
export { autoTile, DEFAULT_SPEC_LIMITS, KERNEL_REGISTRY, sameSpec, validateMatMulSpec } from "./spec.js";
export type {
  CoreConfig,
  CoreState,
  IdentityRecord,
  JobRecord,
  JobStateName,
  KernelOffer,
  LeaseRecord,
  QuarantinedWorker,
  WorkerRecord,
} from "./state.js";
export { createCoreState, DEFAULT_CORE_CONFIG, idempotencyEntry, isTerminal, ShardStatus } from "./state.js";
export { step } from "./step.js";
export { clipCodePoints, ELLIPSIS, quote, toWellFormed } from "./text.js";
export type { JobView } from "./views.js";
export { viewJob } from "./views.js";
