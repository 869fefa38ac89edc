import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  FREIVALDS_DETECTION_FACTOR,
  FREIVALDS_ROUNDS,
  judgeTileRows,
  probePanel,
  probesFromWords,
  type TileCheck,
} from "./freivalds.js";
import { checkTileRows, createProjection, projectRows, scalarTileSums } from "./testing/freivalds-oracle.js";
import { xorshift32Words } from "./testing/random-matrix.js";

const U = 2 ** -53;

interface Problem {
  m: number;
  k: number;
  n: number;
  a: Float64Array;
  b: Float64Array;
}

/** Summation orders an honest kernel may use for each element of C. */
type Order = "ascending" | "descending" | "pairwise" | "blocked";

function dot(a: Float64Array, b: Float64Array, i: number, j: number, k: number, n: number, order: Order): number {
  const term = (l: number) => (a[i * k + l] as number) * (b[l * n + j] as number);
  if (order === "ascending") {
    let s = 0;
    for (let l = 0; l < k; l++) s += term(l);
    return s;
  }
  if (order === "descending") {
    let s = 0;
    for (let l = k - 1; l >= 0; l--) s += term(l);
    return s;
  }
  if (order === "pairwise") {
    const rec = (lo: number, hi: number): number =>
      hi - lo === 1 ? term(lo) : rec(lo, (lo + hi) >> 1) + rec((lo + hi) >> 1, hi);
    return k === 0 ? 0 : rec(0, k);
  }
  // Blocked by 4 with partial sums added at the end, as register-tiled kernels do.
  const parts = [0, 0, 0, 0];
  for (let l = 0; l < k; l++) parts[l % 4] = (parts[l % 4] as number) + term(l);
  return (parts[0] as number) + (parts[1] as number) + ((parts[2] as number) + (parts[3] as number));
}

function multiply(p: Problem, order: Order): Float64Array {
  const c = new Float64Array(p.m * p.n);
  for (let i = 0; i < p.m; i++) for (let j = 0; j < p.n; j++) c[i * p.n + j] = dot(p.a, p.b, i, j, p.k, p.n, order);
  return c;
}

/** Checks every tile of C (cut into column blocks of `tileCols`) with the rows of A in chunks of `rowChunk`. */
function checkAll(p: Problem, c: Float64Array, tileCols: number, seed: number, rowChunk = 3): TileCheck[] {
  const rounds = FREIVALDS_ROUNDS;
  const probes = probesFromWords(xorshift32Words(rounds * p.n, seed), rounds, p.n);
  const proj = createProjection(p.k, rounds, { cols: p.n, tileCols });
  // B in two chunks of rows, as the shell streams it.
  const half = Math.floor(p.k / 2);
  projectRows(proj, probes, p.b.subarray(0, half * p.n), 0, half);
  projectRows(proj, probes, p.b.subarray(half * p.n), half, p.k - half);
  const out: TileCheck[] = [];
  for (let j0 = 0; j0 < p.n; j0 += tileCols) {
    const nt = Math.min(tileCols, p.n - j0);
    const tile = new Float64Array(p.m * nt);
    for (let i = 0; i < p.m; i++) for (let j = 0; j < nt; j++) tile[i * nt + j] = c[i * p.n + j0 + j] as number;
    let result: TileCheck = { ok: true, rowsChecked: 0, rowsUnverifiable: 0 };
    let checked = 0;
    let unverifiable = 0;
    for (let r0 = 0; r0 < p.m && result.ok; r0 += rowChunk) {
      const rows = Math.min(rowChunk, p.m - r0);
      // The production decision, on sums from the scalar loops (the coordinator's product is
      // held to the same verdicts in packages/coordinator/src/verify/panel-check.test.ts).
      const sums = scalarTileSums(proj, probes, j0, tile, nt, p.a.subarray(r0 * p.k, (r0 + rows) * p.k), r0, rows);
      result = judgeTileRows(sums, r0, rows);
      if (result.ok) {
        checked += result.rowsChecked;
        unverifiable += result.rowsUnverifiable;
      }
    }
    out.push(result.ok ? { ok: true, rowsChecked: checked, rowsUnverifiable: unverifiable } : result);
  }
  return out;
}

/** The documented threshold T_i = 3u(k+n+2)·S_i + η_i of row i in the tile of columns [j0, j0 + nt). */
function threshold(p: Problem, i: number, j0: number, nt: number): number {
  let s = 0;
  let aAbs = 0;
  for (let l = 0; l < p.k; l++) aAbs += Math.abs(p.a[i * p.k + l] as number);
  for (let j = j0; j < j0 + nt; j++)
    for (let l = 0; l < p.k; l++) s += Math.abs(p.a[i * p.k + l] as number) * Math.abs(p.b[l * p.n + j] as number);
  const eta = 2 ** -1070 * (nt * (p.k + 1 + aAbs) + p.k + 1);
  return 3 * U * (p.k + nt + 2) * s + eta;
}

