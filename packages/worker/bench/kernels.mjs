// Micro-benchmark (not a test): GFLOP/s of each kernel on one thread, for square products.
//
//   pnpm --filter @dce/worker build && node packages/worker/bench/kernels.mjs [--sizes 512,1024,2048] [--kernels LIST] [--json]
//
// LIST names kernels as the worker does (native-avx512, native-blas, wasm-simd, reference) plus
// wasm-simd-nofma (the wasm kernel without FMA). Each figure is the best of several runs
// (at least one, until about a second has passed), counting 2·n³ flops per product and
// the whole gemm call (for wasm-simd that includes copying the operands into its memory).
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
    // One JSON line per kernel instead of the table (for `pnpm bench`).
    json: { type: "boolean", default: false },
  },
});
const sizes = values.sizes.split(",").map(Number);
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
  for (const n of sizes) {
    const a = random(n * n, 1);
    const b = random(n * n, 2);
    const c = new Float64Array(n * n);
    // warm-up: compile and tier up (the best of the timed runs also hides memory growth)
    const w = Math.min(n, 256);
    kernel.gemm(w, w, w, a, b, c);
    let bestMs = Number.POSITIVE_INFINITY;
    let bestCpuMs = Number.POSITIVE_INFINITY;
    const start = performance.now();
    for (let r = 0; r < 5 && (r === 0 || performance.now() - start < 1000); r++) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      kernel.gemm(n, n, n, a, b, c, stop);
      const used = process.cpuUsage(cpu);
      bestMs = Math.min(bestMs, performance.now() - t);
      bestCpuMs = Math.min(bestCpuMs, (used.user + used.system) / 1000);
    }
    gflops[n] = (2 * n ** 3) / bestMs / 1e6;
    cpuGflops[n] = (2 * n ** 3) / bestCpuMs / 1e6;
    row.push(`n=${n}: ${gflops[n].toFixed(1).padStart(6)} GFLOP/s (cpu ${cpuGflops[n].toFixed(1).padStart(5)})`);
  }
  rows.push(row.join("  "));
  if (values.json) console.log(JSON.stringify({ kernel: label, fingerprint: kernel.fingerprint, gflops, cpuGflops }));
  else console.log(`${rows.at(-1)}   [${kernel.fingerprint}]`);
}
