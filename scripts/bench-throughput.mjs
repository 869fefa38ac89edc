// Shard throughput of a real cluster: an embedded TLS coordinator and worker processes
// on loopback run one job, and the script prints shards per second (end to end, from
// submit to result). The default job is the tiny-shard case: 1024×16 · 16×1024 in
// 8×8 tiles = 16,384 shards, where per-shard overhead dominates.
//
//   node scripts/bench-throughput.mjs                 # verification on (the default)
//   DCE_BENCH_VERIFY=off node scripts/bench-throughput.mjs
//   DCE_BENCH_M=512 DCE_BENCH_K=512 DCE_BENCH_N=512 DCE_BENCH_TILE=128 node scripts/bench-throughput.mjs
//
// Other knobs: DCE_BENCH_WORKERS (2), DCE_BENCH_THREADS (threads per worker, 2),
// DCE_BENCH_KERNEL (reference), DCE_BENCH_RUNS (1), DCE_BENCH_FSYNC (on; off skips fsync).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@dce/client-sdk";
import { generateDevCertificates, startCoordinator } from "@dce/coordinator";
import { pino } from "pino";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const env = process.env;
const M = Number(env.DCE_BENCH_M ?? 1024);
const K = Number(env.DCE_BENCH_K ?? 16);
const N = Number(env.DCE_BENCH_N ?? 1024);
const TILE = Number(env.DCE_BENCH_TILE ?? 8);
const WORKERS = Number(env.DCE_BENCH_WORKERS ?? 2);
const THREADS = Number(env.DCE_BENCH_THREADS ?? 2);
const KERNEL = env.DCE_BENCH_KERNEL ?? "reference";
const RUNS = Number(env.DCE_BENCH_RUNS ?? 1);
const VERIFY = (env.DCE_BENCH_VERIFY ?? "on") !== "off";

function random(rows, cols, seed) {
  let x = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = (x / 0x100000000) * 2 - 1;
  }
  return { rows, cols, data };
}

const dir = mkdtempSync(join(tmpdir(), "dce-bench-"));
const workers = [];
let coordinator;
let exitCode = 1;
try {
  const certs = await generateDevCertificates({ outDir: join(dir, "certs") });
  coordinator = await startCoordinator({
    host: "127.0.0.1",
    port: 0,
    tlsDir: certs.dir,
    dataDir: join(dir, "data"),
    logger: pino({ level: "warn" }, pino.destination(2)),
    ...(VERIFY ? {} : { verify: false }),
    ...(env.DCE_BENCH_FSYNC === "off" ? { fsync: false } : {}),
  });
  for (let i = 0; i < WORKERS; i++) {
    const args = ["--coordinator", coordinator.url, "--ca", certs.caCert, "--threads", String(THREADS), "--name", `bench-w${i}`];
    workers.push(
      spawn(process.execPath, [join(root, "packages/worker/bin/worker.js"), ...args], { stdio: ["ignore", "ignore", "pipe"] }),
    );
  }
  await Promise.all(
    workers.map(
      (w) =>
        new Promise((res, rej) => {
          let log = "";
          const onData = (d) => {
            log += d;
            if (log.includes("worker registered")) {
              w.stderr.off("data", onData);
              w.stderr.resume();
              res();
            }
          };
          w.stderr.on("data", onData);
          w.on("exit", (code) => rej(new Error(`worker exited with ${code}: ${log}`)));
        }),
    ),
  );
  const client = createClient({ baseUrl: coordinator.url, ca: readFileSync(certs.caCert, "utf8") });
  for (let run = 0; run < RUNS; run++) {
    const a = random(M, K, 1 + run * 2);
    const b = random(K, N, 2 + run * 2);
    const t0 = performance.now();
    const job = await client.submitMatMul(a, b, { tileSize: TILE, kernel: KERNEL });
    const c = await job.result();
    const seconds = (performance.now() - t0) / 1000;
    const status = await job.status();
    if (c.rows !== M || c.cols !== N) throw new Error("wrong result shape");
    console.log(
      `A(${M}x${K}) x B(${K}x${N}), tile ${TILE}: ${status.shardsTotal} shards in ${seconds.toFixed(2)} s = ` +
        `${Math.round(status.shardsTotal / seconds)} shards/s (${WORKERS} workers x ${THREADS} threads, ` +
        `${KERNEL}, verification ${VERIFY ? "on" : "off"})`,
    );
  }
  exitCode = 0;
} catch (e) {
  console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}`);
} finally {
  for (const w of workers) w.kill("SIGTERM");
  await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r() : w.on("exit", r)))));
  await coordinator?.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
