import type { Effect } from "@dce/core";
import type { Logger } from "pino";
import type { JournalPort, ResultSinkPort } from "../ports/storage.js";
import { DataDirError } from "../storage-errors.js";
import type { ResultFinalizer } from "./result-finalizer.js";
import type { ResultVerification } from "./result-verification.js";
import type { Waiters } from "./waiters.js";

/** What carrying out a core effect touches. */
export interface EffectDeps {
  readonly log: Logger;
  readonly sink: ResultSinkPort;
  readonly journal: JournalPort;
  readonly waiters: Waiters;
  readonly verification: ResultVerification;
  readonly finalizer: ResultFinalizer;
}

/**
 * Carries out one effect of a core step that `Coordinator.#apply` does not handle itself
 * (it journals `persist`, and holds wake-ups and deletions until the step is durable).
 */
export function executeEffect(fx: Effect, tile: Uint8Array | undefined, deps: EffectDeps): void {
  switch (fx.type) {
    case "persist":
      // Journaled by #apply, which also decides when replies and wake-ups may go out.
      return;
    case "prepare-result":
      try {
        deps.sink.prepare(fx.jobId, fx.rows, fx.cols);
      } catch (e) {
        // The job is acknowledged anyway; its first tile opens the buffer (see stageTiles).
        if (!(e instanceof DataDirError)) throw e;
        deps.log.error({ jobId: fx.jobId, err: e.rawMessage }, "result buffer not created yet");
      }
      return;
    case "write-tile":
      // Tiles are written by stageTiles before the step; only an unstaged one comes here.
      if (tile) deps.sink.writeTile(fx.jobId, fx.bounds, tile);
      return;
    case "finalize-result":
      deps.verification.forget(fx.jobId);
      deps.finalizer.finalize(fx.jobId);
      return;
    case "discard-result":
      deps.verification.forget(fx.jobId);
      // The buffer goes once the job's end is durable: a crash before that finds the job
      // running with its accepted tiles (found by test/sim's poison mode).
      void deps.journal.commit().then(
        () => deps.sink.release(fx.jobId),
        () => {}, // #apply stops the coordinator on a failed commit
      );
      return;
    case "job-deleted":
      // Collected by #apply and handed to #onJobsDeleted once durable.
      return;
    case "job-changed":
      deps.waiters.wakeJob(fx.jobId);
      return;
    case "shards-available":
      deps.waiters.wakeWorkers();
      return;
    case "log":
      deps.log[fx.level](fx.fields, fx.msg);
      return;
  }
}
