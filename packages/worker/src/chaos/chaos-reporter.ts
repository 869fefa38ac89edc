import { sleepMs } from "../internal/abort.js";
import { corruptTile } from "../internal/corrupt.js";
import { leaseFields } from "../pull/shard.js";
import type { ReporterDecorator, ShardReporter } from "../report/shard-reporter.js";
import type { ChaosOptions } from "./chaos-options.js";

/**
 * The `--chaos-*` faults, as a decorator of the worker's report port: before each
 * report it may corrupt the tile, wait, die (at random, or on the poison shard), or lose
 * the completion (the lease then expires and the shard runs elsewhere). The production
 * worker knows nothing of them; the `worker` command wraps its reporter with this.
 *
 * The draws happen in this order, one `random()` each, for every report: corrupt,
 * delay, crash, drop.
 */
export function chaosReporter(chaos: ChaosOptions): ReporterDecorator {
  return (inner, { log, random }): ShardReporter => ({
    async complete(run, c, n, computeMs) {
      const fields = leaseFields(run.lease);
      if (c.length > 0 && random() < (chaos.corruptRate ?? 0)) {
        const what = corruptTile(c, n, random);
        log.warn({ ...fields, corruption: what.kind, index: what.index }, "chaos: corrupting the result");
      }
      if ((chaos.delayMs ?? 0) > 0) await sleepMs(Math.floor(random() * (chaos.delayMs ?? 0)), run.abort.signal);
      if (run.lease.shardIndex === chaos.crashOnShard) {
        log.warn(fields, "chaos: crashing on the poison shard");
        chaos.crash();
      }
      if (random() < (chaos.crashRate ?? 0)) {
        log.warn(fields, "chaos: crashing mid-shard");
        chaos.crash();
      }
      if (random() < (chaos.dropRate ?? 0)) {
        log.warn(fields, "chaos: dropping the completion");
        return;
      }
      return inner.complete(run, c, n, computeMs);
    },
  });
}

/** Whether any fault is switched on. */
export function chaosEnabled(chaos: Omit<ChaosOptions, "crash">): boolean {
  return (
    (chaos.crashRate ?? 0) > 0 ||
    (chaos.delayMs ?? 0) > 0 ||
    (chaos.dropRate ?? 0) > 0 ||
    (chaos.corruptRate ?? 0) > 0 ||
    chaos.crashOnShard !== undefined
  );
}