/** Values with magnitudes spread over many binades, zeros and signs, built from one integer each. */
const value = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: -1, max: 1, noNaN: true }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.double({ min: -1, max: 1, noNaN: true }), fc.integer({ min: -60, max: 60 }))
      .map(([x, e]) => x * 2 ** e),
  },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1, -1, 2 ** -1070, 3e150, -3e150) },
);

const problem = fc
  .record({ m: fc.integer({ min: 1, max: 9 }), k: fc.integer({ min: 1, max: 40 }), n: fc.integer({ min: 1, max: 17 }) })
  .chain(({ m, k, n }) =>
    fc.record({
      m: fc.constant(m),
      k: fc.constant(k),
      n: fc.constant(n),
      a: fc.array(value, { minLength: m * k, maxLength: m * k }).map((x) => Float64Array.from(x)),
      b: fc.array(value, { minLength: k * n, maxLength: k * n }).map((x) => Float64Array.from(x)),
    }),
  );

describe("Freivalds check", () => {
  it("the rounds and the detection factor give a false-accept probability below 2^-40", () => {
    // A round misses an error δ > τ·T_i with probability ≤ 2T_i/δ + 2^-32 < 2/τ + 2^-32.
    const perRound = 2 / FREIVALDS_DETECTION_FACTOR + 2 ** -32;
    expect(FREIVALDS_ROUNDS * Math.log2(perRound)).toBeLessThan(-40);
  });

  it("probes are exact grid values in (-1, 1), symmetric around 0", () => {
    const r = probesFromWords(Uint32Array.of(0, 0xffffffff, 0x7fffffff, 0x80000000), 1, 4);
    expect([...r]).toEqual([2 ** -32, -(2 ** -32), 1 - 2 ** -32, -1 + 2 ** -32]);
    expect(() => probesFromWords(new Uint32Array(3), 2, 2)).toThrow(RangeError);
    const panel = probePanel(
      probesFromWords(
        Uint32Array.from({ length: 14 }, (_, i) => i),
        7,
        2,
      ),
      2,
    );
    expect(panel.length).toBe(16);
    expect([panel[7], panel[15]]).toEqual([1, 1]);
    expect(panel[9]).toBe(8 * 2 ** -31 + 2 ** -32); // column 1, round 1 = word 8
    expect(() => probePanel(new Float64Array(13), 2)).toThrow(RangeError);
  });

  test.prop(
    [
      problem,
      fc.constantFrom<Order>("ascending", "descending", "pairwise", "blocked"),
      fc.integer({ min: 1, max: 17 }),
      fc.integer(),
    ],
    {
      numRuns: 300,
    },
  )("never rejects an honest product, whatever the summation order, tiling or probes", (p, order, tileCols, seed) => {
    const c = multiply(p, order);
    for (const r of checkAll(p, c, tileCols, seed)) expect(r).toMatchObject({ ok: true });
  });

  it("never rejects honest results built to have the worst rounding (heavy cancellation)", () => {
    // Rows like [1, 1e16, -1e16, ...]: large terms cancel and the small ones are lost to rounding.
    const m = 4;
    const k = 64;
    const n = 8;
    const a = new Float64Array(m * k);
    const b = new Float64Array(k * n);
    for (let i = 0; i < a.length; i++) a[i] = i % 3 === 0 ? 1 + i * 2 ** -40 : (i % 2 === 0 ? 1 : -1) * 2 ** 53;
    for (let i = 0; i < b.length; i++) b[i] = i % 5 === 0 ? 0.1 * i : 1 - (i % 7) * 2 ** -30;
    const p = { m, k, n, a, b };
    for (const order of ["ascending", "descending", "pairwise", "blocked"] as const) {
      for (let seed = 1; seed <= 20; seed++) for (const r of checkAll(p, multiply(p, order), 3, seed)) expect(r.ok).toBe(true);
    }
  });

  test.prop(
    [
      problem,
      fc.integer({ min: 1, max: 17 }),
      fc.integer(),
      fc.nat(),
      fc.double({ min: 1, max: 1e6, noNaN: true }),
      fc.boolean(),
    ],
    {
      numRuns: 300,
    },
  )("rejects a result with one entry off by more than 128·T_i", (p, tileCols, seed, pick, extra, negative) => {
    const c = multiply(p, "ascending");
    const idx = pick % c.length;
    const i = Math.floor(idx / p.n);
    const j = idx % p.n;
    const j0 = Math.floor(j / tileCols) * tileCols;
    const t = threshold(p, i, j0, Math.min(tileCols, p.n - j0));
    // Rows with a huge scale may be unverifiable; skip only those (the check says so itself).
    fc.pre(t > 0 && t < 1e280);
    // The honest value is within the rounding bound of the exact one, so off by δ + bound from exact.
    const delta = FREIVALDS_DETECTION_FACTOR * t * 1.01 * extra;
    c[idx] = (c[idx] as number) + (negative ? -delta : delta);
    const results = checkAll(p, c, tileCols, seed);
    expect(results[Math.floor(j / tileCols)]).toMatchObject({ ok: false });
  });

  test.prop([problem, fc.integer({ min: 1, max: 17 }), fc.integer(), fc.nat(), fc.integer({ min: 44, max: 62 })], {
    numRuns: 300,
  })("rejects bit flips in the high mantissa or exponent bits of a value that is not tiny", (p, tileCols, seed, pick, bit) => {
    const c = multiply(p, "pairwise");
    const idx = pick % c.length;
    const i = Math.floor(idx / p.n);
    const j = idx % p.n;
    const j0 = Math.floor(j / tileCols) * tileCols;
    const t = threshold(p, i, j0, Math.min(tileCols, p.n - j0));
    const before = c[idx] as number;
    const view = new DataView(c.buffer);
    view.setBigUint64(idx * 8, view.getBigUint64(idx * 8, true) ^ (1n << BigInt(bit)), true);
    const after = c[idx] as number;
    // The flip must move the value by more than the detection threshold (else it is below rounding).
    fc.pre(t > 0 && t < 1e280 && !(Math.abs(after - before) <= FREIVALDS_DETECTION_FACTOR * t * 1.01));
    expect(checkAll(p, c, tileCols, seed)[Math.floor(j / tileCols)]).toMatchObject({ ok: false });
  });

  it("rejects NaN, Inf and huge values with certainty, and reports the row", () => {
    const p: Problem = {
      m: 3,
      k: 4,
      n: 2,
      a: Float64Array.from({ length: 12 }, (_, i) => i - 5.5),
      b: Float64Array.from({ length: 8 }, (_, i) => 0.25 * i - 1),
    };
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e300]) {
      const c = multiply(p, "ascending");
      c[3] = bad;
      const [r] = checkAll(p, c, 2, 7);
      expect(r).toMatchObject({ ok: false, row: 1 });
    }
  });

  it("a perturbation within the rounding bound passes: it is indistinguishable from another summation order", () => {
    const p: Problem = {
      m: 2,
      k: 50,
      n: 3,
      a: Float64Array.from({ length: 100 }, (_, i) => Math.sin(i)),
      b: Float64Array.from({ length: 150 }, (_, i) => Math.cos(i)),
    };
    const c = multiply(p, "ascending");
    c[1] = (c[1] as number) + 4 * U * Math.abs(c[1] as number); // a few ulps
    expect(checkAll(p, c, 3, 11)).toEqual([{ ok: true, rowsChecked: 2, rowsUnverifiable: 0 }]);
  });

  it("rows whose inputs hold NaN or Inf are reported unverifiable, not rejected", () => {
    const a = Float64Array.from([1, 2, Number.NaN, 4, 5, 6]);
    const b = Float64Array.from([1, 0, 0, 1, 1, 1]);
    const p: Problem = { m: 3, k: 2, n: 3, a, b };
    const c = multiply(p, "ascending");
    expect(checkAll(p, c, 3, 5)).toEqual([{ ok: true, rowsChecked: 2, rowsUnverifiable: 1 }]);
    b[4] = Number.POSITIVE_INFINITY;
    expect(checkAll(p, multiply(p, "ascending"), 3, 5)).toEqual([{ ok: true, rowsChecked: 0, rowsUnverifiable: 3 }]);
  });

  it("one round misses a small error about as often as the bound allows, and never beyond it", () => {
    // Error δ = 8·T_i: the bound says a single round misses with probability ≤ 2/8 + 2^-32.
    const p: Problem = {
      m: 1,
      k: 8,
      n: 8,
      a: Float64Array.from({ length: 8 }, (_, i) => 1 + i / 8),
      b: Float64Array.from({ length: 64 }, (_, i) => 1 - i / 64),
    };
    const c = multiply(p, "ascending");
    const t = threshold(p, 0, 0, 8);
    c[2] = (c[2] as number) + 8 * t;
    let missed = 0;
    const trials = 2000;
    for (let seed = 1; seed <= trials; seed++) {
      const probes = probesFromWords(xorshift32Words(8, seed * 7919), 1, 8);
      const proj = createProjection(8, 1, { cols: 8, tileCols: 8 });
      projectRows(proj, probes, p.b, 0, 8);
      if (checkTileRows(proj, probes, 0, c, 8, p.a, 0, 1).ok) missed++;
    }
    expect(missed / trials).toBeLessThan(0.25 + 0.05);
  });
});
