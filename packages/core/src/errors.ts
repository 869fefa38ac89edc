import type { JobId, WorkerId } from "./ids.js";
import { quote } from "./text.js";

/**
 * Every expected way a core decision can refuse a request. The core never throws
 * for these; it returns them as values. Each shell maps `kind` to a transport code
 * through one exhaustive table (a new kind does not compile until it is mapped).
 */
export type CoreError =
  | { kind: "invalid-spec"; message: string }
  | { kind: "job-not-found"; jobId: string }
  | { kind: "worker-not-found"; workerId: string }
  | { kind: "job-exists"; jobId: JobId; message: string }
  | { kind: "stale-fence"; jobId: JobId; shardIndex: number; epoch: number; currentEpoch: number }
  | { kind: "lease-lost"; jobId: JobId; shardIndex: number; epoch: number }
  | { kind: "lease-revoked"; jobId: JobId; shardIndex: number; epoch: number; message: string }
  | { kind: "already-completed"; jobId: JobId; shardIndex: number; epoch: number }
  | { kind: "not-lease-holder"; jobId: JobId; shardIndex: number; epoch: number; workerId: WorkerId }
  | { kind: "invalid-result"; jobId: JobId; shardIndex: number; message: string }
  /** The result arrived in time but is wrong: it failed the coordinator's verification. */
  | { kind: "result-rejected"; jobId: JobId; shardIndex: number; epoch: number; message: string }
  /**
   * The worker is shut out after repeated wrong results: the registration `workerId` by
   * its own results, or (no `workerId`) every worker of `identity`.
   */
  | { kind: "worker-quarantined"; identity: string; rejectedResults: number; workerId?: string }
  | { kind: "job-finished"; jobId: JobId; state: string; message: string }
  | { kind: "result-not-ready"; jobId: JobId; state: string }
  | { kind: "over-capacity"; message: string }
  /** A request over a configured size limit; `limit` is the limit's name (e.g. `maxMatrixBytes`). */
  | { kind: "over-limit"; limit: string; message: string }
  | { kind: "draining" };

/** Result of a core decision: a value, or the reason it was refused. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: CoreError };

/** Builds a successful {@link Result}. */
export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
/** Builds a refused {@link Result}. */
export const err = <T = never>(error: CoreError): Result<T> => ({ ok: false, error });

/** Ids in messages are cut to this many code points: a client can send an id of any length. */
const MAX_ID_CODE_POINTS = 64;
const clip = (id: string): string => quote(id, MAX_ID_CODE_POINTS);

/**
 * A one-line, user-facing description of a core error (no internals). Ids that came
 * from a request are quoted with `quote` (cut by code point, control characters escaped),
 * so the message stays small and well-formed whatever the request held.
 */
export function describeError(e: CoreError): string {
  switch (e.kind) {
    case "invalid-spec":
      return e.message;
    case "job-not-found":
      return `job ${clip(e.jobId)} not found`;
    case "worker-not-found":
      return `worker ${clip(e.workerId)} is not registered (register again)`;
    case "job-exists":
      return e.message;
    case "stale-fence":
      // A later epoch than the current one can only be a backup (or original) that lost
      // the race: the shard was completed under the earlier epoch.
      return e.epoch > e.currentEpoch
        ? `lease epoch ${e.epoch} for job ${clip(e.jobId)} shard ${e.shardIndex} lost the race: the shard was completed under epoch ${e.currentEpoch}`
        : `stale epoch ${e.epoch} for job ${clip(e.jobId)} shard ${e.shardIndex} (current epoch ${e.currentEpoch})`;
    case "lease-lost":
      return `lease epoch ${e.epoch} for job ${clip(e.jobId)} shard ${e.shardIndex} expired or was revoked`;
    case "lease-revoked":
      return `lease epoch ${e.epoch} for job ${clip(e.jobId)} shard ${e.shardIndex} revoked: ${e.message}`;
    case "already-completed":
      return `job ${clip(e.jobId)} shard ${e.shardIndex} epoch ${e.epoch} was already accepted`;
    case "not-lease-holder":
      return `lease epoch ${e.epoch} for job ${clip(e.jobId)} shard ${e.shardIndex} is held by another worker`;
    case "invalid-result":
      return `job ${clip(e.jobId)} shard ${e.shardIndex}: ${e.message}`;
    case "result-rejected":
      return `job ${clip(e.jobId)} shard ${e.shardIndex} epoch ${e.epoch}: result rejected by verification (${e.message}); the shard runs again elsewhere`;
    case "worker-quarantined":
      if (e.workerId !== undefined) {
        return `worker ${clip(e.workerId)} (identity '${quote(e.identity, 256)}') is quarantined after ${e.rejectedResults} results failed verification; it gets no more work`;
      }
      return `worker identity '${quote(e.identity, 256)}' is quarantined after ${e.rejectedResults} results failed verification; it gets no more work`;
    case "job-finished":
      return e.message;
    case "result-not-ready":
      return `job ${clip(e.jobId)} has no result: it is ${e.state}`;
    case "over-capacity":
      return e.message;
    case "over-limit":
      return e.message;
    case "draining":
      return "coordinator is draining: it grants no new work";
  }
}
