// `pnpm bench`: the performance benchmark (not a test). It starts a real TLS coordinator
// and worker processes on loopback, runs float64 matrix products end to end through the
// SDK (arrays in memory -> result in memory) and through the `dce` CLI, measures tiny-shard
// throughput and small-job latency, compares with NumPy on 2 cores measured in the same
// run, prints one table and writes the same figures as JSON under bench/results/.
//
//   pnpm bench [--large] [--sizes 1024,2048] [--kernels native-blas,wasm-simd] [--workers 1,2] [--repeat 3]
//              [--quick] [--skip kernels,sdk,variants,cli,tiny,latency]
//
// Every configuration gets fresh processes, so the peak RSS figures (VmHWM) belong to it.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { encodeNpy, parseNpy } from "@dce/client-sdk";
import { randomMatrix } from "@dce/core/testing";
import { BIN, prepare, startCluster } from "./cluster.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: opts } = parseArgs({
  options: {
    large: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    sizes: { type: "string" },
    kernels: { type: "string" },
    workers: { type: "string", default: "1,2" },
    repeat: { type: "string" },
    skip: { type: "string", default: "" },
  },
});
const sizes = opts.sizes ? opts.sizes.split(",").map(Number) : [1024, 2048, 4096, ...(opts.large ? [8192] : [])];
const repeat = Number(opts.repeat ?? (opts.quick ? 1 : 3));
const skip = new Set(opts.skip.split(",").filter(Boolean));
const workerCounts = opts.workers.split(",").map(Number);
const cores = cpus().length;
const dir = mkdtempSync(join(tmpdir(), "dce-bench-"));
const results = { startedAt: new Date().toISOString(), node: process.version, cores, rows: [], notes: [] };
const log = (s) => process.stderr.write(`${s}\n`);

/** Checks 64 random entries of C against dot products (catches a wrong or missing result). */
function spotCheck(a, b, c) {
  if (c.rows !== a.rows || c.cols !== b.cols) throw new Error(`result is ${c.rows}x${c.cols}, expected ${a.rows}x${b.cols}`);
  const k = a.cols;
  let x = 12345;
  for (let t = 0; t < 64; t++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const i = x % a.rows;
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % b.cols;
    let s = 0;
    let mag = 0;
    for (let p = 0; p < k; p++) {
      s += a.data[i * k + p] * b.data[p * b.cols + j];
      mag += Math.abs(a.data[i * k + p] * b.data[p * b.cols + j]);
    }
    const got = c.data[i * b.cols + j];
    if (Math.abs(got - s) > 1e-12 * Math.max(1, mag)) throw new Error(`C[${i},${j}] = ${got}, expected ${s}`);
  }
}

