// The end-to-end SDK rows of `pnpm bench`: one cluster configuration over every size,
// arrays in memory -> result in memory, with the bytes each process moved per job and,
// with `--trace`, where each job's wall time went.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { randomMatrix } from "@dce/core/testing";
import { bytesMoved, sampleBytes } from "./bytes.mjs";
import { startCluster } from "./cluster.mjs";
import { median, spotCheck } from "./stats.mjs";
import { jobPhases, verificationSeconds } from "./trace.mjs";

/** Lets log lines written just before a reply reach our pipes. */
const settle = () => new Promise((r) => setTimeout(r, 50));

/**
 * Runs one SDK configuration: fresh processes, a warm-up job, then each input pair of
 * each size as one timed job. Returns one row per size.
 */
export async function benchSdk({ kernel, workers, path, coordinatorArgs, inputs, sizes, cores, refs, trace, caCert, log }) {
  const threads = workers === 1 ? cores : Math.max(1, Math.floor(cores / workers));
  const cluster = await startCluster({ workers, kernels: kernel, threads, coordinatorArgs, trace });
  const ca = readFileSync(caCert, "utf8");
  const rows = [];
  try {
    // warm-up: kernels loaded, connections open
    const w = randomMatrix(300, 300, 7);
    await (await cluster.client.submitMatMul(w, w, { kernel })).result();
    for (const n of sizes) {
      const jobs = [];
      for (const { a, b } of inputs.get(n)) {
        const roles = { client: process.pid, ...cluster.pids() };
        let verify0;
        if (trace) {
          cluster.traceLines.coordinator.clear();
          cluster.traceLines.workers.clear();
          verify0 = await verificationSeconds(cluster.url, ca, cluster.adminToken);
        }
        const before = sampleBytes(roles);
        const t0Ms = Date.now();
        const t0 = performance.now();
        const job = await cluster.client.submitMatMul(a, b, { kernel });
        const c = await job.result();
        const seconds = (performance.now() - t0) / 1000;
        const resultMs = Date.now();
        const bytes = bytesMoved(before, sampleBytes(roles));
        spotCheck(a, b, c);
        const one = { seconds, bytes };
        if (trace) {
          await settle();
          const verify1 = await verificationSeconds(cluster.url, ca, cluster.adminToken);
          one.phases = jobPhases({
            jobId: job.id,
            t0Ms,
            resultMs,
            status: await job.status(),
            coordinatorLines: cluster.traceLines.coordinator.lines,
            workerLines: cluster.traceLines.workers.lines,
            verifySeconds: verify0 === undefined || verify1 === undefined ? undefined : verify1 - verify0,
          });
        }
        jobs.push(one);
      }
      const secs = jobs.map((j) => j.seconds);
      const s = Math.min(...secs);
      const fastest = jobs[secs.indexOf(s)];
      const ref = (name) => refs[name]?.[String(n)];
      rows.push({
        kind: "sdk",
        path,
        n,
        kernel,
        workers,
        threadsPerWorker: threads,
        seconds: s,
        medianSeconds: median(secs),
        gflops: (2 * n ** 3) / s / 1e9,
        ratioToNumpy: ref("numpy") ? s / ref("numpy") : undefined,
        ratioToDask: ref("dask") ? s / ref("dask") : undefined,
        // A+B+C in bytes: the unit the byte counts are shown in.
        matrixBytes: 3 * n * n * 8,
        bytes: fastest.bytes,
        ...(trace ? { jobs } : {}),
        rss: cluster.rss(),
      });
      const ratios = [
        ref("numpy") ? `${(s / ref("numpy")).toFixed(2)}x NumPy` : undefined,
        ref("dask") ? `${(s / ref("dask")).toFixed(2)}x Dask` : undefined,
      ].filter(Boolean);
      log(`  sdk n=${n} ${kernel} ${workers}w ${path}: ${s.toFixed(3)} s${ratios.length ? ` (${ratios.join(", ")})` : ""}`);
    }
  } finally {
    await cluster.stop();
  }
  return rows;
}
