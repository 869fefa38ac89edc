import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createKernel, listKernels } from "./kernel.js";
import { referenceKernel } from "./reference.js";

/** The specification: each element summed from 0 in ascending k. */
function naive(m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (a[i * k + p] as number) * (b[p * n + j] as number);
      c[i * n + j] = s;
    }
  }
  return c;
}

function gemm(m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  // Poison the output: the kernel must overwrite, never accumulate into, c.
  const c = new Float64Array(m * n).fill(Number.NaN);
  referenceKernel.gemm(m, n, k, a, b, c);
  return c;
}

const bits = (x: Float64Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

/** Mixed magnitudes and signs, so that a different summation order gives different bits. */
const element = fc.oneof(
  fc.double({ min: -1e3, max: 1e3, noNaN: true }),
  fc.double({ min: -1e17, max: 1e17, noNaN: true }),
  fc.integer({ min: -3, max: 3 }).map((x) => x / 3),
);
const matrix = (len: number) => fc.array(element, { minLength: len, maxLength: len }).map((xs) => Float64Array.from(xs));

const shapes = fc.record({
  m: fc.integer({ min: 1, max: 9 }),
  n: fc.integer({ min: 1, max: 9 }),
  k: fc.integer({ min: 1, max: 17 }),
});

describe("referenceKernel", () => {
  it("is registered under its name with a fingerprint", () => {
    expect(createKernel("reference")).toBe(referenceKernel);
    expect(referenceKernel.fingerprint).toBe("reference/1");
    expect(listKernels().map((k) => k.name)).toContain("reference");
    expect(() => createKernel("nope")).toThrow(RangeError);
  });

  it.each([
    [1, 1, 1],
    [1, 8, 3],
    [8, 1, 3],
    [3, 4, 1],
    [7, 13, 5],
    [13, 7, 11],
    [2, 3, 0],
  ])("m=%i n=%i k=%i equals a naive triple loop bit for bit", (m, n, k) => {
    const a = Float64Array.from({ length: m * k }, (_, i) => Math.sin(i + 1) * 10 ** ((i % 7) - 3));
    const b = Float64Array.from({ length: k * n }, (_, i) => Math.cos(i * 3 + 1) * 10 ** ((i % 5) - 2));
    expect(bits(gemm(m, n, k, a, b))).toEqual(bits(naive(m, n, k, a, b)));
  });

  it("computes a known product", () => {
    // [1 2 3; 4 5 6] × [7 8; 9 10; 11 12] = [58 64; 139 154]
    const c = gemm(2, 2, 3, Float64Array.of(1, 2, 3, 4, 5, 6), Float64Array.of(7, 8, 9, 10, 11, 12));
    expect([...c]).toEqual([58, 64, 139, 154]);
  });

  it("sums in ascending k (the order is observable)", () => {
    // Ascending: (0 + 1) + 1e16 rounds to 1e16, then - 1e16 = 0. Descending would give 1.
    const c = gemm(1, 1, 3, Float64Array.of(1, 1e16, -1e16), Float64Array.of(1, 1, 1));
    expect(c[0]).toBe(0);
  });

  it("equals the naive triple loop for random shapes and values", () => {
    fc.assert(
      fc.property(
        shapes.chain((s) => fc.tuple(fc.constant(s), matrix(s.m * s.k), matrix(s.k * s.n))),
        ([{ m, n, k }, a, b]) => {
          expect(bits(gemm(m, n, k, a, b))).toEqual(bits(naive(m, n, k, a, b)));
        },
      ),
    );
  });

  it("tiling invariance: a sub-tile has the same bits as that part of the full product", () => {
    const arb = shapes.chain((s) =>
      fc.tuple(
        fc.constant(s),
        matrix(s.m * s.k),
        matrix(s.k * s.n),
        fc.tuple(fc.nat(s.m - 1), fc.nat(s.m - 1)),
        fc.tuple(fc.nat(s.n - 1), fc.nat(s.n - 1)),
      ),
    );
    fc.assert(
      fc.property(arb, ([{ m, n, k }, a, b, [r0, r1], [c0, c1]]) => {
        const rowStart = Math.min(r0, r1);
        const rowEnd = Math.max(r0, r1) + 1;
        const colStart = Math.min(c0, c1);
        const colEnd = Math.max(c0, c1) + 1;
        const full = gemm(m, n, k, a, b);
        const tm = rowEnd - rowStart;
        const tn = colEnd - colStart;
        const aRows = a.slice(rowStart * k, rowEnd * k);
        const bPanel = new Float64Array(k * tn);
        for (let p = 0; p < k; p++) bPanel.set(b.subarray(p * n + colStart, p * n + colEnd), p * tn);
        const tile = gemm(tm, tn, k, aRows, bPanel);
        const expected = new Float64Array(tm * tn);
        for (let i = 0; i < tm; i++) {
          expected.set(full.subarray((rowStart + i) * n + colStart, (rowStart + i) * n + colEnd), i * tn);
        }
        expect(bits(tile)).toEqual(bits(expected));
      }),
    );
  });

  it("propagates NaN and Infinity", () => {
    const inf = Number.POSITIVE_INFINITY;
    // b = [inf; 1]. row 0: 1*inf + 0*1 = inf; row 1: NaN poisons; row 2: 0*inf = NaN; row 3: -1*inf + 1 = -inf
    const a = Float64Array.of(1, 0, Number.NaN, 1, 0, 0, -1, 1);
    const b = Float64Array.of(inf, 1);
    const c = gemm(4, 1, 2, a, b);
    expect(c[0]).toBe(inf);
    expect(Number.isNaN(c[1])).toBe(true);
    expect(Number.isNaN(c[2])).toBe(true);
    expect(c[3]).toBe(-inf);
    const c2 = gemm(1, 1, 2, Float64Array.of(1, 1), Float64Array.of(inf, -inf));
    expect(Number.isNaN(c2[0])).toBe(true);
  });

  it("keeps the sign of zero like the specification", () => {
    // 0 + (-0 * 1) = +0 in IEEE round-to-nearest; the naive loop agrees.
    const c = gemm(1, 1, 1, Float64Array.of(-0), Float64Array.of(1));
    expect(Object.is(c[0], 0)).toBe(true);
  });

  it("rejects arrays shorter than their shape", () => {
    expect(() => referenceKernel.gemm(2, 2, 2, new Float64Array(3), new Float64Array(4), new Float64Array(4))).toThrow(
      RangeError,
    );
  });
});
