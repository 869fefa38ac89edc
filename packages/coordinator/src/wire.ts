import { create } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import {
  asJobId,
  type CoreError,
  describeError,
  type Grant,
  type JobStateName,
  type JobView,
  type LeaseCheck,
  type LeaseKey,
} from "@dce/core";
import {
  ErrorReason,
  JobState,
  type JobStatus,
  JobStatusSchema,
  type LeaseRef,
  LeaseRefSchema,
  LeaseState,
  type LeaseStatus,
  LeaseStatusSchema,
  type ShardLease,
  ShardLeaseSchema,
} from "@dce/proto";
import { dceError, type ErrorMetadata, malformedRequest } from "./errors.js";

/**
 * Transport code for every core error kind. Exhaustive by type: a new kind does not
 * compile until it is mapped here. The README's error table mirrors this one.
 */
export const CODE_OF_ERROR: Record<CoreError["kind"], Code> = {
  "invalid-spec": Code.InvalidArgument,
  "job-not-found": Code.NotFound,
  "worker-not-found": Code.NotFound,
  "job-exists": Code.AlreadyExists,
  "stale-fence": Code.Aborted,
  "lease-lost": Code.Aborted,
  "lease-revoked": Code.Aborted,
  "already-completed": Code.AlreadyExists,
  "not-lease-holder": Code.PermissionDenied,
  "invalid-result": Code.InvalidArgument,
  "result-rejected": Code.FailedPrecondition,
  "worker-quarantined": Code.PermissionDenied,
  "job-finished": Code.FailedPrecondition,
  "result-not-ready": Code.FailedPrecondition,
  "over-capacity": Code.ResourceExhausted,
  "over-limit": Code.ResourceExhausted,
  draining: Code.Unavailable,
};

/**
 * ErrorInfo reason for every core error kind, beside {@link CODE_OF_ERROR} and
 * exhaustive like it: a new kind does not compile until it has both a code and a
 * reason. docs/errors.md mirrors this table.
 */
export const REASON_OF_ERROR: Record<CoreError["kind"], ErrorReason> = {
  "invalid-spec": ErrorReason.INVALID_SPEC,
  "job-not-found": ErrorReason.JOB_NOT_FOUND,
  "worker-not-found": ErrorReason.WORKER_NOT_FOUND,
  "job-exists": ErrorReason.JOB_EXISTS,
  "stale-fence": ErrorReason.STALE_FENCE,
  "lease-lost": ErrorReason.LEASE_LOST,
  "lease-revoked": ErrorReason.LEASE_REVOKED,
  "already-completed": ErrorReason.ALREADY_COMPLETED,
  "not-lease-holder": ErrorReason.NOT_LEASE_HOLDER,
  "invalid-result": ErrorReason.INVALID_RESULT,
  "result-rejected": ErrorReason.RESULT_REJECTED,
  "worker-quarantined": ErrorReason.WORKER_QUARANTINED,
  "job-finished": ErrorReason.JOB_FINISHED,
  "result-not-ready": ErrorReason.RESULT_NOT_READY,
  "over-capacity": ErrorReason.OVER_CAPACITY,
  "over-limit": ErrorReason.OVER_LIMIT,
  draining: ErrorReason.DRAINING,
};

/**
 * The ErrorInfo metadata of a core error: each of its fields but `kind` and `message`
 * (already the status message), keyed in snake_case (`jobId` → `job_id`).
 */
export function errorMetadataOf(e: CoreError): ErrorMetadata {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === "kind" || k === "message" || v === undefined) continue;
    out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v as string | number;
  }
  return out;
}

/** Converts a core error to the ConnectError a client receives, with its ErrorInfo. */
export function toConnectError(e: CoreError): ConnectError {
  return dceError(CODE_OF_ERROR[e.kind], REASON_OF_ERROR[e.kind], describeError(e), errorMetadataOf(e));
}

const STATE_TO_WIRE: Record<JobStateName, JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
};

const STATE_FROM_WIRE: ReadonlyMap<JobState, JobStateName> = new Map(
  Object.entries(STATE_TO_WIRE).map(([name, wire]) => [wire, name as JobStateName]),
);

/** Wire job states (a ListJobs filter) → core state names; an unknown or unspecified one is INVALID_ARGUMENT. */
export function fromJobStates(states: readonly JobState[]): JobStateName[] {
  return states.map((w) => {
    const name = STATE_FROM_WIRE.get(w);
    if (name === undefined)
      throw malformedRequest(`states: ${w} is not a job state (QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED)`);
    return name;
  });
}

