import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { startInMemoryCoordinator } from "@dce/coordinator/testing";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ComputePool, createThreadPool } from "../pool.js";
import { avx512Unavailable } from "../test-support/avx512.js";
import { compileThreadScript, removeCompiledThreadScript } from "../test-support/compile-thread.js";
import { openblasInstalled } from "../test-support/openblas.js";
import { Worker } from "../worker.js";
import { createKernel, type Kernel, listKernels, selectKernels } from "./kernel.js";
import { kernelNames } from "./names.js";
import { createNativeAvx512Kernel } from "./native-avx512.js";
import { createNativeBlasKernel, nativeBlasAddonPath, nativeBlasPanels } from "./native-blas.js";
import { referenceKernel } from "./reference.js";
import { KernelStoppedError, KernelUnavailableError } from "./support.js";
import { createWasmSimdKernel } from "./wasm-simd.js";

/** Deterministic values in [-0.5, 0.5). */
function random(len: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: len }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31 - 0.5;
  });
}

function gemmWith(kernel: Kernel, m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  // Poison the output: a kernel must overwrite, never accumulate into, c.
  const c = new Float64Array(m * n).fill(Number.NaN);
  kernel.gemm(m, n, k, a, b, c);
  return c;
}

/** ‖x − ref‖_F / ‖ref‖_F (0 when both are zero). */
function relativeError(x: Float64Array, ref: Float64Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i] as number;
    diff += ((x[i] as number) - r) ** 2;
    norm += r * r;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

const bits = (x: Float64Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

/** Odd shapes: 1s, primes, sizes off every tile (5×4 registers, 80/256/1024 blocks) and SIMD width, k = 1. */
const shapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 9, 4],
  [1, 1031, 3],
  [9, 1, 4],
  [7, 13, 5],
  [13, 7, 11],
  [3, 4, 1],
  [5, 4, 257],
  [67, 129, 31],
  [83, 37, 513],
  [163, 1031, 19],
  [11, 2, 2],
];

interface Candidate {
  readonly label: string;
  readonly create: () => Kernel;
  readonly skip: boolean;
}

const candidates: Candidate[] = [
  { label: "wasm-simd (auto FMA)", create: () => createWasmSimdKernel(), skip: false },
  { label: "wasm-simd (no FMA)", create: () => createWasmSimdKernel({ fma: false }), skip: false },
  { label: "wasm-simd (tiny chunks)", create: () => createWasmSimdKernel({ chunkBytes: 24 * 8 * 8 }), skip: false },
  { label: "native-blas", create: createNativeBlasKernel, skip: !openblasInstalled },
  { label: "native-avx512", create: createNativeAvx512Kernel, skip: avx512Unavailable !== undefined },
];

/** Kernels that run here (each skip above says why one does not). */
const runsHere = (name: string) =>
  (name !== "native-blas" || openblasInstalled) && (name !== "native-avx512" || avx512Unavailable === undefined);

