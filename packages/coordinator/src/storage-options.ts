import { type BlobGcConfig, DEFAULT_BLOB_GC, type GcCrashPoint } from "./shell/blob-gc.js";

/** Options of the data dir's upkeep: blob garbage collection and the free-space watermark. */
export interface StorageOptions {
  /**
   * An unreferenced blob (an upload no submit named yet, the inputs of a deleted job) is
   * kept at least this long, in ms; storing the same bytes again restarts it. Default 1 h.
   */
  blobGraceMs?: number;
  /** How often the blob garbage collector runs, in ms; 0 = only on request. Default 60 000. */
  gcIntervalMs?: number;
  /**
   * Below this many free bytes in the data dir's file system, new uploads and submits get
   * RESOURCE_EXHAUSTED; running jobs still finish. Default the larger of 1 GiB and 5% of
   * the file system.
   */
  minFreeBytes?: number;
  /** Fault injection for crash-point tests only: the collector's step to kill the process at, with `testKill`. */
  testGcCrashAt?: GcCrashPoint;
  /** Kills the process (SIGKILL), for crash-point tests only. */
  testKill?: () => void;
}

/** The part of `CoordinatorConfig` that {@link StorageOptions} fill. */
export interface StorageConfig {
  readonly gc: BlobGcConfig;
  /** Undefined: the default, computed from the data dir's file system when it is opened. */
  readonly minFreeBytes?: number;
}

/** Resolves {@link StorageOptions}. Throws a RangeError naming a bad option. */
export function resolveStorageOptions(o: StorageOptions): StorageConfig {
  const graceMs = o.blobGraceMs ?? DEFAULT_BLOB_GC.graceMs;
  const intervalMs = o.gcIntervalMs ?? DEFAULT_BLOB_GC.intervalMs;
  for (const [name, v] of [
    ["blobGraceMs", graceMs],
    ["gcIntervalMs", intervalMs],
    ["minFreeBytes", o.minFreeBytes ?? 0],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name}=${v}; it must be an integer >= 0`);
  }
  return {
    gc: {
      graceMs,
      intervalMs,
      ...(o.testGcCrashAt ? { crashAt: o.testGcCrashAt } : {}),
      ...(o.testKill ? { kill: o.testKill } : {}),
    },
    ...(o.minFreeBytes !== undefined ? { minFreeBytes: o.minFreeBytes } : {}),
  };
}
