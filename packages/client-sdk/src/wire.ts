/**
 * Conversions between SDK types and the `dce.v1` wire types. The only module
 * that knows the shape of `JobStatus` on the wire.
 *
 * @packageDocumentation
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { type JobStatus, JobState as WireJobState } from "@dce/proto";
import type { JobState, JobStatusInfo, TerminalJobState } from "./types.js";

// Record over the wire enum: a new wire state does not compile until mapped.
const STATE_NAMES: Record<WireJobState, JobState | undefined> = {
  [WireJobState.UNSPECIFIED]: undefined,
  [WireJobState.QUEUED]: "queued",
  [WireJobState.RUNNING]: "running",
  [WireJobState.SUCCEEDED]: "succeeded",
  [WireJobState.FAILED]: "failed",
  [WireJobState.CANCELLED]: "cancelled",
};

/** True for the states a job never leaves. */
export function isTerminal(state: JobState): state is TerminalJobState {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/**
 * Converts a wire status to the SDK type. int64 fields become numbers
 * (millisecond timestamps and versions stay far below 2^53); zero timestamps
 * and an empty error become absent fields.
 *
 * @throws ConnectError `Internal` if the coordinator sent an unknown state.
 */
export function fromWireStatus(s: JobStatus, expectedJobId?: string): JobStatusInfo {
  const state = STATE_NAMES[s.state];
  if (state === undefined) {
    throw new ConnectError(`coordinator sent job ${s.jobId} with unknown state ${String(s.state)}`, Code.Internal);
  }
  if (expectedJobId !== undefined && s.jobId !== "" && s.jobId !== expectedJobId) {
    throw new ConnectError(`coordinator answered for job ${s.jobId}, expected ${expectedJobId}`, Code.Internal);
  }
  const startedAtMs = Number(s.startedAtMs);
  const finishedAtMs = Number(s.finishedAtMs);
  return {
    jobId: s.jobId === "" && expectedJobId !== undefined ? expectedJobId : s.jobId,
    state,
    shardsTotal: s.shardsTotal,
    shardsDone: s.shardsDone,
    shardsLeased: s.shardsLeased,
    shardsRetried: s.shardsRetried,
    createdAtMs: Number(s.createdAtMs),
    ...(startedAtMs > 0 ? { startedAtMs } : {}),
    ...(finishedAtMs > 0 ? { finishedAtMs } : {}),
    ...(s.error !== "" ? { error: s.error } : {}),
    kernel: s.kernel,
    rows: s.rows,
    cols: s.cols,
    tileRows: s.tileRows,
    tileCols: s.tileCols,
    priority: s.priority,
    version: Number(s.version),
  };
}
