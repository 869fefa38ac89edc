import { type CoreConfig, restoreCoreState, step } from "@dce/core";
import type { Logger } from "pino";
import type { Clock } from "../ports/clock.js";
import type { JournalPort, ResultSinkPort } from "../ports/storage.js";

/** The core state rebuilt from a journal, with the active jobs and those whose result is to be sealed again. */
export type RecoveredState = ReturnType<typeof restoreCoreState>;

/**
 * Rebuilds the core state from what the journal recovered (accepted tiles stay
 * accepted), keeps the result buffers of active jobs only, and reopens them. A job
 * whose buffer is gone has its accepted tiles computed again, through a core event
 * made durable before the new buffer exists; covered by coordinator-recovery.test.ts.
 */
export async function recoverState(
  core: CoreConfig,
  journal: JournalPort,
  sink: ResultSinkPort,
  clock: Clock,
  logger: Logger,
): Promise<RecoveredState> {
  const restored = restoreCoreState(core, journal.model);
  const active = new Set<string>(restored.active);
  sink.retain(active);
  for (const id of restored.active) {
    const job = restored.state.jobs.get(id);
    if (!job) continue;
    if (job.doneCount > 0 && !sink.has(id)) {
      // Accepted tiles whose bytes are gone cannot be trusted: compute them again. The reset is
      // durable before the new buffer exists, so a second restart does not trust the old tiles in it.
      for (const fx of step(restored.state, { type: "result-buffer-lost", nowMs: clock.nowMs(), jobId: id }).effects) {
        if (fx.type === "persist") journal.append(fx.record);
        else if (fx.type === "log") logger[fx.level](fx.fields, fx.msg);
        // job-changed, shards-available: nobody waits on a coordinator that is not open yet.
      }
      await journal.commit();
    }
    sink.prepare(id, job.plan.rows, job.plan.cols);
  }
  return restored;
}
