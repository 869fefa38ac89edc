import type { CoreConfig } from "@dce/core";
import type { CrashPoint } from "./journal.js";
import type { BlobGcConfig } from "./shell/blob-gc.js";

/** Settings of a `Coordinator`, every default resolved. */
export interface CoordinatorConfig {
  /** Folder for blobs and result buffers. */
  readonly dataDir: string;
  /** Largest message read or written on any RPC, in bytes. */
  readonly maxMessageBytes: number;
  /** Longest long-poll (GetJob / AcquireShards wait_ms), in ms. */
  readonly maxLongPollMs: number;
  /** Most shards one AcquireShards may return. */
  readonly maxShardsPerAcquire: number;
  /** Uploads open at once. */
  readonly maxOpenUploads: number;
  /** An upload without a chunk for this long is dropped, in ms. */
  readonly uploadIdleMs: number;
  /** How often leases are checked for expiry, in ms. */
  readonly tickIntervalMs: number;
  /** How often the run-time invariant check runs, in ms (0 = never). */
  readonly invariantCheckIntervalMs: number;
  /** fsync journal commits and data files (default true; off only for tests that do not crash). */
  readonly fsync: boolean;
  /** Offer the blob store to workers and clients on this host (LocalStore in responses). */
  readonly localStore: boolean;
  /** The blob garbage collector (default: a grace of 1 h, a pass every 60 s). */
  readonly gc?: BlobGcConfig;
  /**
   * Free bytes below which new uploads and submits are refused (RESOURCE_EXHAUSTED);
   * undefined: the larger of 1 GiB and 5% of the data dir's file system. See disk-space.ts.
   */
  readonly minFreeBytes?: number;
  /** Fault injection for crash-point tests only (see {@link CrashPoint}). */
  readonly crashAt?: CrashPoint;
  /** Called with each journal group commit's duration, for metrics. */
  readonly onJournalCommit?: (ms: number, records: number) => void;
  /**
   * Largest C (bytes) sealed in the step that accepts its last tile, so its success shares
   * that tile's group commit; larger ones are sealed after the reply. Default 1 MiB; 0
   * seals every C after the reply (the simulation does, to reach crashes in between).
   */
  readonly sealAtOnceMaxBytes?: number;
  /** Checking workers' results before accepting them (Freivalds' test; see docs/verification.md). */
  readonly verify: {
    /** Check every result (default true). Off, results are accepted as they come. */
    readonly enabled: boolean;
    /** Verification threads. */
    readonly threads: number;
    /** Tile bytes waiting for a verification thread beyond which results are answered UNAVAILABLE. */
    readonly maxBacklogBytes: number;
  };
  /** Decision tunables passed to the core. */
  readonly core: CoreConfig;
}

/** Space kept free in every message for fields other than the data chunk. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;
