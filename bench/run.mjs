// `pnpm bench`: the performance benchmark (not a test). It starts a real TLS coordinator
// and worker processes on loopback, runs float64 matrix products end to end through the
// SDK (arrays in memory -> result in memory) and through the `dce` CLI, measures tiny-shard
// throughput and small-job latency, compares with NumPy on 2 cores and with Dask
// distributed (2 worker processes x 1 thread) measured in the same run, counts the bytes
// each process moves per job, prints one table and writes the same figures as JSON under
// bench/results/.
//
//   pnpm bench [--large] [--sizes 1024,2048] [--kernels native-blas,wasm-simd] [--workers 1,2] [--repeat 3]
//              [--quick] [--trace] [--dask-chunkings rows2,2x,4x]
//              [--skip kernels,sdk,variants,cli,tiny,latency,dask]
//
// Every configuration gets fresh processes, so the peak RSS figures (VmHWM) belong to it.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { encodeNpy, parseNpy } from "@dce/client-sdk";
import { randomMatrix } from "@dce/core/testing";
import { BIN, prepare, startCluster } from "./cluster.mjs";
import { daskTimes } from "./dask.mjs";
import { numpyTimes } from "./numpy.mjs";
import { benchSdk } from "./sdk.mjs";
import { percentile, spotCheck } from "./stats.mjs";
import { formatTable } from "./table.mjs";
import { parseOptions } from "./usage.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const opts = parseOptions(import.meta.url, {
  large: { type: "boolean", default: false },
  quick: { type: "boolean", default: false },
  sizes: { type: "string" },
  kernels: { type: "string" },
  workers: { type: "string", default: "1,2" },
  repeat: { type: "string" },
  skip: { type: "string", default: "" },
  trace: { type: "boolean", default: false },
  "dask-chunkings": { type: "string", default: "rows2,2x,4x" },
});
const sizes = opts.sizes ? opts.sizes.split(",").map(Number) : [1024, 2048, 4096, ...(opts.large ? [8192] : [])];
const repeat = Number(opts.repeat ?? (opts.quick ? 1 : 3));
const skip = new Set(opts.skip.split(",").filter(Boolean));
const workerCounts = opts.workers.split(",").map(Number);
const cores = cpus().length;
const dir = mkdtempSync(join(tmpdir(), "dce-bench-"));
const results = {
  startedAt: new Date().toISOString(),
  node: process.version,
  cores,
  options: { sizes, repeat, workers: workerCounts, skip: [...skip], trace: opts.trace },
  // What the workers (and Dask) run with; NumPy runs with the two OpenBLAS variables unset.
  env: { OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE },
  rows: [],
  notes: [],
};
const latencyCount = opts.quick ? 50 : 200;
const log = (s) => process.stderr.write(`${s}\n`);

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
  const numpy = numpyTimes(sizes, repeat);
  if (numpy.note) results.notes.push(numpy.note);
  results.numpy = numpy;

  // Dask before any dce process starts, so neither competes with the other for the cores.
  if (skip.has("dask")) {
    results.notes.push("Dask skipped (--skip dask)");
  } else {
    log("Dask distributed, 2 worker processes x 1 thread ...");
    const chunkings = opts["dask-chunkings"].split(",").filter(Boolean);
    results.dask = await daskTimes({
      sizes,
      repeat,
      chunkings,
      latency: skip.has("latency") ? 0 : latencyCount,
      env: process.env,
      log,
    });
    if (results.dask.note) {
      results.notes.push(results.dask.note);
      log(`  ${results.dask.note}`);
    }
  }
  const refs = {
    numpy: numpy.note ? {} : numpy,
    dask:
      results.dask && !results.dask.note
        ? Object.fromEntries(sizes.map((n) => [String(n), results.dask.sizes[String(n)].seconds]))
        : {},
  };

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
          const rows = await benchSdk({
            kernel,
            workers,
            path,
            coordinatorArgs,
            inputs,
            sizes,
            cores,
            refs,
            trace: opts.trace,
            caCert: certs.caCert,
            log,
          });
          results.rows.push(...rows);
        }
      }
    }
  }

  const twoWorkers = { workers: 2, kernels: "auto", threads: Math.max(1, Math.floor(cores / 2)) };

  // --- the n=4096 job through the CLI ---------------------------------------------------
  const cliN = sizes.includes(4096) ? 4096 : sizes[sizes.length - 1];
  if (!skip.has("cli")) {
    const cluster = await startCluster(twoWorkers);
    try {
      // The same warm-up as the SDK rows (kernels loaded, threads started), so the two
      // compare the client paths, not a cold cluster against a warm one.
      const w = randomMatrix(300, 300, 7);
      await (await cluster.client.submitMatMul(w, w)).result();
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
      const np = refs.numpy[String(cliN)];
      const dk = refs.dask[String(cliN)];
      results.rows.push({
        kind: "cli",
        n: cliN,
        kernel: "auto",
        workers: 2,
        seconds: first,
        ratioToNumpy: np ? first / np : undefined,
        ratioToDask: dk ? first / dk : undefined,
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
      const count = latencyCount;
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

  printTable();
  mkdirSync(join(root, "bench/results"), { recursive: true });
  const file = join(root, "bench/results", `${results.startedAt.replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nresults written to ${file}`);
}

function printTable() {
  console.log(formatTable(results, sizes).join("\n"));
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
