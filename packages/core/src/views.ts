import { expiresAtMsOf } from "./retention.js";
import type { CoreConfig, JobRecord } from "./state.js";

/** A read-only snapshot of a job, as reported to clients. */
export interface JobView {
  readonly jobId: string;
  readonly state: JobRecord["state"];
  readonly shardsTotal: number;
  readonly shardsDone: number;
  readonly shardsLeased: number;
  readonly shardsRetried: number;
  readonly createdAtMs: number;
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  readonly error: string;
  readonly version: number;
  readonly kernel: string;
  readonly rows: number;
  readonly cols: number;
  readonly tileRows: number;
  readonly tileCols: number;
  /** Its priority within its client (-100..100). */
  readonly priority: number;
  /** When retention deletes the job (ms since the epoch); 0 while it is queued or running. */
  readonly expiresAtMs: number;
  /** The client the job belongs to. */
  readonly owner: string;
}

/** Snapshots a job; `config` gives the retention its expiry is computed with. */
export function viewJob(job: JobRecord, config: Pick<CoreConfig, "retentionMs" | "maxRetentionMs">): JobView {
  return {
    jobId: job.id,
    state: job.state,
    shardsTotal: job.plan.shardCount,
    shardsDone: job.doneCount,
    shardsLeased: job.leasedCount,
    shardsRetried: job.retriedCount,
    createdAtMs: job.createdAtMs,
    startedAtMs: job.startedAtMs,
    finishedAtMs: job.finishedAtMs,
    error: job.error,
    version: job.version,
    kernel: job.kernel,
    rows: job.plan.rows,
    cols: job.plan.cols,
    tileRows: job.plan.tileRows,
    tileCols: job.plan.tileCols,
    priority: job.priority,
    expiresAtMs: expiresAtMsOf(job, config),
    owner: job.clientId,
  };
}