for (const candidate of candidates) {
  describe.skipIf(candidate.skip)(candidate.label, () => {
    // Created in beforeAll: a skipped block's body still runs to collect its tests.
    let kernel: Kernel;
    beforeAll(() => {
      kernel = candidate.create();
    });

    it.each(shapes)("m=%i n=%i k=%i agrees with the reference to 1e-12 (Frobenius)", (m, n, k) => {
      const a = random(m * k, m * 31 + k);
      const b = random(k * n, n * 17 + k);
      const want = gemmWith(referenceKernel, m, n, k, a, b);
      const got = gemmWith(kernel, m, n, k, a, b);
      expect(got.every((x) => Number.isFinite(x))).toBe(true);
      expect(relativeError(got, want)).toBeLessThanOrEqual(1e-12);
    });

    it("agrees with the reference on random shapes", () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 23 }),
          fc.integer({ min: 1, max: 23 }),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 1, max: 1000 }),
          (m, n, k, seed) => {
            const a = random(m * k, seed);
            const b = random(k * n, seed + 1);
            const err = relativeError(gemmWith(kernel, m, n, k, a, b), gemmWith(referenceKernel, m, n, k, a, b));
            expect(err).toBeLessThanOrEqual(1e-12);
          },
        ),
        { numRuns: 60 },
      );
    });

    it("computes a known product exactly and writes +0 for k = 0", () => {
      const c = gemmWith(kernel, 2, 2, 3, Float64Array.of(1, 2, 3, 4, 5, 6), Float64Array.of(7, 8, 9, 10, 11, 12));
      expect([...c]).toEqual([58, 64, 139, 154]);
      const empty = gemmWith(kernel, 2, 3, 0, new Float64Array(0), new Float64Array(0));
      expect([...empty].every((x) => Object.is(x, 0))).toBe(true);
      kernel.gemm(0, 3, 2, new Float64Array(0), new Float64Array(6), new Float64Array(0)); // m = 0: nothing to do
    });

    it("is deterministic: the same inputs give the same bits, wherever they sit in memory", () => {
      const [m, n, k] = [37, 53, 300];
      const a = random(m * k, 5);
      const b = random(k * n, 6);
      const first = gemmWith(kernel, m, n, k, a, b);
      // the same values at other offsets of larger buffers, and a fresh output
      const a2 = new Float64Array(m * k + 3).subarray(3);
      a2.set(a);
      const b2 = new Float64Array(k * n + 1).subarray(1);
      b2.set(b);
      const c2 = new Float64Array(m * n + 5).fill(Number.NaN).subarray(5);
      kernel.gemm(m, n, k, a2, b2, c2);
      expect(bits(c2)).toEqual(bits(first));
      expect(bits(gemmWith(kernel, m, n, k, a, b))).toEqual(bits(first));
    });

    it("a column panel of a wider B read in place (gemmStrided, where the kernel has it) gives the bits of the panel copied out", () => {
      if (kernel.gemmStrided === undefined) return; // the thread copies the columns out for this kernel
      for (const [m, n, k, ldb, col] of [
        [37, 53, 300, 101, 17],
        [1, 1, 1, 3, 2],
        [64, 128, 257, 512, 384],
        [5, 7, 0, 9, 1],
      ] as const) {
        const a = random(m * k, 7);
        const wide = random(k * ldb, 8);
        const panel = new Float64Array(k * n);
        for (let r = 0; r < k; r++) panel.set(wide.subarray(r * ldb + col, r * ldb + col + n), r * n);
        const want = gemmWith(kernel, m, n, k, a, panel);
        const c = new Float64Array(m * n).fill(Number.NaN);
        kernel.gemmStrided(m, n, k, a, wide.subarray(col), ldb, c);
        expect(bits(c)).toEqual(bits(want));
      }
      expect(() => kernel.gemmStrided?.(2, 4, 3, random(6, 1), random(8, 1), 4, new Float64Array(8))).toThrow(RangeError);
      expect(() => kernel.gemmStrided?.(2, 4, 3, random(6, 1), random(12, 1), 3, new Float64Array(8))).toThrow(RangeError);
    });

    it("propagates NaN and Infinity", () => {
      const inf = Number.POSITIVE_INFINITY;
      // b = [inf; 1]. row 0: 1*inf + 0*1 = inf; row 1: NaN poisons; row 2: 0*inf = NaN; row 3: -1*inf + 1 = -inf
      const c = gemmWith(kernel, 4, 1, 2, Float64Array.of(1, 0, Number.NaN, 1, 0, 0, -1, 1), Float64Array.of(inf, 1));
      expect(c[0]).toBe(inf);
      expect(Number.isNaN(c[1])).toBe(true);
      expect(Number.isNaN(c[2])).toBe(true);
      expect(c[3]).toBe(-inf);
      expect(Number.isNaN(gemmWith(kernel, 1, 1, 2, Float64Array.of(1, 1), Float64Array.of(inf, -inf))[0])).toBe(true);
      // inside a larger product, only the affected row and column are poisoned
      const [m, n, k] = [9, 11, 7];
      const a = random(m * k, 1);
      const b = random(k * n, 2);
      a[4 * k + 3] = Number.NaN; // row 4
      b[2 * n + 6] = inf; // column 6
      const big = gemmWith(kernel, m, n, k, a, b);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          const x = big[i * n + j] as number;
          if (i === 4) expect(Number.isNaN(x)).toBe(true);
          else if (j === 6) expect(Math.abs(x)).toBe(inf);
          else expect(Number.isFinite(x)).toBe(true);
        }
      }
    });

    it("rejects arrays shorter than their shape", () => {
      expect(() => kernel.gemm(2, 2, 2, new Float64Array(3), new Float64Array(4), new Float64Array(4))).toThrow(RangeError);
      expect(() => kernel.gemm(2, 2, 2, new Float64Array(4), new Float64Array(4), new Float64Array(3))).toThrow(RangeError);
    });
  });
}

