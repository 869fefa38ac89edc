import type { LeaseRef, MatrixRef, PeerSource, ShardLease, ShardResult } from "@dce/proto";
import { ShardDataError } from "../errors.js";
import { createKernel } from "../kernels/kernel.js";

/** A shard this worker holds, from its lease to its completion. */
export interface ShardRun {
  readonly key: string;
  readonly lease: LeaseRef;
  readonly shard: ShardLease;
  /** Aborted when the lease ends (CANCELLED/LOST), on drain timeout, or on a fatal error. */
  readonly abort: AbortController;
  phase: "fetching" | "computing" | "completing";
  /** When the lease runs out unless renewed again (local clock). */
  expiresAtMs: number;
  done: Promise<void>;
}

/** The validated geometry of one shard. */
export interface ShardPlan {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: MatrixRef;
  readonly b: MatrixRef;
  readonly rowStart: number;
  readonly colStart: number;
  readonly colEnd: number;
  readonly kernel: string;
  /** The peers the lease names for its A row panel and B column panel, and the panels' SHA-256. */
  readonly panels: PanelPeers;
}

/** Where else a shard's input panels may be read: the peers and hashes of its lease (empty when none). */
export interface PanelPeers {
  readonly aPeers: readonly PeerSource[];
  readonly bPeers: readonly PeerSource[];
  readonly aPanelSha256: Uint8Array;
  readonly bPanelSha256: Uint8Array;
}

/** A shard result as CompleteShards carries it. */
export type ShardResultInit = { lease: LeaseRef; payload: ShardResult["payload"]; computeMs: number };

/**
 * Validates a lease's task and works out the shard's geometry.
 *
 * @throws ShardDataError if the task does not fit its matrices, RangeError for a kernel this build lacks.
 */
export function planShard(shard: ShardLease, defaultKernel: string): ShardPlan {
  const t = shard.matmul;
  if (t?.a === undefined || t.b === undefined) throw new ShardDataError("shard has no matmul task");
  const { a, b, rowStart, rowEnd, colStart, colEnd } = t;
  if (a.cols !== b.rows) throw new ShardDataError(`A is ${a.rows}x${a.cols} but B is ${b.rows}x${b.cols}`);
  if (!(rowStart < rowEnd && rowEnd <= a.rows)) {
    throw new ShardDataError(`row range [${rowStart}, ${rowEnd}) does not fit A with ${a.rows} rows`);
  }
  if (!(colStart < colEnd && colEnd <= b.cols)) {
    throw new ShardDataError(`column range [${colStart}, ${colEnd}) does not fit B with ${b.cols} columns`);
  }
  const kernel = shard.kernel || defaultKernel;
  createKernel(kernel); // throws RangeError for a kernel this build lacks
  const panels = { aPeers: t.aPeers, bPeers: t.bPeers, aPanelSha256: t.aPanelSha256, bPanelSha256: t.bPanelSha256 };
  return { m: rowEnd - rowStart, n: colEnd - colStart, k: a.cols, a, b, rowStart, colStart, colEnd, kernel, panels };
}

/** Map key of a lease: one grant of one shard. */
export function leaseKey(lease: LeaseRef): string {
  return `${lease.jobId}\u0000${lease.shardIndex}\u0000${lease.epoch}`;
}

/** Log fields of one lease. */
export function leaseFields(lease: LeaseRef): Record<string, unknown> {
  // The same names as the coordinator's lines (`jobId`, `shard`, `epoch`), so one filter follows a shard everywhere.
  return { jobId: lease.jobId, shard: lease.shardIndex, epoch: Number(lease.epoch) };
}

/**
 * Log fields of a batch of leases: those of the lease when there is one; otherwise the
 * job (`jobId`, or `jobIds` when they differ) and the shard indices as `shards`.
 */
export function batchFields(leases: readonly LeaseRef[]): Record<string, unknown> {
  const [only] = leases;
  if (leases.length === 1 && only !== undefined) return leaseFields(only);
  const jobIds = [...new Set(leases.map((l) => l.jobId))];
  return { ...(jobIds.length === 1 ? { jobId: jobIds[0] } : { jobIds }), shards: leases.map((l) => l.shardIndex) };
}
