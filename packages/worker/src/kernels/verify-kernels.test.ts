// Every kernel's honest results pass the coordinator's verification (Freivalds' test
// with a rigorous rounding bound, @dce/core freivalds.ts): odd shapes, any tiling,
// values over many binades. A false rejection would quarantine an honest worker.
import { execFileSync } from "node:child_process";
import { FREIVALDS_ROUNDS, probesFromWords } from "@dce/core";
import { checkTileRows, createProjection, projectRows } from "@dce/core/testing/freivalds-oracle";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { avx512Unavailable } from "../test-support/avx512.js";
import type { Kernel } from "./kernel.js";
import { createNativeAvx512Kernel } from "./native-avx512.js";
import { createNativeBlasKernel } from "./native-blas.js";
import { referenceKernel } from "./reference.js";
import { createWasmSimdKernel } from "./wasm-simd.js";

const openblasInstalled = (() => {
  try {
    return /libopenblas\.so/.test(execFileSync("ldconfig", ["-p"], { encoding: "utf8" }));
  } catch {
    return false;
  }
})();

const kernels: { label: string; create: () => Kernel; available: boolean }[] = [
  { label: "reference", create: () => referenceKernel, available: true },
  { label: "wasm-simd (auto FMA)", create: () => createWasmSimdKernel(), available: true },
  { label: "wasm-simd (no FMA)", create: () => createWasmSimdKernel({ fma: false }), available: true },
  { label: "native-blas", create: createNativeBlasKernel, available: openblasInstalled },
  { label: "native-avx512", create: createNativeAvx512Kernel, available: avx512Unavailable === undefined },
];

const value = fc.oneof(
  { weight: 5, arbitrary: fc.double({ min: -1, max: 1, noNaN: true }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.double({ min: -1, max: 1, noNaN: true }), fc.integer({ min: -80, max: 80 }))
      .map(([x, e]) => x * 2 ** e),
  },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, -1, 1e100, -1e-100) },
);

/** Checks every column tile of C (m × n) against A (m × k) and B (k × n); true when all pass. */
function verifies(
  m: number,
  k: number,
  n: number,
  a: Float64Array,
  b: Float64Array,
  c: Float64Array,
  tileCols: number,
  seed: number,
) {
  const rounds = FREIVALDS_ROUNDS;
  let x = seed >>> 0 || 1;
  const words = Uint32Array.from({ length: rounds * n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  });
  const probes = probesFromWords(words, rounds, n);
  const p = createProjection(k, rounds, { cols: n, tileCols });
  projectRows(p, probes, b, 0, k);
  for (let j0 = 0; j0 < n; j0 += tileCols) {
    const nt = Math.min(tileCols, n - j0);
    const tile = new Float64Array(m * nt);
    for (let i = 0; i < m; i++) for (let j = 0; j < nt; j++) tile[i * nt + j] = c[i * n + j0 + j] as number;
    const r = checkTileRows(p, probes, j0, tile, nt, a, 0, m);
    if (!r.ok) return r;
  }
  return { ok: true as const };
}

for (const candidate of kernels) {
  describe.runIf(candidate.available)(`${candidate.label}: results pass verification`, () => {
    it("never rejects an honest result (odd shapes, any tiling, wide magnitudes)", () => {
      const kernel = candidate.create();
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 19 }),
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 21 }),
          fc.integer({ min: 1, max: 21 }),
          fc.integer(),
          fc.infiniteStream(value),
          (m, k, n, tileCols, seed, values) => {
            const it = values[Symbol.iterator]();
            const next = () => it.next().value as number;
            const a = Float64Array.from({ length: m * k }, next);
            const b = Float64Array.from({ length: k * n }, next);
            const c = new Float64Array(m * n);
            kernel.gemm(m, n, k, a, b, c);
            expect(verifies(m, k, n, a, b, c, Math.min(tileCols, n), seed)).toEqual({ ok: true });
          },
        ),
        { numRuns: 150 },
      );
    });

    it("never rejects a big honest tile with heavy cancellation", () => {
      const kernel = candidate.create();
      const [m, k, n] = [33, 1031, 40];
      const a = Float64Array.from(
        { length: m * k },
        (_, i) => (i % 2 ? 1 : -1) * (1 + (i % 97) * 2 ** -20) * 2 ** ((i % 11) * 3),
      );
      const b = Float64Array.from({ length: k * n }, (_, i) => (i % 3 ? 0.5 : -0.75) + (i % 13) * 2 ** -30);
      const c = new Float64Array(m * n);
      kernel.gemm(m, n, k, a, b, c);
      for (let seed = 1; seed <= 5; seed++) expect(verifies(m, k, n, a, b, c, 16, seed)).toEqual({ ok: true });
    });
  });
}