/** Core job view → wire JobStatus. */
export function toJobStatus(v: JobView): JobStatus {
  return create(JobStatusSchema, {
    jobId: v.jobId,
    state: STATE_TO_WIRE[v.state],
    shardsTotal: v.shardsTotal,
    shardsDone: v.shardsDone,
    shardsLeased: v.shardsLeased,
    shardsRetried: v.shardsRetried,
    createdAtMs: BigInt(v.createdAtMs),
    startedAtMs: BigInt(v.startedAtMs),
    finishedAtMs: BigInt(v.finishedAtMs),
    error: v.error,
    version: BigInt(v.version),
    kernel: v.kernel,
    rows: v.rows,
    cols: v.cols,
    tileRows: v.tileRows,
    tileCols: v.tileCols,
    priority: v.priority,
    expiresAtMs: BigInt(v.expiresAtMs),
    owner: v.owner,
  });
}

/** Wire lease reference → core lease key (validating the epoch range). */
export function fromLeaseRef(ref: LeaseRef | undefined): LeaseKey {
  if (!ref) throw malformedRequest("lease is required");
  if (ref.epoch > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw malformedRequest("lease epoch out of range");
  }
  return { jobId: asJobId(ref.jobId), shardIndex: ref.shardIndex, epoch: Number(ref.epoch) };
}

/** Core lease key → wire lease reference. */
export function toLeaseRef(k: LeaseKey): LeaseRef {
  return create(LeaseRefSchema, { jobId: k.jobId, shardIndex: k.shardIndex, epoch: BigInt(k.epoch) });
}

/** Core grant → wire ShardLease. */
export function toShardLease(g: Grant): ShardLease {
  return create(ShardLeaseSchema, {
    lease: toLeaseRef(g.lease),
    kernel: g.kernel,
    ttlMs: g.ttlMs,
    attempt: g.attempt,
    matmul: {
      a: { rows: g.spec.a.rows, cols: g.spec.a.cols, blobId: g.spec.a.blobId },
      b: { rows: g.spec.b.rows, cols: g.spec.b.cols, blobId: g.spec.b.blobId },
      rowStart: g.bounds.rowStart,
      rowEnd: g.bounds.rowEnd,
      colStart: g.bounds.colStart,
      colEnd: g.bounds.colEnd,
      aPeers: g.aPeers.map((p) => ({ workerId: p.workerId, address: p.address, identity: p.identity })),
      bPeers: g.bPeers.map((p) => ({ workerId: p.workerId, address: p.address, identity: p.identity })),
    },
  });
}

/** Longest `peer_address` a worker may register, in characters. */
export const MAX_PEER_ADDRESS_CHARS = 255;

/**
 * A registering worker's `peer_address`, checked: "" (it serves no peers) or `host:port`
 * with a port in 1..65535 (an IPv6 host in brackets, `[::1]:7000`), at most
 * {@link MAX_PEER_ADDRESS_CHARS} characters, no spaces.
 *
 * @throws ConnectError INVALID_ARGUMENT (MALFORMED_REQUEST) naming what is wrong.
 */
export function fromPeerAddress(address: string): string {
  if (address === "") return "";
  const bad = (why: string) =>
    malformedRequest(`peer_address ${JSON.stringify(address.slice(0, 64))} ${why}; want host:port, or "" to serve no peers`);
  if (address.length > MAX_PEER_ADDRESS_CHARS) throw bad(`is longer than ${MAX_PEER_ADDRESS_CHARS} characters`);
  const colon = address.lastIndexOf(":");
  if (colon < 0) throw bad("has no port");
  const host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw bad("has no port in 1..65535");
  const bracketed = /^\[[0-9A-Fa-f:.]+\]$/.test(host);
  if (!bracketed && !/^[A-Za-z0-9._-]+$/.test(host)) throw bad("has no valid host (a name, an IPv4 address or [IPv6])");
  return address;
}

const LEASE_STATE_TO_WIRE: Record<LeaseCheck["state"], LeaseState> = {
  active: LeaseState.ACTIVE,
  cancelled: LeaseState.CANCELLED,
  lost: LeaseState.LOST,
};

/** Core lease check → wire LeaseStatus. */
export function toLeaseStatus(c: LeaseCheck): LeaseStatus {
  return create(LeaseStatusSchema, { lease: toLeaseRef(c.lease), state: LEASE_STATE_TO_WIRE[c.state], ttlMs: c.ttlMs });
}
