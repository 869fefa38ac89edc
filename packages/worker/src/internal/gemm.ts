import { performance } from "node:perf_hooks";
import type { Kernel, StopFlag } from "../kernels/types.js";
import { extractColumns } from "./matrix.js";

/** One product as a kernel runs it: `b` is `k × ldb`, of which columns `[bColStart, bColStart + n)` are used. */
export interface GemmCall {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: Float64Array;
  readonly b: Float64Array;
  readonly bColStart: number;
  readonly ldb: number;
}

/**
 * Runs one product with `kernel` on the calling thread: a kernel thread, or the worker's
 * main thread for a tiny product (pool.ts). Both paths run this same code, so a
 * product's bits do not depend on where it ran.
 * @returns C (`m × n`, row-major) and the kernel's own time in ms.
 * @throws the kernel's error.
 */
export function runGemm(kernel: Kernel, call: GemmCall, stop?: StopFlag): { c: Float64Array<ArrayBuffer>; computeMs: number } {
  const { m, n, k, a, ldb, bColStart } = call;
  const c = new Float64Array(m * n);
  let startMs: number;
  if (ldb === n && bColStart === 0) {
    startMs = performance.now();
    kernel.gemm(m, n, k, a, call.b, c, stop);
  } else if (kernel.gemmStrided !== undefined) {
    // A column panel of a wider B, read in place.
    startMs = performance.now();
    kernel.gemmStrided(m, n, k, a, call.b.subarray(bColStart), ldb, c, stop);
  } else {
    // Columns of a wider B are copied out first (off the event loop when on a kernel thread).
    const b = extractColumns(call.b, k, ldb, bColStart, bColStart + n);
    startMs = performance.now();
    kernel.gemm(m, n, k, a, b, c, stop);
  }
  return { c, computeMs: performance.now() - startMs };
}
