import { createClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";

// One known job through a real coordinator and two real workers; then /metrics is
// scraped over HTTP/1.1 (as Prometheus does) and parsed by a parser that shares no
// code with prom-client. The counters must equal what the job implies.

const M = 200;
const K = 150;
const N = 170;
const TILE = 32;
const SHARDS = Math.ceil(M / TILE) * Math.ceil(N / TILE); // 7 x 6 = 42

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ workers: 2 });
});
afterAll(async () => {
  await cluster?.close();
});

describe("Prometheus metrics of a real coordinator", () => {
  test("after one known job the counters equal the plan", async () => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(M, K, 11);
    const b = randomMatrix(K, N, 12);
    const job = await client.submitMatMul(a, b, { tileSize: TILE, kernel: "reference" });
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);

    const res = await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken));
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parseScrape(res.body);

    // Jobs.
    expect(m.value("dce_jobs_submitted_total")).toBe(1);
    expect(m.value("dce_jobs_finished_total", { state: "succeeded" })).toBe(1);
    expect(m.value("dce_jobs_finished_total", { state: "failed" })).toBe(0);
    expect(m.value("dce_jobs", { state: "succeeded" })).toBe(1);
    expect(m.value("dce_jobs", { state: "running" })).toBe(0);
    expect(m.value("dce_jobs", { state: "queued" })).toBe(0);

    // Shards and leases: every shard accepted once; every grant ended one way or another.
    const completed = m.value("dce_shards_completed_total");
    const granted = m.value("dce_leases_granted_total") ?? 0;
    expect(completed).toBe(SHARDS);
    expect(granted).toBeGreaterThanOrEqual(SHARDS);
    // Each grant ended exactly one way (a straggler's backup may win: its twin is superseded).
    expect(m.value("dce_leases_active")).toBe(0);
    expect(m.sum("dce_leases_ended_total")).toBe(granted);
    expect(m.value("dce_leases_ended_total", { reason: "completed" })).toBe(SHARDS);
    expect(m.value("dce_leases_ended_total", { reason: "expired" })).toBe(m.value("dce_leases_expired_total"));
    expect(m.value("dce_leases_ended_total", { reason: "superseded" })).toBeLessThanOrEqual(
      m.value("dce_leases_backup_total") ?? 0,
    );
    expect(m.value("dce_shard_result_bytes_total")).toBe(M * N * 8);
    expect(m.sum("dce_worker_shards_completed_total")).toBe(SHARDS);
    for (const reason of ["stale", "duplicate", "revoked", "other"]) {
      expect(m.value("dce_shard_completions_rejected_total", { reason })).toBeGreaterThanOrEqual(0);
    }

    // Workers.
    expect(m.value("dce_workers")).toBe(2);
    expect(m.value("dce_worker_threads")).toBe(2);
    expect(m.value("dce_workers_registered_total")).toBe(2);
    expect(m.value("dce_coordinator_draining")).toBe(0);

    // Blob bytes: A and B went up once (inline in SubmitJob) and C came down once (inline
    // in GetJob). The workers read A and B from the coordinator's blob files (the local
    // store, on by default), which no RPC carries; test/integration/local-store.test.ts
    // counts the same bytes with it on and off.
    expect(m.value("dce_blob_bytes_total", { direction: "in" })).toBe((M * K + K * N) * 8);
    expect(m.value("dce_blob_bytes_total", { direction: "out" })).toBe(M * N * 8);

    // RPCs by method and code, with latency histograms.
    const submit = { service: "dce.v1.JobService", method: "SubmitJob" };
    expect(m.value("dce_rpc_started_total", submit)).toBe(1);
    expect(m.value("dce_rpc_handled_total", { ...submit, code: "ok" })).toBe(1);
    const hist = m.histogram("dce_rpc_handling_seconds", { ...submit, code: "ok" });
    expect(hist?.count).toBe(1);
    expect(hist?.sum).toBeGreaterThan(0);
    // Cumulative buckets: bounds rise to +Inf, counts never decrease and end at the count.
    const buckets = hist?.buckets ?? [];
    expect(buckets.length).toBeGreaterThan(5);
    expect(buckets.at(-1)).toEqual({ le: Number.POSITIVE_INFINITY, count: 1 });
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]?.le).toBeGreaterThan(buckets[i - 1]?.le ?? 0);
      expect(buckets[i]?.count).toBeGreaterThanOrEqual(buckets[i - 1]?.count ?? 0);
    }
    const complete = { service: "dce.v1.WorkerService", method: "CompleteShards", code: "ok" };
    expect(m.value("dce_rpc_handled_total", complete)).toBeGreaterThanOrEqual(1);
    // C is small: it came back inline with the final GetJob, so GetResult was never needed.
    expect(
      m.value("dce_rpc_handled_total", { service: "dce.v1.JobService", method: "GetJob", code: "ok" }),
    ).toBeGreaterThanOrEqual(1);
    expect(m.value("dce_rpc_handled_total", { service: "dce.v1.JobService", method: "GetResult", code: "ok" })).toBeUndefined();

    // The journal reports its writes, and the Node process metrics are there.
    expect(m.families.find((f) => f.name === "dce_journal_write_seconds")?.type).toBe("HISTOGRAM");
    expect(m.histogram("dce_journal_write_seconds")?.count).toBeGreaterThan(0);
    expect(m.value("process_cpu_seconds_total")).toBeGreaterThan(0);
  });

  test("a failed RPC is counted under its code", async () => {
    const client = createClient(cluster.clientOptions);
    await expect(client.getJobHandle("no-such-job").status()).rejects.toMatchObject({ code: 5 });
    const m = parseScrape((await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken))).body);
    expect(m.value("dce_rpc_handled_total", { service: "dce.v1.JobService", method: "GetJob", code: "not_found" })).toBe(1);
  });
});
