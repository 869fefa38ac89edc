import type { ClientId, JobId } from "./ids.js";
import type { MatMulSpec } from "./spec.js";

/**
 * A fact the coordinator must not forget across a crash. The core emits these as
 * `persist` effects; the shell makes them durable (journal + fsync) before it
 * acknowledges the request that caused them, and replays them on restart.
 * Leases, heartbeats and retry counters are deliberately not durable: after a
 * restart every unfinished shard is leased again with a higher epoch. Counts of rejected
 * results below the quarantine limit are not durable either (each wrong result is caught
 * on its own, so forgetting them costs at most a few more rejected results), and neither
 * is a worker (registration) quarantine: every worker registers again after a restart,
 * under a new id. An identity quarantine is durable: a restart must not hand work again
 * to an identity known to return wrong results (see `quarantine.ts`). Deaths of a shard's
 * workers are durable too, so a coordinator that restarts often cannot let a poison shard
 * kill workers forever (see poison.ts).
 */
export type DurableRecord =
  | {
      type: "job-created";
      jobId: JobId;
      clientId: ClientId;
      idempotencyKey: string;
      spec: MatMulSpec;
      createdAtMs: number;
      /** Absent in journals written before priorities: 0. */
      priority?: number;
      /** The client's weight at submit; absent in journals written before weights: 1. */
      weight?: number;
    }
  /** The job's kernel and fingerprint were pinned by its first grant. */
  | { type: "kernel-pinned"; jobId: JobId; kernel: string; fingerprint: string; startedAtMs: number }
  /** A tile was accepted; its bytes are durable in the job's result buffer before this record is. */
  | { type: "shard-accepted"; jobId: JobId; shardIndex: number; epoch: number }
  | { type: "job-ended"; jobId: JobId; state: "failed" | "cancelled"; error: string; finishedAtMs: number }
  | { type: "job-succeeded"; jobId: JobId; resultBlobId: string; finishedAtMs: number }
  /** Every epoch below `upTo` may have been handed out; a restart continues above it. */
  | { type: "epochs-reserved"; upTo: number }
  /** The holder of lease `epoch` of a shard died (the lease expired); see poison.ts. */
  | { type: "shard-died"; jobId: JobId; shardIndex: number; epoch: number; workerId: string }
  /** A worker identity was quarantined after `rejectedResults` of its results failed verification (see `quarantine.ts`). */
  | { type: "worker-quarantined"; identity: string; rejectedResults: number; reason: string; atMs: number }
  /**
   * The job's result buffer was gone after a restart: the tiles accepted before this record
   * are computed again (they no longer count as accepted), see `result-buffer-lost` in events.ts.
   */
  | { type: "result-buffer-lost"; jobId: JobId; atMs: number };
