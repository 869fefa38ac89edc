/**
 * Estimates shard throughput and time to completion from observations of
 * `shardsDone` over time. Pure: time comes in as `nowMs`.
 *
 * @packageDocumentation
 */

/** What one observation yields; fields are absent while they cannot be estimated. */
export interface RateEstimate {
  rateShardsPerSec?: number;
  etaMs?: number;
}

/** A sliding-window rate estimator; see {@link createRateEstimator}. */
export interface RateEstimator {
  /** Records that `shardsDone` of `shardsTotal` shards were done at `nowMs`. */
  observe(nowMs: number, shardsDone: number, shardsTotal: number, terminal: boolean): RateEstimate;
}

/** Options of {@link createRateEstimator}. */
export interface RateEstimatorOptions {
  /** Rate is measured over about this much recent history; default 30_000. */
  windowMs?: number;
}

interface Sample {
  nowMs: number;
  shardsDone: number;
}

/**
 * Creates an estimator. The rate is the shards finished between the oldest
 * sample inside the window (or, if only the newest is inside, the one before
 * it) and the newest, divided by the time between them; the ETA is the
 * remaining shards at that rate.
 */
export function createRateEstimator(options: RateEstimatorOptions = {}): RateEstimator {
  const windowMs = options.windowMs ?? 30_000;
  const samples: Sample[] = [];
  return {
    observe(nowMs, shardsDone, shardsTotal, terminal) {
      samples.push({ nowMs, shardsDone });
      // Drop samples older than the window, but always keep one sample before
      // the newest: a rate exists even when updates are further apart than the
      // window, and a long stall ages out instead of diluting the rate forever.
      while (samples.length > 2 && nowMs - (samples[0] as Sample).nowMs > windowMs) {
        samples.shift();
      }
      const base = samples[0] as Sample;
      const elapsedMs = nowMs - base.nowMs;
      const estimate: RateEstimate = {};
      if (elapsedMs > 0) {
        estimate.rateShardsPerSec = Math.max(0, shardsDone - base.shardsDone) / (elapsedMs / 1000);
      }
      if (terminal) {
        estimate.etaMs = 0;
      } else if (estimate.rateShardsPerSec !== undefined && estimate.rateShardsPerSec > 0) {
        const remaining = Math.max(0, shardsTotal - shardsDone);
        estimate.etaMs = Math.round((remaining / estimate.rateShardsPerSec) * 1000);
      }
      return estimate;
    },
  };
}