describe("wasm-simd", () => {
  it("fingerprints the binary and the FMA path", () => {
    const auto = createWasmSimdKernel();
    const plain = createWasmSimdKernel({ fma: false });
    expect(auto.name).toBe("wasm-simd");
    expect(auto.fingerprint).toMatch(/^wasm-simd\/[0-9a-f]{16}\/(fma|nofma)$/);
    expect(plain.fingerprint).toMatch(/^wasm-simd\/[0-9a-f]{16}\/nofma$/);
    // one fingerprint per binary: FMA uses the other binary, or the same one as plain
    if (auto.fingerprint.endsWith("/fma")) expect(auto.fingerprint.split("/")[1]).not.toBe(plain.fingerprint.split("/")[1]);
    else expect(auto.fingerprint).toBe(plain.fingerprint);
    expect(createKernel("wasm-simd").fingerprint).toBe(auto.fingerprint);
  });

  it("uses relaxed-SIMD FMA on Node.js 20 and 22 on an x64 CPU with FMA3", () => {
    const cpuHasFma = existsSync("/proc/cpuinfo") && /\bfma\b/.test(execFileSync("cat", ["/proc/cpuinfo"], { encoding: "utf8" }));
    if (process.arch !== "x64" || !cpuHasFma) return;
    expect(createWasmSimdKernel().fingerprint).toMatch(/\/fma$/);
    expect(createWasmSimdKernel({ fma: true }).fingerprint).toBe(createWasmSimdKernel().fingerprint);
  });

  it("without FMA equals the reference bit for bit (the same summation order)", () => {
    const plain = createWasmSimdKernel({ fma: false });
    for (const [m, n, k] of shapes) {
      const a = random(m * k, 7);
      const b = random(k * n, 8);
      expect(bits(gemmWith(plain, m, n, k, a, b))).toEqual(bits(gemmWith(referenceKernel, m, n, k, a, b)));
    }
    // the reference's order is observable: (0 + 1) + 1e16 - 1e16 = 0
    expect(gemmWith(plain, 1, 1, 3, Float64Array.of(1, 1e16, -1e16), Float64Array.of(1, 1, 1))[0]).toBe(0);
    expect(Object.is(gemmWith(plain, 1, 1, 1, Float64Array.of(-0), Float64Array.of(1))[0], 0)).toBe(true);
  });

  it.each([
    ["auto FMA", {}],
    ["no FMA", { fma: false }],
  ] as const)("%s: a sub-tile has the same bits as that part of the full product, in chunks or not", (_, options) => {
    const kernel = createWasmSimdKernel(options);
    const chunked = createWasmSimdKernel({ ...options, chunkBytes: 24 * 8 * 8 });
    const [m, n, k] = [29, 41, 600];
    const a = random(m * k, 11);
    const b = random(k * n, 12);
    const full = gemmWith(kernel, m, n, k, a, b);
    expect(bits(gemmWith(chunked, m, n, k, a, b))).toEqual(bits(full));
    for (const [r0, r1, c0, c1] of [
      [0, 5, 0, 4],
      [3, 29, 7, 41],
      [28, 29, 40, 41],
      [1, 12, 0, 41],
    ] as const) {
      const tm = r1 - r0;
      const tn = c1 - c0;
      const bPanel = new Float64Array(k * tn);
      for (let p = 0; p < k; p++) bPanel.set(b.subarray(p * n + c0, p * n + c1), p * tn);
      const tile = gemmWith(kernel, tm, tn, k, a.slice(r0 * k, r1 * k), bPanel);
      const want = new Float64Array(tm * tn);
      for (let i = 0; i < tm; i++) want.set(full.subarray((r0 + i) * n + c0, (r0 + i) * n + c1), i * tn);
      expect(bits(tile)).toEqual(bits(want));
    }
  });

  it("reuses and grows one memory across products of different sizes", () => {
    const kernel = createWasmSimdKernel();
    for (const [m, n, k] of [
      [3, 3, 3],
      [200, 190, 210],
      [2, 5, 7],
      [257, 3, 1025],
    ] as const) {
      const a = random(m * k, m);
      const b = random(k * n, n);
      expect(relativeError(gemmWith(kernel, m, n, k, a, b), gemmWith(referenceKernel, m, n, k, a, b))).toBeLessThanOrEqual(1e-12);
    }
  });

  it("rejects a chunk size that cannot hold one element of each matrix", () => {
    expect(() => createWasmSimdKernel({ chunkBytes: 8 })).toThrow(RangeError);
  });
});

