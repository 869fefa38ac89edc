import { createClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { logLines } from "../support/assertions.js";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";

// Verified results with real processes: one worker corrupts 30% of its results
// (`--chaos-corrupt-rate 0.3`) next to two honest ones. Every job must still return the
// bytes of a clean run (for the reference kernel, the naive multiply: test/integration/
// e2e.test.ts pins that they are equal), no honest result may be rejected, and the
// corrupting worker must be quarantined once K = 3 of its results were rejected. Each
// worker has its own certificate, so its identity is its name.

const JOBS: [number, number, number, number][] = [
  // M, K, N, tile: 4, 64, 80, 42 and 36 shards. The first one's tiles are big enough to be
  // checked in the coordinator's verification threads; the others are checked inline.
  [300, 300, 300, 150],
  [96, 40, 96, 12],
  [100, 33, 80, 10],
  [70, 64, 65, 11],
  [60, 9, 60, 10],
];

describe("verified results with a corrupting worker", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, threadsPerWorker: 2 });
    // The corrupting worker first, so it is sure to take work before the others.
    await cluster.addWorker("corrupt", ["--chaos-corrupt-rate", "0.3"]);
    await cluster.addWorker("honest-1");
    await cluster.addWorker("honest-2");
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("every job returns the clean bytes, only corrupted results are rejected, and the corrupter is quarantined", async () => {
    const client = createClient(cluster.clientOptions);
    for (const [i, [m, k, n, tile]] of JOBS.entries()) {
      const a = randomMatrix(m, k, 100 + i);
      const b = randomMatrix(k, n, 200 + i);
      const job = await client.submitMatMul(a, b, { tileSize: tile, kernel: "reference" });
      const c = await job.result();
      expect(sameBytes(c.data, naiveMultiply(a, b)), `job ${i} bytes`).toBe(true);
    }
    const [corrupt, honest1, honest2] = cluster.workers;
    if (!corrupt || !honest1 || !honest2) throw new Error("workers missing");

    // The corrupter stops for good: its pull is refused with PERMISSION_DENIED.
    expect(await corrupt.exited).toBe(1);
    expect(corrupt.stderr).toMatch(/quarantined after \d+ results failed verification/);

    const coordinatorLog = logLines(cluster.coordinator.stderr);
    const rejections = coordinatorLog.filter((l) => l.msg === "shard result rejected" && "identity" in l);
    // Exactly 3 unless results checked side by side in one batched report land after the third.
    const n = rejections.length;
    expect(n).toBeGreaterThanOrEqual(3);
    expect(new Set(rejections.map((l) => l.identity))).toEqual(new Set(["corrupt"]));
    const quarantined = coordinatorLog.filter((l) => l.msg === "worker quarantined");
    expect(quarantined).toEqual([expect.objectContaining({ level: 50, identity: "corrupt", rejectedResults: 3 })]);

    // Every rejection the corrupter saw was FAILED_PRECONDITION. It may see none: the third
    // rejection quarantines it at once, so its pull is refused (and it exits) while the
    // CompleteShards answer carrying the rejections still waits for the journal commit.
    // It corrupted at least as many results as were rejected.
    const corruptLog = logLines(corrupt.stderr);
    const refused = corruptLog.filter((l) => l.msg === "result rejected by the coordinator; dropped");
    for (const l of refused) expect(l.code).toBe("FailedPrecondition");
    expect(corruptLog.filter((l) => l.msg === "chaos: corrupting the result").length).toBeGreaterThanOrEqual(n);
    // No honest result was ever refused for being wrong.
    for (const w of [honest1, honest2]) {
      expect(logLines(w.stderr).filter((l) => l.msg === "result rejected by the coordinator; dropped")).toEqual([]);
    }

    const res = await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken));
    const metrics = parseScrape(res.body);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "rejected" })).toBe(n);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "error" })).toBe(0);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "passed" })).toBeGreaterThanOrEqual(4 + 64 + 80 + 42 + 36);
    expect(metrics.value("dce_shard_completions_rejected_total", { reason: "corrupt" })).toBe(n);
    expect(metrics.value("dce_workers_quarantined")).toBe(1);
    expect(metrics.value("dce_worker_rejected_results", { identity: "corrupt", quarantined: "true" })).toBe(n);
    expect(metrics.sum("dce_worker_rejected_results")).toBe(n);
    expect(metrics.histogram("dce_shard_verification_seconds")?.count).toBeGreaterThanOrEqual(3);
    expect(metrics.value("dce_jobs_finished_total", { state: "succeeded" })).toBe(JOBS.length);

    // The dashboard lists it as quarantined.
    const ui = await getHttp1(`${cluster.url}/ui/api/state`, cluster.ca, bearer(cluster.adminToken));
    const state = JSON.parse(ui.body) as { workers: { name: string; status: string; rejectedResults: number }[] };
    expect(state.workers.find((w) => w.name === "corrupt")).toMatchObject({ status: "quarantined", rejectedResults: n });
    expect(state.workers.filter((w) => w.status === "quarantined")).toHaveLength(1);
  });

  test("the quarantine holds for the identity: a new certificate with the same subject is refused, also after a restart", async () => {
    await cluster.restartCoordinator();
    // addWorker issues a fresh certificate for "corrupt" and waits for a registration that never comes.
    const refused = await cluster.addWorker("corrupt").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(Error);
    expect(String(refused)).toMatch(/quarantined after \d+ results failed verification/);
    const w = cluster.workers.at(-1);
    expect(await w?.exited).toBe(1);
  });
});

describe("with --verify off", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, extraCoordinatorArgs: ["--verify", "off"] });
    await cluster.addWorker("always-wrong", ["--chaos-corrupt-rate", "1"]);
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("wrong results are accepted unchecked (the check is what catches them)", async () => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(20, 10, 1);
    const b = randomMatrix(10, 20, 2);
    const c = await (await client.submitMatMul(a, b, { tileSize: 10, kernel: "reference" })).result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(false);
    const metrics = parseScrape((await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken))).body);
    expect(metrics.sum("dce_shard_verifications_total")).toBe(0);
  });
});
