/**
 * Plain data types of the dce client SDK. They carry no methods and convert
 * to JSON as-is (no `bigint`), so they are safe to log or print.
 *
 * @packageDocumentation
 */

/**
 * A dense float64 matrix in row-major (C) order: element `(i, j)` is
 * `data[i * cols + j]`, and `data.length === rows * cols`.
 */
export interface Matrix {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
  /** The `rows * cols` elements, row by row. */
  readonly data: Float64Array;
}

/**
 * A matrix already stored on the coordinator, as returned by
 * `DceClient.uploadMatrix`. Can be passed to `submitMatMul` instead of a
 * `Matrix` to reuse an upload.
 */
export interface MatrixRef {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
  /** Lower-case hex SHA-256 of the matrix bytes (little-endian float64, row-major). */
  readonly blobId: string;
}

/** Lifecycle state of a job. `succeeded`, `failed` and `cancelled` are terminal. */
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** The terminal job states: once reached, a job never changes again. */
export type TerminalJobState = Extract<JobState, "succeeded" | "failed" | "cancelled">;

/**
 * A snapshot of one job, converted from the wire `JobStatus`.
 *
 * Times are coordinator clock readings in milliseconds since the Unix epoch.
 */
export interface JobStatusInfo {
  /** The job's id. */
  readonly jobId: string;
  /** Lifecycle state. */
  readonly state: JobState;
  /** Number of shards (output tiles) in the plan. */
  readonly shardsTotal: number;
  /** Shards whose result was accepted. */
  readonly shardsDone: number;
  /** Shards currently leased to a worker. */
  readonly shardsLeased: number;
  /** Shard executions that failed or expired and were re-queued. */
  readonly shardsRetried: number;
  /** When the coordinator accepted the job. */
  readonly createdAtMs: number;
  /** When the first shard was leased; absent if none was yet. */
  readonly startedAtMs?: number;
  /** When the job reached a terminal state; absent while it runs. */
  readonly finishedAtMs?: number;
  /** Reason given for `failed` or `cancelled`; absent if none. */
  readonly error?: string;
  /** Kernel the job runs with (`"auto"` or empty until the first shard is leased). */
  readonly kernel: string;
  /** Rows of the result C. */
  readonly rows: number;
  /** Columns of the result C. */
  readonly cols: number;
  /** Rows of one output tile. */
  readonly tileRows: number;
  /** Columns of one output tile. */
  readonly tileCols: number;
  /** The priority it was submitted with (-100..100; see `SubmitOptions.priority`). */
  readonly priority: number;
  /** Increases on every change of the job. */
  readonly version: number;
  /**
   * When the coordinator deletes the finished job and its result (its retention ran
   * out); absent while the job is queued or running.
   */
  readonly expiresAtMs?: number;
  /** The client (token name) the job belongs to. */
  readonly owner: string;
}

/**
 * One progress update yielded by `JobHandle.progress()`: the status plus a rate
 * and ETA estimated by the client from the shards it saw finish over time.
 */
export interface JobProgress extends JobStatusInfo {
  /** Shards finished per second over the recent past; absent until it can be estimated. */
  readonly rateShardsPerSec?: number;
  /** Estimated milliseconds until every shard is done; absent while unknown, 0 once terminal. */
  readonly etaMs?: number;
}

/**
 * Options accepted last by every async SDK method.
 */
export interface RequestOptions {
  /**
   * Aborts the call. The promise rejects with `ConnectError` code `Canceled`.
   * Aborting a wait never cancels the job; only `JobHandle.cancel()` does.
   */
  readonly signal?: AbortSignal;
  /**
   * Timeout of each RPC the method makes, in milliseconds; defaults to the
   * client's `timeoutMs`. Long-polls get the server's wait time on top. An
   * expired timeout rejects with `ConnectError` code `DeadlineExceeded`.
   * To bound a whole wait, pass `signal: AbortSignal.timeout(ms)` instead.
   */
  readonly timeoutMs?: number;
}

/** Options of the methods that wait for a job (`progress`, `result`). */
export interface WaitOptions extends RequestOptions {
  /**
   * Least time between the starts of two status polls, in milliseconds.
   * Raise it to bound the RPC rate on jobs whose status changes often. The end of the job
   * is never held back by it: the pause is itself a long-poll that returns when the job ends.
   * Default 0 (every change is seen). `result()` ignores it: it long-polls for the end of the job.
   */
  readonly minIntervalMs?: number;
}
