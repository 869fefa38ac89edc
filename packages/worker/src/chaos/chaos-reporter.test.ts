import { afterAll, afterEach, describe, expect, it } from "vitest";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import {
  captureLogger,
  cleanUpWorkers,
  newWorker,
  smallJob,
  startCoordinator,
  threadPool,
  waitFor,
} from "../test-support/worker-fixtures.js";
import { chaosReporter } from "./chaos-reporter.js";

// The --chaos-* decorator around the report port.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker chaos decorator", () => {
  it("--chaos-crash-on-shard: dies whenever it runs that shard index, of any job, and on no other shard", async () => {
    const h = await startCoordinator();
    const logger = captureLogger();
    const jobs = [(await smallJob(h)).job, (await smallJob(h)).job];
    let crashes = 0;
    // The CLI's crash is a SIGKILL; this one returns, so the worker goes on and reports the shard.
    const worker = newWorker(h, {
      pool: threadPool(1),
      logger,
      wrapReporter: chaosReporter({ crashOnShard: 5, crash: () => crashes++ }),
    });
    await worker.start();
    await waitFor("all tiles", () => jobs.every((j) => h.doneCount(j.jobId) === j.shards));
    const lines = logger.lines.filter((l) => l.msg.startsWith("chaos: crashing"));
    expect(lines.map((l) => [l.msg, l.fields.shard])).toEqual([
      ["chaos: crashing on the poison shard", 5],
      ["chaos: crashing on the poison shard", 5],
    ]);
    expect(new Set(lines.map((l) => l.fields.jobId))).toEqual(new Set(jobs.map((j) => j.jobId)));
    expect(crashes).toBe(2);
  });
});
