// Micro-benchmark (not a test): GFLOP/s of each kernel on one thread, for square products.
//
//   pnpm --filter @dce/worker build && node packages/worker/bench/kernels.mjs [--sizes 512,1024,2048] [--kernels LIST]
//     [--tiles 256x256x2048,512x512x4096,344x344x1024] [--json]
//
// LIST names kernels as the worker does (native-avx512, native-blas, wasm-simd, reference) plus
// wasm-simd-nofma (the wasm kernel without FMA). Each figure is the best of several runs
// (at least one, until about a second has passed), counting 2·n³ flops per product and
// the whole gemm call (for wasm-simd that includes copying the operands into its memory).
// `--tiles MxNxK,...` adds the products a job's tiles really run: an m × n tile of C over
// depth k, with the tile's columns read in place from a B k × k wide (gemmStrided, ldb = k),
// in columns past the first, as a worker reads them; `--tiles ""` leaves them out.
// Each call gets a stop flag, as in the worker's threads, so the cost of checking it counts.
// Beside wall time it prints the figure per CPU-second of the best run (`cpu`, from
// process.cpuUsage: the kernel runs on this one thread), which other processes competing
// for the cores do not lower; on a busy machine compare kernels by it.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createKernel, createWasmSimdKernel, KernelUnavailableError } from "../dist/index.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "512,1024,2048" },
    kernels: { type: "string", default: "native-avx512,native-blas,wasm-simd,wasm-simd-nofma,reference" },
    tiles: { type: "string", default: "256x256x2048,512x512x4096,344x344x1024" },
    // One JSON line per kernel instead of the table (for `pnpm bench`).
    json: { type: "boolean", default: false },
  },
});
/** Each product timed: a square n × n × n, or a tile m × n of C over depth k with ldb = k. */
const products = [
  ...values.sizes
    .split(",")
    .filter(Boolean)
    .map((size) => ({ label: size, m: Number(size), n: Number(size), k: Number(size), ldb: undefined })),
  ...values.tiles
    .split(",")
    .filter(Boolean)
    .map((tile) => {
      const [m, n, k] = tile.split("x").map(Number);
      if (!(m > 0 && n > 0 && k >= n)) throw new Error(`--tiles: ${tile} is not MxNxK with K >= N > 0`);
      return { label: tile, m, n, k, ldb: k };
    }),
];
const stop = new Int32Array(new SharedArrayBuffer(4)); // never set

function load(name) {
  try {
    return name === "wasm-simd-nofma" ? createWasmSimdKernel({ fma: false }) : createKernel(name);
  } catch (e) {
    if (e instanceof KernelUnavailableError) return e;
    throw e;
  }
}

function random(len, seed) {
  let x = seed;
  return Float64Array.from({ length: len }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31 - 0.5;
  });
}

if (!values.json) console.log(`node ${process.version}, ${process.arch}, one thread`);
const rows = [];
for (const label of values.kernels.split(",")) {
  const kernel = load(label);
  if (kernel instanceof KernelUnavailableError) {
    console.log(
      values.json ? JSON.stringify({ kernel: label, unavailable: kernel.message }) : `${label.padEnd(16)} ${kernel.message}`,
    );
    continue;
  }
  const row = [label.padEnd(16)];
  const gflops = {};
  const cpuGflops = {};
  for (const { label: size, m, n, k, ldb } of products) {
    if (ldb !== undefined && kernel.gemmStrided === undefined) continue;
    const a = random(m * k, 1);
    const b = random(k * (ldb ?? n), 2);
    // A tile's columns start past the first (here 3 columns into the second half of B).
    const panel = ldb === undefined ? b : b.subarray(Math.floor(ldb / 2) + 3 - n);
    const c = new Float64Array(m * n);
    const run = () =>
      ldb === undefined ? kernel.gemm(m, n, k, a, b, c, stop) : kernel.gemmStrided(m, n, k, a, panel, ldb, c, stop);
    // warm-up: compile and tier up (the best of the timed runs also hides memory growth)
    const w = Math.min(n, 256);
    kernel.gemm(w, w, w, a, b, c);
    let bestMs = Number.POSITIVE_INFINITY;
    let bestCpuMs = Number.POSITIVE_INFINITY;
    const start = performance.now();
    for (let r = 0; r < 5 && (r === 0 || performance.now() - start < 1000); r++) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      run();
      const used = process.cpuUsage(cpu);
      bestMs = Math.min(bestMs, performance.now() - t);
      bestCpuMs = Math.min(bestCpuMs, (used.user + used.system) / 1000);
    }
    gflops[size] = (2 * m * n * k) / bestMs / 1e6;
    cpuGflops[size] = (2 * m * n * k) / bestCpuMs / 1e6;
    const name = ldb === undefined ? `n=${size}` : size;
    row.push(`${name}: ${gflops[size].toFixed(1).padStart(6)} GFLOP/s (cpu ${cpuGflops[size].toFixed(1).padStart(5)})`);
  }
  rows.push(row.join("  "));
  if (values.json) console.log(JSON.stringify({ kernel: label, fingerprint: kernel.fingerprint, gflops, cpuGflops }));
  else console.log(`${rows.at(-1)}   [${kernel.fingerprint}]`);
}
