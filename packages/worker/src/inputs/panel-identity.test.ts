import { afterAll, describe, expect, it } from "vitest";
import { kernelNames } from "../kernels/names.js";
import { type ComputePool, createThreadPool } from "../pool.js";
import { avx512Unavailable } from "../test-support/avx512.js";
import { compileThreadScript, removeCompiledThreadScript } from "../test-support/compile-thread.js";
import { openblasInstalled } from "../test-support/openblas.js";

// The two shapes ShardInputs gives the compute pool (all of B with the kernel picking the
// columns, or the shard's column panel alone) give the same bits, with every kernel that
// runs here, through the kernel threads the worker uses.

const pools: ComputePool[] = [];
afterAll(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
  removeCompiledThreadScript();
});

/** Deterministic values in [-0.5, 0.5), in shared memory as the worker's cached inputs are. */
function shared(len: number, seed: number): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(len * 8));
  let x = seed;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out[i] = x / 2 ** 31 - 0.5;
  }
  return out;
}

/** Columns [c0, c1) of a k×n row-major matrix, contiguous, in shared memory (as a fetched panel). */
function panelOf(b: Float64Array, k: number, n: number, c0: number, c1: number): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(k * (c1 - c0) * 8));
  for (let r = 0; r < k; r++) out.set(b.subarray(r * n + c0, r * n + c1), r * (c1 - c0));
  return out;
}

const bits = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

const skipWhy: Record<string, string | undefined> = {
  "native-blas": openblasInstalled ? undefined : "OpenBLAS is not installed",
  "native-avx512": avx512Unavailable,
};

// m × k by k × n, with column panels [c0, c1): primes, a one-column panel at either edge,
// panels off the SIMD width and register tiles, the whole width.
const cases: [number, number, number, number, number][] = [
  [29, 53, 37, 0, 1],
  [29, 53, 37, 52, 53],
  [29, 53, 37, 17, 30],
  [1, 7, 1, 3, 4],
  [67, 131, 257, 5, 128],
  [13, 11, 3, 0, 11],
];

describe.each(kernelNames.map((name) => [name]))("kernel %s: whole B or its column panel", (name) => {
  it.skipIf(skipWhy[name] !== undefined).each(cases)(
    "m=%i n=%i k=%i columns [%i, %i): the same bits",
    async (m, n, k, c0, c1) => {
      const pool = createThreadPool({ threads: 1, threadUrl: compileThreadScript() });
      pools.push(pool);
      const a = shared(m * k, m + 7 * k);
      const b = shared(k * n, n + 3 * k);
      const width = c1 - c0;
      const run = (bb: Float64Array, bColStart: number, ldb: number) =>
        pool.run({ kernel: name, m, n: width, k, a, b: bb, bColStart, ldb });
      const whole = await run(b, c0, n);
      const panel = await run(panelOf(b, k, n, c0, c1), 0, width);
      expect(whole.c).toHaveLength(m * width);
      expect(bits(panel.c)).toEqual(bits(whole.c));
    },
  );
});
