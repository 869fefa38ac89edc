import { createClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { logLines } from "../support/assertions.js";
import { type Cluster, naiveMultiply, type Proc, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";

// The README's setup, with real processes: `coordinator init-certs --workers 4` writes
// worker-1.pem … worker-4.pem and each worker presents its own. One of them corrupts 30%
// of its results. Only it may be quarantined; the three honest ones stay registered and
// keep completing shards, and every job returns the bytes of a clean run (the naive
// multiply; test/integration/e2e.test.ts pins that the reference kernel matches it).

const JOBS: [number, number, number, number][] = [
  // M, K, N, tile: 64, 80 and 36 shards, checked inline.
  [96, 40, 96, 12],
  [100, 33, 80, 10],
  [60, 9, 60, 10],
];

type DashWorker = { name: string; identity: string; status: string; quarantine: string; shardsCompleted: number };

describe("one corrupting worker among three honest ones, each with its own certificate from init-certs --workers 4", () => {
  let cluster: Cluster;
  let corrupt: Proc;
  const honest: Proc[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, initCertsWorkers: 4, threadsPerWorker: 1 });
    // The corrupting worker first (worker-1.pem), so it is sure to take work before the others.
    corrupt = await cluster.addWorker("corrupt", ["--chaos-corrupt-rate", "0.3"]);
    for (let i = 1; i <= 3; i++) honest.push(await cluster.addWorker(`honest-${i}`));
  });
  afterAll(async () => {
    await cluster?.close();
  });

  const dashboard = async (): Promise<DashWorker[]> => {
    const ui = await getHttp1(`${cluster.url}/ui/api/state`, cluster.ca, bearer(cluster.adminToken));
    return (JSON.parse(ui.body) as { workers: DashWorker[] }).workers;
  };
  const runJob = async ([m, k, n, tile]: [number, number, number, number], seed: number) => {
    const a = randomMatrix(m, k, 300 + seed);
    const b = randomMatrix(k, n, 400 + seed);
    const job = await createClient(cluster.clientOptions).submitMatMul(a, b, { tileSize: tile, kernel: "reference" });
    expect(sameBytes((await job.result()).data, naiveMultiply(a, b)), `job ${seed} bytes`).toBe(true);
  };

  test("only the corrupter is quarantined; the honest workers keep working and every job is byte-identical", async () => {
    for (const [i, job] of JOBS.entries()) await runJob(job, i);
    expect(await corrupt.exited).toBe(1);
    expect(corrupt.stderr).toMatch(/worker \S+ \(identity 'worker-1'\) is quarantined after \d+ results failed verification/);

    const log = logLines(cluster.coordinator.stderr);
    const registered = log.filter((l) => l.msg === "worker registered").map((l) => [l.name, l.identity]);
    expect(registered).toEqual([
      ["corrupt", "worker-1"],
      ["honest-1", "worker-2"],
      ["honest-2", "worker-3"],
      ["honest-3", "worker-4"],
    ]);
    expect(log.filter((l) => /quarantined$/.test(String(l.msg)))).toEqual([
      expect.objectContaining({ msg: "worker quarantined", identity: "worker-1", scope: "worker", rejectedResults: 3 }),
    ]);
    expect(log.filter((l) => l.msg === "two live workers present the same identity")).toEqual([]);
    const rejections = log.filter((l) => l.msg === "shard result rejected" && "identity" in l);
    expect(new Set(rejections.map((l) => l.identity))).toEqual(new Set(["worker-1"]));

    const metrics = parseScrape((await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken))).body);
    expect(metrics.value("dce_workers_quarantined")).toBe(1);
    expect(metrics.value("dce_worker_identities_quarantined")).toBe(0);

    // After the quarantine, each honest worker is still registered and takes part in a new job.
    const before = await dashboard();
    expect(before.find((w) => w.name === "corrupt")).toMatchObject({
      identity: "worker-1",
      status: "quarantined",
      quarantine: "worker",
    });
    await runJob([64, 16, 64, 8], 9); // 64 shards, spread over the three
    const after = await dashboard();
    for (const [i, w] of honest.entries()) {
      const name = `honest-${i + 1}`;
      const row = after.find((r) => r.name === name);
      expect(row, name).toMatchObject({ identity: `worker-${i + 2}`, quarantine: "" });
      expect(row?.status, name).not.toBe("quarantined");
      expect(row?.shardsCompleted ?? 0, name).toBeGreaterThan(before.find((r) => r.name === name)?.shardsCompleted ?? 0);
      expect(w.child.exitCode, name).toBeNull();
      expect(
        logLines(w.stderr).filter((l) => l.msg === "result rejected by the coordinator; dropped"),
        name,
      ).toEqual([]);
    }
  });
});
