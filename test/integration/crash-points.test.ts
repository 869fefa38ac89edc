import { createClient } from "@dce/client-sdk";
import { describe, expect, onTestFinished, test } from "vitest";
import { naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// The coordinator is killed (SIGKILL, by its own fault injection) at each named step of
// accepting a result, then restarted on the same data dir: the job must still end with
// exactly the right bytes, whatever was or was not on disk at the crash.

describe.each(["before-journal-write", "after-journal-write", "after-journal-fsync"])("crash %s", (point) => {
  test.each([1, 3])("on the %i-th commit with an accepted tile: recovers and finishes exactly", async (nth) => {
    const cluster = await startCluster({
      workers: 2,
      leaseTtlMs: 1500,
      coordinatorEnv: { DCE_TEST_CRASH_AT: `${point}:${nth}` },
    });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(48, 40, 100 + nth);
    const b = randomMatrix(40, 56, 200 + nth);
    const job = await client.submitMatMul(a, b, { tileSize: 16, kernel: "reference" });
    const exit = await cluster.coordinator.exited;
    expect(exit).toBe("SIGKILL");
    await cluster.restartCoordinator();
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    expect((await job.status()).shardsDone).toBe(12);
  });
});
