// The production check (the WebAssembly panel products of panel-kernel.ts, the band and
// tile work of work.ts, the core's judgeTileRows) gives the verdicts of the scalar oracle
// (@dce/core/testing/freivalds-oracle: plain loops in index order, its own copy of the
// rules) on random problems, and rejects a corruption above the detection threshold.
import { FREIVALDS_ROUNDS, PANEL_WIDTH, probePanel, probesFromWords, type TileCheck } from "@dce/core";
import { xorshift32Words } from "@dce/core/testing";
import { checkTileRows, createProjection, projectRows } from "@dce/core/testing/freivalds-oracle";
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { createPanelKernel, projectionPanels } from "./panel-kernel.js";
import { runCheck } from "./work.js";

interface Problem {
  m: number;
  k: number;
  n: number;
  tileCols: number;
  a: Float64Array;
  b: Float64Array;
  seed: number;
}

const kernel = createPanelKernel();

/** C = A·B, each element summed in ascending k (an honest kernel). */
function multiply(p: Problem): Float64Array {
  const c = new Float64Array(p.m * p.n);
  for (let i = 0; i < p.m; i++)
    for (let j = 0; j < p.n; j++) {
      let s = 0;
      for (let l = 0; l < p.k; l++) s += (p.a[i * p.k + l] as number) * (p.b[l * p.n + j] as number);
      c[i * p.n + j] = s;
    }
  return c;
}

function tileOf(p: Problem, c: Float64Array, j0: number): Float64Array {
  const nt = Math.min(p.tileCols, p.n - j0);
  const t = new Float64Array(p.m * nt);
  for (let i = 0; i < p.m; i++) t.set(c.subarray(i * p.n + j0, i * p.n + j0 + nt), i * nt);
  return t;
}

/** The verdict of every tile (one row band, all column blocks) by the production path and by the oracle. */
function verdicts(p: Problem, c: Float64Array): { fast: TileCheck[]; oracle: TileCheck[] } {
  const rounds = FREIVALDS_ROUNDS;
  const probes = probesFromWords(xorshift32Words(rounds * p.n, p.seed), rounds, p.n);
  const blocks = Math.ceil(p.n / p.tileCols);
  // Production: projection of B, the band's A pass for all blocks, then each tile.
  const panel = probePanel(probes, p.n);
  const w = new Float64Array(projectionPanels(blocks) * p.k * PANEL_WIDTH);
  kernel.project((into, first) => into.set(p.b.subarray(first * p.n, first * p.n + into.length)), p.k, p.n, p.tileCols, panel, w);
  const y = new Float64Array(p.m * projectionPanels(blocks) * PANEL_WIDTH);
  const aAbs = new Float64Array(p.m);
  kernel.band((into, first) => into.set(p.a.subarray(first * p.k, first * p.k + into.length)), 0, p.m, p.k, blocks, w, y, aAbs);
  // Oracle: the scalar projection and check.
  const proj = createProjection(p.k, rounds, { cols: p.n, tileCols: p.tileCols });
  projectRows(proj, probes, p.b, 0, p.k);
  const fast: TileCheck[] = [];
  const oracle: TileCheck[] = [];
  for (let j0 = 0; j0 < p.n; j0 += p.tileCols) {
    const t = tileOf(p, c, j0);
    const nt = t.length / p.m;
    fast.push(
      runCheck({
        kind: "check",
        k: p.k,
        tileCols: p.tileCols,
        blocks,
        rowStart: 0,
        rowEnd: p.m,
        colStart: j0,
        colEnd: j0 + nt,
        tile: new Uint8Array(t.buffer),
        probes: panel,
        y,
        aAbs,
      }),
    );
    oracle.push(checkTileRows(proj, probes, j0, t, nt, p.a, 0, p.m));
  }
  return { fast, oracle };
}

/** Finite values over many binades, subnormals, zeros of both signs and huge ones. */
const finite = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: -1, max: 1, noNaN: true }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.double({ min: -1, max: 1, noNaN: true }), fc.integer({ min: -60, max: 60 }))
      .map(([x, e]) => x * 2 ** e),
  },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1, -1, 2 ** -1070, 5e-324, -3e-320, 3e150, -3e150, 1e300) },
);
const anyValue = fc.oneof(
  { weight: 12, arbitrary: finite },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY) },
);

/** Shapes from 1×1×1 up, primes included (7, 11, 13, 17, 31, 37 …), any tiling of the columns. */
function problem(value: fc.Arbitrary<number>): fc.Arbitrary<Problem> {
  return fc
    .record({
      m: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 13 })),
      k: fc.oneof(fc.constantFrom(1, 2, 31, 37), fc.integer({ min: 1, max: 41 })),
      n: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 17 })),
      seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    })
    .chain(({ m, k, n, seed }) =>
      fc.record({
        m: fc.constant(m),
        k: fc.constant(k),
        n: fc.constant(n),
        seed: fc.constant(seed),
        tileCols: fc.integer({ min: 1, max: n }),
        a: fc.array(value, { minLength: m * k, maxLength: m * k }).map((x) => Float64Array.from(x)),
        b: fc.array(value, { minLength: k * n, maxLength: k * n }).map((x) => Float64Array.from(x)),
      }),
    );
}

describe("the production check against the scalar oracle", () => {
  test.prop([problem(anyValue)], { numRuns: 300 })("gives the same verdicts on honest products", (p) => {
    const { fast, oracle } = verdicts(p, multiply(p));
    expect(fast).toEqual(oracle);
    for (const v of fast) expect(v.ok).toBe(true);
  });

  test.prop(
    [problem(anyValue), fc.integer({ min: 0, max: 2 ** 30 }), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, 1e200, 7)],
    {
      numRuns: 300,
    },
  )("gives the same verdicts on results with a wrong entry (NaN, Inf, huge or plain wrong)", (p, at, bad) => {
    const c = multiply(p);
    c[at % c.length] = bad;
    const { fast, oracle } = verdicts(p, c);
    expect(fast).toEqual(oracle);
  });

  test.prop([problem(finite), fc.integer({ min: 0, max: 2 ** 30 }), fc.boolean()], { numRuns: 300 })(
    "rejects an entry off by more than the detection threshold",
    (p, at, up) => {
      const c = multiply(p);
      const idx = at % c.length;
      const i = Math.floor(idx / p.n);
      // S_i and η_i over the whole row of C bound those of the entry's tile (T_i = 3u(k+n+2)S_i + η_i),
      // so 2^-30·S_i + 256·η_i is far above 128·T_i.
      let s = 0;
      let aAbs = 0;
      for (let l = 0; l < p.k; l++) aAbs += Math.abs(p.a[i * p.k + l] as number);
      for (let j = 0; j < p.n; j++)
        for (let l = 0; l < p.k; l++) s += Math.abs(p.a[i * p.k + l] as number) * Math.abs(p.b[l * p.n + j] as number);
      const eta = 2 ** -1070 * (p.n * (p.k + 1 + aAbs) + p.k + 1);
      if (!(s <= 2 ** 900)) return; // such rows are not checkable (their bound is not finite)
      c[idx] = (c[idx] as number) + (up ? 1 : -1) * (s * 2 ** -30 + 256 * eta);
      const { fast, oracle } = verdicts(p, c);
      const jb = Math.floor((idx % p.n) / p.tileCols);
      expect(fast[jb]).toMatchObject({ ok: false, row: i });
      expect(fast).toEqual(oracle);
    },
  );
});
