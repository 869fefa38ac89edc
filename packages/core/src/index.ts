/**
 * The pure core of dce: job-spec validation, the deterministic shard planner, the
 * lease table with fencing epochs, first-result-wins aggregation and the job state
 * machine, all behind one `step(state, event)` function. No I/O, clocks or
 * randomness: time, fresh ids and jitter arrive inside events.
 *
 * @packageDocumentation
 */
export { step, resultOf, jobOf } from "./step.js";
export type {
  CoreEvent,
  Effect,
  Grant,
  LeaseCheck,
  LeaseKey,
  OutcomeMap,
  StepResult,
  JobSubmitted,
  JobCancelRequested,
  WorkerRegistered,
  ShardsRequested,
  HeartbeatReceived,
  ShardCompleted,
  ShardFailed,
  Ticked,
  ResultFinalized,
  ResultFailed,
  DrainStarted,
} from "./step.js";
export { createCoreState, DEFAULT_CORE_CONFIG, ShardStatus, isTerminal } from "./state.js";
export type { CoreConfig, CoreState, JobRecord, JobStateName, KernelOffer, LeaseRecord, WorkerRecord } from "./state.js";
export { validateMatMulSpec, sameSpec, DEFAULT_SPEC_LIMITS, KERNEL_REGISTRY } from "./spec.js";
export type { MatMulSpec, MatMulSpecInput, MatrixDesc, SpecLimits } from "./spec.js";
export { planMatMul, tileBounds, tileSizeBytes } from "./plan.js";
export type { Plan, TileBounds } from "./plan.js";
export { describeError, ok, err } from "./errors.js";
export type { CoreError, Result } from "./errors.js";
export { checkInvariants } from "./invariants.js";
export { viewJob } from "./views.js";
export type { JobView } from "./views.js";
export { asJobId, asWorkerId, asClientId } from "./ids.js";
export type { JobId, WorkerId, ClientId } from "./ids.js";
