import { type CoreConfig, type CoreState, isTerminal, type JobRecord } from "./state.js";

// How long a finished job is kept: its own retention (asked for at submit) or the
// coordinator's default, never above the operator's maximum. The deletion itself is
// job-deletion.ts.

/** The retention that applies to `job`, in ms: its own, or the default, never above the maximum. */
export function retentionOf(job: JobRecord, config: Pick<CoreConfig, "retentionMs" | "maxRetentionMs">): number {
  return Math.min(job.retentionMs > 0 ? job.retentionMs : config.retentionMs, config.maxRetentionMs);
}

/** When retention deletes `job` (ms since the epoch); 0 while it is queued or running. */
export function expiresAtMsOf(job: JobRecord, config: Pick<CoreConfig, "retentionMs" | "maxRetentionMs">): number {
  return isTerminal(job.state) ? job.finishedAtMs + retentionOf(job, config) : 0;
}

/**
 * Keeps {@link CoreState.retentionDueMs} a lower bound of every finished job's expiry:
 * called whenever a job reaches a terminal state.
 */
export function noteFinished(s: CoreState, job: JobRecord): void {
  s.retentionDueMs = Math.min(s.retentionDueMs, expiresAtMsOf(job, s.config));
}
