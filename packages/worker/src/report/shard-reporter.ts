import type { WorkerLogger } from "../log-scope.js";
import type { ShardRun } from "../pull/shard.js";

/**
 * The port through which the pull loop hands over each computed tile. The worker's
 * own implementation uploads or inlines the tile and batches it into CompleteShards
 * (`completion.ts`); decorators (the `--chaos-*` faults, `chaos/chaos-reporter.ts`)
 * wrap it from outside.
 */
export interface ShardReporter {
  /**
   * Reports tile `c` (`m × n`, row-major) of `run`, computed in `computeMs`. Resolves once
   * the coordinator answered or the result was dropped (a dropped result is logged, and
   * its lease runs out). Rejects only when the shard was stopped or the worker failed.
   */
  complete(run: ShardRun, c: Float64Array, n: number, computeMs: number): Promise<void>;
}

/** What a {@link ReporterDecorator} may use of the worker. */
export interface ReporterTools {
  /** The worker's logger: lines logged while a shard reports carry its fields. */
  readonly log: WorkerLogger;
  /** The worker's uniform random source in [0, 1). */
  readonly random: () => number;
}

/** Wraps the worker's {@link ShardReporter}; see `WorkerOptions.wrapReporter`. */
export type ReporterDecorator = (reporter: ShardReporter, tools: ReporterTools) => ShardReporter;
