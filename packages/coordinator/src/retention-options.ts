import { DEFAULT_CORE_CONFIG } from "@dce/core";

/** How long the coordinator keeps finished jobs; part of `CoordinatorOptions`. */
export interface RetentionOptions {
  /**
   * A finished job (succeeded, failed or cancelled) and its result are deleted this long
   * after it ended, in ms, unless the job asked for its own retention. Default 7 days.
   */
  retentionMs?: number;
  /** The longest retention a job may ask for at submit, in ms; a longer one is INVALID_ARGUMENT. Default 30 days. */
  maxRetentionMs?: number;
}

/**
 * Resolves the retention settings. Throws a RangeError naming a bad one: each must be
 * an integer of at least 1 s, and the default must not exceed the maximum.
 */
export function resolveRetention(o: RetentionOptions): { retentionMs: number; maxRetentionMs: number } {
  const retentionMs = o.retentionMs ?? DEFAULT_CORE_CONFIG.retentionMs;
  const maxRetentionMs = o.maxRetentionMs ?? Math.max(DEFAULT_CORE_CONFIG.maxRetentionMs, retentionMs);
  for (const [name, v] of [
    ["retentionMs", retentionMs],
    ["maxRetentionMs", maxRetentionMs],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1_000) throw new RangeError(`${name}=${v}; it must be an integer >= 1000 (1 s)`);
  }
  if (retentionMs > maxRetentionMs) {
    throw new RangeError(
      `retentionMs=${retentionMs} is above maxRetentionMs=${maxRetentionMs}; raise the maximum or lower the default`,
    );
  }
  return { retentionMs, maxRetentionMs };
}