describe.skipIf(!openblasInstalled)("native-blas", () => {
  it("is built and loads where OpenBLAS is installed, with one BLAS thread", () => {
    expect(existsSync(nativeBlasAddonPath)).toBe(true);
    const kernel = createNativeBlasKernel();
    // driver version 2: products are cut into panels, which changes the bits of deep ones
    expect(kernel.fingerprint).toMatch(/^native-blas\/2\/OpenBLAS \d+\.\d+\.\d+.*\/\S+$/);
    const addon = createRequire(import.meta.url)(nativeBlasAddonPath) as { numThreads(): number };
    expect(addon.numThreads()).toBe(1);
    expect(createKernel("native-blas").fingerprint).toBe(kernel.fingerprint);
  });

  it("stops before its next panel once the stop flag is set, and an unset flag changes nothing", () => {
    const kernel = createNativeBlasKernel();
    const [m, n, k] = [37, 53, 600];
    const a = random(m * k, 11);
    const b = random(k * n, 12);
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const c = new Float64Array(m * n);
    kernel.gemm(m, n, k, a, b, c, stop);
    expect(bits(c)).toEqual(bits(gemmWith(kernel, m, n, k, a, b)));
    Atomics.store(stop, 0, 1);
    expect(() => kernel.gemm(m, n, k, a, b, c, stop)).toThrow(KernelStoppedError);
    expect(() => kernel.gemmStrided?.(m, n, k, a, b, n, c, stop)).toThrow(KernelStoppedError);
  });

  it("sums products cut by rows and by depth exactly (integer inputs, so every order gives the same bits)", () => {
    const [m, n, k] = [1100, 4096, 512];
    expect(nativeBlasPanels(m, n, k)).toEqual({ rows: 550, depth: 256 }); // two row panels, two depth panels
    const ints = (len: number, seed: number) => random(len, seed).map((x) => Math.round(x * 16));
    const a = ints(m * k, 13);
    const b = ints(k * n, 14);
    const c = gemmWith(createNativeBlasKernel(), m, n, k, a, b);
    for (const i of [0, 549, 550, 1099]) {
      for (let j = 0; j < n; j += 7) {
        let want = 0;
        for (let p = 0; p < k; p++) want += (a[i * k + p] as number) * (b[p * n + j] as number);
        expect(c[i * n + j]).toBe(want);
      }
    }
  });
});

describe("nativeBlasPanels", () => {
  it("cuts by shape only: depth at most 256 in equal parts, rows so that a panel is at most 2^30 multiply-adds", () => {
    expect(nativeBlasPanels(512, 512, 256)).toEqual({ rows: 512, depth: 256 }); // one call, as before panels
    expect(nativeBlasPanels(1024, 1024, 1024)).toEqual({ rows: 1024, depth: 256 });
    expect(nativeBlasPanels(5, 4, 257)).toEqual({ rows: 5, depth: 129 });
    expect(nativeBlasPanels(2304, 4608, 4608)).toEqual({ rows: 768, depth: 256 });
    expect(nativeBlasPanels(3, 3, 0)).toEqual({ rows: 3, depth: 0 });
    fc.assert(
      fc.property(fc.nat(20_000), fc.nat(20_000), fc.nat(20_000), (m, n, k) => {
        const { rows, depth } = nativeBlasPanels(m, n, k);
        expect(depth).toBeLessThanOrEqual(256);
        expect(depth * Math.ceil(k / Math.max(depth, 1))).toBeGreaterThanOrEqual(k);
        expect(rows).toBeGreaterThanOrEqual(Math.min(m, 1));
        if (rows > 1) expect(rows * n * depth).toBeLessThanOrEqual(2 ** 30 + n * depth);
        expect(nativeBlasPanels(m, n, k)).toEqual({ rows, depth });
      }),
    );
  });
});