/** NumPy on 2 cores: rows of A split over 2 threads, one BLAS thread each. Seconds per n, or a note. */
function numpyTimes(ns) {
  const py = `
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
out = {}
pool = ThreadPoolExecutor(2)
for n in ${JSON.stringify(ns)}:
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)); b = rng.standard_normal((n, n)); c = np.empty((n, n))
    h = n // 2
    def part(lo, hi):
        np.matmul(a[lo:hi], b, out=c[lo:hi])
    best = 1e9
    for _ in range(${Math.max(3, repeat)}):
        t = time.perf_counter()
        list(pool.map(lambda r: part(*r), [(0, h), (h, n)]))
        best = min(best, time.perf_counter() - t)
    out[str(n)] = best
print(json.dumps(out))
`;
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  try {
    return JSON.parse(execFileSync("python3", ["-c", py], { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  } catch (e) {
    return { note: `NumPy unavailable (${String(e.message).split("\n")[0]}); ratio column skipped` };
  }
}

function median(xs) {
  const s = [...xs].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)];
}

function percentile(xs, p) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** Which kernels a worker here can run (the worker reports unavailable ones and skips them). */
function availableKernels() {
  const out = execFileSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { listKernels } from "@dce/worker"; console.log(JSON.stringify(listKernels().map((k) => k.name)));`,
    ],
    { cwd: join(root, "packages/worker"), encoding: "utf8" },
  );
  return JSON.parse(out);
}

async function main() {
  const certs = await prepare(dir);
  const avail = availableKernels();
  const kernels = opts.kernels ? opts.kernels.split(",") : avail.filter((k) => k !== "reference");
  log(`dce bench: node ${process.version}, ${cores} cores, kernels available: ${avail.join(", ")}; sizes ${sizes.join(", ")}`);

  log("NumPy on 2 cores ...");
  const numpy = numpyTimes(sizes);
  if (numpy.note) results.notes.push(numpy.note);
  results.numpy = numpy;

  // Matrices for every size, one pair per repetition (fresh bytes, so no upload is skipped).
  const inputs = new Map();
  for (const n of sizes) {
    inputs.set(
      n,
      Array.from({ length: repeat }, (_, r) => ({
        a: randomMatrix(n, n, n * 10 + r * 2 + 1),
        b: randomMatrix(n, n, n * 10 + r * 2 + 2),
      })),
    );
  }

  // --- each kernel alone, one thread, in-process (no engine around it) -------------------
  if (!skip.has("kernels")) {
    log("kernels alone, one thread ...");
    const out = execFileSync(
      process.execPath,
      [
        join(root, "packages/worker/bench/kernels.mjs"),
        "--json",
        "--sizes",
        "1024",
        "--kernels",
        "native-avx512,native-blas,wasm-simd,wasm-simd-nofma",
      ],
      { encoding: "utf8" },
    );
    for (const line of out.split("\n").filter(Boolean)) {
      const k = JSON.parse(line);
      results.rows.push({ kind: "kernel", ...k });
      log(`  kernel ${k.kernel}: ${k.gflops ? `${k.gflops["1024"].toFixed(1)} GFLOP/s` : k.unavailable}`);
    }
  }

  // --- end to end through the SDK ----------------------------------------------------
  if (!skip.has("sdk")) {
    // The default set-up, plus, for the first kernel on 2 workers, the same jobs with
    // matrix bytes over RPCs only (no local store) and with verification off.
    const variants = [
      { path: "default", coordinatorArgs: [] },
      { path: "rpc only", coordinatorArgs: ["--local-store", "off"], only: true },
      { path: "no verify", coordinatorArgs: ["--verify", "off"], only: true },
    ];
    for (const kernel of kernels) {
      for (const workers of workerCounts) {
        for (const { path, coordinatorArgs, only } of variants) {
          if (only && (kernel !== kernels[0] || workers !== 2 || skip.has("variants"))) continue;
          await benchSdk({ kernel, workers, path, coordinatorArgs, inputs, numpy });
        }
      }
    }
  }

  const defaultKernel = kernels[0];
  const twoWorkers = { workers: 2, kernels: "auto", threads: Math.max(1, Math.floor(cores / 2)) };

  // --- the n=4096 job through the CLI ---------------------------------------------------
  const cliN = sizes.includes(4096) ? 4096 : sizes[sizes.length - 1];
  if (!skip.has("cli")) {
    const cluster = await startCluster(twoWorkers);
    try {
      const { a, b } = inputs.get(cliN)[0];
      writeFileSync(join(dir, "A.npy"), encodeNpy(a));
      writeFileSync(join(dir, "B.npy"), encodeNpy(b));
      const run = (out) =>
        new Promise((res, rej) => {
          const t0 = performance.now();
          const p = spawn(process.execPath, [BIN.dce, "submit", join(dir, "A.npy"), join(dir, "B.npy"), "-o", out], {
            env: { ...process.env, DCE_COORDINATOR: cluster.url, DCE_CA: certs.caCert, DCE_TOKEN: cluster.token },
            stdio: ["ignore", "ignore", "pipe"],
          });
          let err = "";
          p.stderr.on("data", (d) => {
            err += d;
          });
          p.once("exit", (code) =>
            code === 0 ? res((performance.now() - t0) / 1000) : rej(new Error(`dce submit exited ${code}: ${err}`)),
          );
        });
      // Fresh inputs per run would need fresh files; the first run is the honest one
      // (nothing cached at the coordinator), later runs skip the upload and are reported apart.
      const first = await run(join(dir, "C.npy"));
      spotCheck(a, b, parseNpy(readFileSync(join(dir, "C.npy"))));
      const np = numpy[String(cliN)];
      results.rows.push({
        kind: "cli",
        n: cliN,
        kernel: "auto",
        workers: 2,
        seconds: first,
        ratioToNumpy: np ? first / np : undefined,
        rss: cluster.rss(),
      });
      log(`  cli n=${cliN}: ${first.toFixed(3)} s${np ? ` (${(first / np).toFixed(2)}x NumPy)` : ""}`);
    } finally {
      await cluster.stop();
      rmSync(join(dir, "C.npy"), { force: true });
    }
  }

  // --- tiny shards and latency ------------------------------------------------------------
  if (!skip.has("tiny")) {
    const cluster = await startCluster({ ...twoWorkers, kernels: "reference" });
    try {
      const a = randomMatrix(1024, 16, 1);
      const b = randomMatrix(16, 1024, 2);
      const w = randomMatrix(64, 64, 3);
      await (await cluster.client.submitMatMul(w, w, { kernel: "reference", tileSize: 8 })).result();
      const rates = [];
      for (let r = 0; r < Math.min(repeat, 2); r++) {
        const a2 = r === 0 ? a : randomMatrix(1024, 16, 11 + r);
        const t0 = performance.now();
        const job = await cluster.client.submitMatMul(a2, b, { kernel: "reference", tileSize: 8 });
        const c = await job.result();
        const s = (performance.now() - t0) / 1000;
        spotCheck(a2, b, c);
        rates.push(16384 / s);
      }
      const rate = Math.max(...rates);
      results.rows.push({ kind: "tiny-shards", shards: 16384, shardsPerSecond: rate, rss: cluster.rss() });
      log(`  tiny shards: ${rate.toFixed(0)} shards/s`);
    } finally {
      await cluster.stop();
    }
  }
  if (!skip.has("latency")) {
    const cluster = await startCluster(twoWorkers);
    try {
      const lat = [];
      const count = opts.quick ? 50 : 200;
      for (let i = 0; i < count + 5; i++) {
        const a = randomMatrix(64, 64, 1000 + i);
        const b = randomMatrix(64, 64, 5000 + i);
        const t0 = performance.now();
        const c = await (await cluster.client.submitMatMul(a, b)).result();
        const ms = performance.now() - t0;
        if (i >= 5) lat.push(ms); // the first few warm connections and kernels
        if (i === 5) spotCheck(a, b, c);
      }
      results.rows.push({
        kind: "latency",
        n: 64,
        count,
        p50Ms: percentile(lat, 50),
        p99Ms: percentile(lat, 99),
        rss: cluster.rss(),
      });
      log(`  latency 64x64: p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms`);
    } finally {
      await cluster.stop();
    }
  }

  printTable(defaultKernel);
  mkdirSync(join(root, "bench/results"), { recursive: true });
  const file = join(root, "bench/results", `${results.startedAt.replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nresults written to ${file}`);
}

/** One SDK configuration over every size: fresh processes, a warm-up job, `repeat` timed jobs per size. */
async function benchSdk({ kernel, workers, path, coordinatorArgs, inputs, numpy }) {
  const threads = workers === 1 ? cores : Math.max(1, Math.floor(cores / workers));
  const cluster = await startCluster({ workers, kernels: kernel, threads, coordinatorArgs });
  try {
    // warm-up: kernels loaded, connections open
    const w = randomMatrix(300, 300, 7);
    await (await cluster.client.submitMatMul(w, w, { kernel })).result();
    for (const n of sizes) {
      const secs = [];
      for (const { a, b } of inputs.get(n)) {
        const t0 = performance.now();
        const job = await cluster.client.submitMatMul(a, b, { kernel });
        const c = await job.result();
        secs.push((performance.now() - t0) / 1000);
        spotCheck(a, b, c);
      }
      const s = Math.min(...secs);
      const np = numpy[String(n)];
      results.rows.push({
        kind: "sdk",
        path,
        n,
        kernel,
        workers,
        threadsPerWorker: threads,
        seconds: s,
        medianSeconds: median(secs),
        gflops: (2 * n ** 3) / s / 1e9,
        ratioToNumpy: np ? s / np : undefined,
        rss: cluster.rss(),
      });
      log(`  sdk n=${n} ${kernel} ${workers}w ${path}: ${s.toFixed(3)} s${np ? ` (${(s / np).toFixed(2)}x NumPy)` : ""}`);
    }
  } finally {
    await cluster.stop();
  }
}

function mib(bytes) {
  return bytes === undefined ? "?" : `${(bytes / 2 ** 20).toFixed(0)}`;
}

function printTable() {
  const lines = [];
  lines.push(`dce bench  node ${process.version}  ${cores} cores  ${results.startedAt}`);
  if (results.numpy && !results.numpy.note) {
    lines.push(
      `NumPy, 2 cores (rows split over 2 threads x 1 BLAS thread): ${sizes.map((n) => `n=${n} ${results.numpy[String(n)]?.toFixed(3)} s`).join("  ")}`,
    );
  }
  lines.push("");
  lines.push("path: default = local store on (same host) and verification on; rpc only = coordinator --local-store off;");
  lines.push("      no verify = coordinator --verify off.");
  lines.push(
    "what             path       n      kernel        workers  wall s   GFLOP/s  x NumPy  coord RSS MiB  worker RSS MiB",
  );
  for (const r of results.rows) {
    if (r.kind === "sdk" || r.kind === "cli") {
      lines.push(
        [
          (r.kind === "sdk" ? "SDK" : "CLI dce submit").padEnd(16),
          (r.path ?? "default").padEnd(10),
          String(r.n).padEnd(6),
          r.kernel.padEnd(13),
          `${r.workers}x${r.threadsPerWorker ?? 1}t`.padEnd(8),
          r.seconds.toFixed(3).padStart(7),
          ((2 * r.n ** 3) / r.seconds / 1e9).toFixed(1).padStart(9),
          (r.ratioToNumpy === undefined ? "-" : `${r.ratioToNumpy.toFixed(2)}x`).padStart(8),
          mib(r.rss.coordinator).padStart(14),
          r.rss.workers.map(mib).join(", ").padStart(15),
        ].join(" "),
      );
    }
  }
  for (const r of results.rows) {
    if (r.kind === "kernel")
      lines.push(
        `kernel alone, one thread, n=1024: ${r.kernel.padEnd(16)} ${r.gflops ? `${r.gflops["1024"].toFixed(1)} GFLOP/s  (${r.fingerprint})` : `unavailable: ${r.unavailable}`}`,
      );
  }
  for (const r of results.rows) {
    if (r.kind === "tiny-shards")
      lines.push(
        `tiny shards: 1024x16 . 16x1024, tile 8 (${r.shards} shards), reference kernel: ${r.shardsPerSecond.toFixed(0)} shards/s  (coord RSS ${mib(r.rss.coordinator)} MiB)`,
      );
    if (r.kind === "latency")
      lines.push(
        `latency: 64x64 submit -> result, ${r.count} sequential jobs: p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`,
      );
  }
  for (const n of results.notes) lines.push(`note: ${n}`);
  console.log(lines.join("\n"));
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
