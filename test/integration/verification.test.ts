import { createClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { logLines } from "../support/assertions.js";
import { type CertFiles, type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";

// Verified results with real processes: one worker corrupts 30% of its results
// (`--chaos-corrupt-rate 0.3`) next to two honest ones. Every job must still return the
// bytes of a clean run (for the reference kernel, the naive multiply: test/integration/
// e2e.test.ts pins that they are equal), no honest result may be rejected, and the
// corrupting worker must be quarantined once K = 3 of its results were rejected. The
// corrupter shares its certificate (CN corrupt) with one honest worker, the twin, as when
// one worker.pem was handed to every worker: the twin must keep working, until the
// corrupter comes back under the same certificate and fails again (packages/core/src/
// quarantine.ts). The README's setup, a certificate per worker, is in worker-identities.test.ts.

const JOBS: [number, number, number, number][] = [
  // M, K, N, tile: 4, 64, 80, 42 and 36 shards. The first one's tiles are big enough to be
  // checked in the coordinator's verification threads; the others are checked inline.
  [300, 300, 300, 150],
  [96, 40, 96, 12],
  [100, 33, 80, 10],
  [70, 64, 65, 11],
  [60, 9, 60, 10],
];

/** Runs one job with the reference kernel and checks its bytes against the naive multiply. */
async function cleanJob(cluster: Cluster, [m, k, n, tile]: [number, number, number, number], seed: number): Promise<void> {
  const a = randomMatrix(m, k, 100 + seed);
  const b = randomMatrix(k, n, 200 + seed);
  const c = await (
    await createClient(cluster.clientOptions).submitMatMul(a, b, { tileSize: tile, kernel: "reference" })
  ).result();
  expect(sameBytes(c.data, naiveMultiply(a, b)), `job ${seed} bytes`).toBe(true);
}

type DashWorker = {
  id: string;
  name: string;
  status: string;
  quarantine: string;
  rejectedResults: number;
  shardsCompleted: number;
};
async function dashboardWorkers(cluster: Cluster): Promise<DashWorker[]> {
  const ui = await getHttp1(`${cluster.url}/ui/api/state`, cluster.ca, bearer(cluster.adminToken));
  return (JSON.parse(ui.body) as { workers: DashWorker[] }).workers;
}

describe("verified results with a corrupting worker that shares its certificate with an honest one", () => {
  let cluster: Cluster;
  let shared: CertFiles;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, threadsPerWorker: 2 });
    shared = await cluster.issueWorkerCert("corrupt");
    // The corrupting worker first, so it is sure to take work before the others.
    await cluster.addWorker("corrupt", ["--chaos-corrupt-rate", "0.3"], { cert: shared });
    await cluster.addWorker("honest-1");
    await cluster.addWorker("twin", [], { cert: shared });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("every job returns the clean bytes, only corrupted results are rejected, only the corrupter is quarantined", async () => {
    for (const [i, job] of JOBS.entries()) await cleanJob(cluster, job, i);
    const [corrupt, honest1, twin] = cluster.workers;
    if (!corrupt || !honest1 || !twin) throw new Error("workers missing");

    // The corrupter stops for good: its pull is refused with PERMISSION_DENIED.
    expect(await corrupt.exited).toBe(1);
    expect(corrupt.stderr).toMatch(/worker \S+ \(identity 'corrupt'\) is quarantined after \d+ results failed verification/);

    const coordinatorLog = logLines(cluster.coordinator.stderr);
    const idOf = (name: string) => coordinatorLog.find((l) => l.msg === "worker registered" && l.name === name)?.workerId;
    const corruptId = idOf("corrupt");
    const rejections = coordinatorLog.filter((l) => l.msg === "shard result rejected" && "identity" in l);
    // Exactly 3 unless results checked side by side in one batched report land after the third.
    const n = rejections.length;
    expect(n).toBeGreaterThanOrEqual(3);
    expect(new Set(rejections.map((l) => l.workerId))).toEqual(new Set([corruptId]));
    const quarantined = coordinatorLog.filter((l) => /quarantined$/.test(String(l.msg)));
    expect(quarantined).toEqual([
      expect.objectContaining({
        level: 50,
        msg: "worker quarantined",
        workerId: corruptId,
        identity: "corrupt",
        scope: "worker",
        rejectedResults: 3,
      }),
    ]);
    // The twin was told it shares its identity with a live worker.
    expect(coordinatorLog.filter((l) => l.msg === "two live workers present the same identity")).toEqual([
      expect.objectContaining({
        level: 40,
        workerId: idOf("twin"),
        identity: "corrupt",
        others: [{ workerId: corruptId, name: "corrupt" }],
      }),
    ]);

    // Every rejection the corrupter saw was FAILED_PRECONDITION. It may see none: the third
    // rejection quarantines it at once, so its pull is refused (and it exits) while the
    // CompleteShards answer carrying the rejections still waits for the journal commit.
    // It corrupted at least as many results as were rejected.
    const corruptLog = logLines(corrupt.stderr);
    const refused = corruptLog.filter((l) => l.msg === "result rejected by the coordinator; dropped");
    for (const l of refused) expect(l.code).toBe("FailedPrecondition");
    expect(corruptLog.filter((l) => l.msg === "chaos: corrupting the result").length).toBeGreaterThanOrEqual(n);
    // No honest result was ever refused for being wrong.
    for (const w of [honest1, twin]) {
      expect(logLines(w.stderr).filter((l) => l.msg === "result rejected by the coordinator; dropped")).toEqual([]);
    }

    const res = await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken));
    const metrics = parseScrape(res.body);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "rejected" })).toBe(n);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "error" })).toBe(0);
    expect(metrics.value("dce_shard_verifications_total", { outcome: "passed" })).toBeGreaterThanOrEqual(4 + 64 + 80 + 42 + 36);
    expect(metrics.value("dce_shard_completions_rejected_total", { reason: "corrupt" })).toBe(n);
    expect(metrics.value("dce_workers_quarantined")).toBe(1);
    expect(metrics.value("dce_worker_identities_quarantined")).toBe(0);
    expect(metrics.value("dce_worker_rejected_results", { identity: "corrupt", quarantined: "false" })).toBe(n);
    expect(metrics.sum("dce_worker_rejected_results")).toBe(n);
    expect(metrics.histogram("dce_shard_verification_seconds")?.count).toBeGreaterThanOrEqual(3);
    expect(metrics.value("dce_jobs_finished_total", { state: "succeeded" })).toBe(JOBS.length);

    // The dashboard lists it as quarantined, and the twin as working; the twin keeps completing shards.
    const before = await dashboardWorkers(cluster);
    expect(before.find((w) => w.name === "corrupt")).toMatchObject({
      status: "quarantined",
      quarantine: "worker",
      rejectedResults: n,
    });
    expect(before.filter((w) => w.status === "quarantined")).toHaveLength(1);
    await cleanJob(cluster, [48, 16, 48, 8], 9); // 36 shards
    const after = await dashboardWorkers(cluster);
    const done = (ws: DashWorker[]) => ws.find((w) => w.name === "twin")?.shardsCompleted ?? 0;
    expect(after.find((w) => w.name === "twin")).toMatchObject({ quarantine: "", rejectedResults: 0 });
    expect(done(after)).toBeGreaterThan(done(before));
    expect(twin.child.exitCode).toBeNull();
  });

  test("the corrupter back under the same certificate quarantines the identity: the twin stops too, also after a restart", async () => {
    const twin = cluster.workers[2];
    const again = await cluster.addWorker("corrupt-again", ["--chaos-corrupt-rate", "1"], { cert: shared });
    await cleanJob(cluster, [48, 16, 48, 8], 10); // 36 shards; honest-1 finishes them
    expect(await again.exited).toBe(1);
    expect(await twin?.exited).toBe(1);
    expect(twin?.stderr).toMatch(/worker identity 'corrupt' is quarantined after \d+ results failed verification/);
    const coordinatorLog = logLines(cluster.coordinator.stderr);
    expect(coordinatorLog.filter((l) => l.msg === "worker identity quarantined")).toEqual([
      expect.objectContaining({ level: 50, identity: "corrupt", scope: "identity", workersWithRejections: 2 }),
    ]);

    await cluster.restartCoordinator();
    // addWorker issues a fresh certificate for "corrupt" and waits for a registration that never comes.
    const refused = await cluster.addWorker("corrupt").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(Error);
    expect(String(refused)).toMatch(/worker identity 'corrupt' is quarantined after \d+ results failed verification/);
    expect(await cluster.workers.at(-1)?.exited).toBe(1);
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