describe("kernel registry", () => {
  it("lists every available kernel, fastest first, with reference last", () => {
    const names = listKernels().map((k) => k.name);
    expect(names.at(-1)).toBe("reference");
    expect(names).toContain("wasm-simd");
    if (avx512Unavailable === undefined) expect(names[0]).toBe("native-avx512");
    else if (openblasInstalled) expect(names[0]).toBe("native-blas");
    expect(names).toEqual(kernelNames.filter((n) => names.includes(n)));
    expect(createKernel("wasm-simd")).toBe(createKernel("wasm-simd")); // one instance per thread
  });

  it("selects kernels: auto, an explicit order, and reports the unavailable ones", () => {
    try {
      const explicit = selectKernels(["reference", "wasm-simd"]);
      expect(explicit.kernels.map((k) => k.name)).toEqual(["reference", "wasm-simd"]);
      expect(listKernels().map((k) => k.name)).toEqual(["reference", "wasm-simd"]);
      expect(() => selectKernels(["nope"])).toThrow(RangeError);
      expect(() => selectKernels(["reference", "reference"])).toThrow(RangeError);
      expect(() => selectKernels([])).toThrow(RangeError);
      const auto = selectKernels("auto");
      expect(auto.kernels.length + auto.unavailable.length).toBe(kernelNames.length);
      for (const u of auto.unavailable) expect(u.reason).not.toBe("");
      if (openblasInstalled && avx512Unavailable === undefined) expect(auto.unavailable).toEqual([]);
    } finally {
      selectKernels("auto");
    }
  });

  it("reports an unavailable kernel with its reason", () => {
    const e = new KernelUnavailableError("native-blas", "no OpenBLAS");
    expect(e.message).toBe("native-blas unavailable: no OpenBLAS");
    expect(e.name).toBe("KernelUnavailableError");
  });
});

describe("kernels in the thread pool", () => {
  const pools: ComputePool[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  afterAll(() => removeCompiledThreadScript());

  it.each(kernelNames.filter(runsHere))("%s runs in a worker thread with the same bits as on the main thread", async (name) => {
    const pool = createThreadPool({ threads: 2, threadUrl: compileThreadScript() });
    pools.push(pool);
    const kernel = createKernel(name);
    const runs = [
      [67, 129, 31],
      [130, 70, 300],
    ].map(async ([m, n, k]) => {
      const [mm, nn, kk] = [m as number, n as number, k as number];
      const a = random(mm * kk, 3);
      const b = random(kk * nn, 4);
      const want = gemmWith(kernel, mm, nn, kk, a, b);
      const { c } = await pool.run({ kernel: name, m: mm, n: nn, k: kk, a, b });
      expect(bits(c)).toEqual(bits(want));
    });
    await Promise.all(runs);
  });
});

describe("kernels in the worker's pull loop", () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  afterAll(() => removeCompiledThreadScript());

  it.each(kernelNames.filter(runsHere))(
    "a job pinned to %s is computed in threads, tile by tile, with that kernel's bits",
    async (name) => {
      const h = await startInMemoryCoordinator();
      cleanup.push(() => h.close());
      const [m, k, n] = [23, 300, 19];
      const a = random(m * k, 21);
      const b = random(k * n, 22);
      const job = await h.submit(h.putMatrix(m, k, a), h.putMatrix(k, n, b), 8, 6, name);
      const pool = createThreadPool({ threads: 2, threadUrl: compileThreadScript(), inlineMaxMadds: 0 });
      cleanup.push(() => pool.close());
      const worker = new Worker({
        coordinatorUrl: "http://coordinator.test",
        transport: h.transport,
        pool,
        acquireWaitMs: 200,
      });
      cleanup.push(() => worker.close());
      await worker.start();
      for (let i = 0; h.doneCount(job.jobId) < job.shards; i++) {
        if (i > 2000) throw new Error("timed out waiting for the tiles");
        await new Promise((r) => setTimeout(r, 5));
      }
      // Tile by tile: each tile computed alone must equal that part of C.
      const kernel = createKernel(name);
      const got = await h.result(job.jobId);
      for (let r0 = 0; r0 < m; r0 += 8) {
        for (let c0 = 0; c0 < n; c0 += 6) {
          const [tm, tn] = [Math.min(8, m - r0), Math.min(6, n - c0)];
          const panel = new Float64Array(k * tn);
          for (let p = 0; p < k; p++) panel.set(b.subarray(p * n + c0, p * n + c0 + tn), p * tn);
          const tile = gemmWith(kernel, tm, tn, k, a.slice(r0 * k, (r0 + tm) * k), panel);
          for (let i = 0; i < tm; i++) {
            expect(bits(got.subarray((r0 + i) * n + c0, (r0 + i) * n + c0 + tn))).toEqual(
              bits(tile.subarray(i * tn, (i + 1) * tn)),
            );
          }
        }
      }
      expect(h.calls.of("failShard")).toEqual([]);
    },
  );
});
