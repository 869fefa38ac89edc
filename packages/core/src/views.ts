import type { JobRecord } from "./state.js";

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
}

/** Snapshots a job. */
export function viewJob(job: JobRecord): JobView {
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
  };
}
