/**
 * The scalar Freivalds check: the test oracle of the production check (the coordinator's
 * panel product plus {@link judgeTileRows} of `../freivalds.ts`). It sums each dot product
 * in plain loops in index order and decides with its own copy of the rules, so a property
 * test can hold the production verdicts to it. Not used outside tests.
 *
 * @packageDocumentation
 */
import type { TileCheck, TileSums } from "../freivalds.js";

/** Unit roundoff of float64. */
const U = 2 ** -53;
/** Rows whose magnitude sum is above this are not checked (no overflow anywhere in the check). */
const MAX_ROW_SCALE = 2 ** 960;
/** Underflow allowance per elementary product (2^-1075 each, with a generous margin). */
const UNDERFLOW_UNIT = 2 ** -1070;

/** How C's columns are cut into tiles; one projection per column block. */
export interface ColumnTiling {
  /** Columns of B (= of C). */
  readonly cols: number;
  /** Columns per tile (the last block may be narrower). */
  readonly tileCols: number;
}

/**
 * The per-job precomputation: for every column block J of the tiling and every round t,
 * w_J,t = B[:,J]·r_t[J] (length k), plus s_J = |B[:,J]|·1 for the tolerance.
 * Layout: `w[(J·k + l)·rounds + t]` (the rounds of one l side by side, read together),
 * `s[J·k + l]`.
 */
export interface Projection {
  readonly k: number;
  readonly rounds: number;
  readonly tiling: ColumnTiling;
  readonly w: Float64Array;
  readonly s: Float64Array;
}

/** An empty projection for a k × cols B, to be filled by {@link projectRows}. */
export function createProjection(k: number, rounds: number, tiling: ColumnTiling): Projection {
  const blocks = Math.ceil(tiling.cols / tiling.tileCols);
  return { k, rounds, tiling, w: new Float64Array(blocks * rounds * k), s: new Float64Array(blocks * k) };
}

/**
 * The dot products of one vector `x[xOff..xOff+len)` with `rounds` interleaved vectors
 * `v[(vOff + i)·rounds + t]`, plus Σ|x_i|·g_i when `g` is given (else Σ|x_i|), and Σ|x_i|,
 * each summed in index order, so the result does not depend on how many rounds are
 * computed at once. Writes `out[0]` = the magnitude sum, `out[1 + t]` = round t and
 * `out[rounds + 1]` = Σ|x_i|. One pass over x.
 */
function interleavedDots(
  x: Float64Array,
  xOff: number,
  len: number,
  v: Float64Array,
  vOff: number,
  rounds: number,
  g: Float64Array | undefined,
  gOff: number,
  out: Float64Array,
): void {
  if (rounds === 7) {
    // The usual case (7 rounds): every accumulator in a register.
    let m = 0;
    let abs = 0;
    let y0 = 0;
    let y1 = 0;
    let y2 = 0;
    let y3 = 0;
    let y4 = 0;
    let y5 = 0;
    let y6 = 0;
    let vi = vOff * 7;
    // Two copies of the loop so the hot one has no branch; |a|·1 would round the same.
    if (g === undefined) {
      for (let i = 0; i < len; i++, vi += 7) {
        const a = x[xOff + i] as number;
        m += Math.abs(a);
        y0 += a * (v[vi] as number);
        y1 += a * (v[vi + 1] as number);
        y2 += a * (v[vi + 2] as number);
        y3 += a * (v[vi + 3] as number);
        y4 += a * (v[vi + 4] as number);
        y5 += a * (v[vi + 5] as number);
        y6 += a * (v[vi + 6] as number);
      }
    } else {
      for (let i = 0; i < len; i++, vi += 7) {
        const a = x[xOff + i] as number;
        abs += Math.abs(a);
        m += Math.abs(a) * (g[gOff + i] as number);
        y0 += a * (v[vi] as number);
        y1 += a * (v[vi + 1] as number);
        y2 += a * (v[vi + 2] as number);
        y3 += a * (v[vi + 3] as number);
        y4 += a * (v[vi + 4] as number);
        y5 += a * (v[vi + 5] as number);
        y6 += a * (v[vi + 6] as number);
      }
    }
    out[0] = m;
    out[1] = y0;
    out[2] = y1;
    out[3] = y2;
    out[4] = y3;
    out[5] = y4;
    out[6] = y5;
    out[7] = y6;
    out[8] = g === undefined ? m : abs;
    return;
  }
  out.fill(0, 0, rounds + 2);
  for (let i = 0; i < len; i++) {
    const a = x[xOff + i] as number;
    out[0] = (out[0] as number) + (g === undefined ? Math.abs(a) : Math.abs(a) * (g[gOff + i] as number));
    out[rounds + 1] = (out[rounds + 1] as number) + Math.abs(a);
    const vi = (vOff + i) * rounds;
    for (let t = 0; t < rounds; t++) out[1 + t] = (out[1 + t] as number) + a * (v[vi + t] as number);
  }
}

/**
 * Adds rows `[firstRow, firstRow + rowCount)` of B (row-major, `rowCount × cols` values
 * in `rows`) to a projection, so B can be streamed in chunks. Each row must be added once.
 * @param probes from `probesFromWords`, `rounds × cols`.
 */
export function projectRows(p: Projection, probes: Float64Array, rows: Float64Array, firstRow: number, rowCount: number): void {
  const { k, rounds } = p;
  const { cols, tileCols } = p.tiling;
  const blocks = Math.ceil(cols / tileCols);
  const out = new Float64Array(rounds + 2);
  for (let i = 0; i < rowCount; i++) {
    const l = firstRow + i;
    const base = i * cols;
    for (let jb = 0; jb < blocks; jb++) {
      const j0 = jb * tileCols;
      const j1 = Math.min(j0 + tileCols, cols);
      interleavedDots(rows, base + j0, j1 - j0, probes, j0, rounds, undefined, 0, out);
      p.s[jb * k + l] = out[0] as number;
      const wi = (jb * k + l) * rounds;
      for (let t = 0; t < rounds; t++) p.w[wi + t] = out[1 + t] as number;
    }
  }
}

/**
 * Checks rows `[firstRow, firstRow + rowCount)` of a tile (row indices relative to the
 * tile). `aRows` holds the matching rows of A (`rowCount × k`, row-major), `tile` the
 * whole tile (`m × n`, row-major), `colStart` the tile's first column in C. Deterministic
 * for given inputs and probes; never throws for any values in `tile`.
 */
export function checkTileRows(
  p: Projection,
  probes: Float64Array,
  colStart: number,
  tile: Float64Array,
  n: number,
  aRows: Float64Array,
  firstRow: number,
  rowCount: number,
): TileCheck {
  const { k, rounds, w, s } = p;
  const { tileCols } = p.tiling;
  const jb = Math.floor(colStart / tileCols);
  const growth = (k + n + 2) * U;
  // One pass over a row of A gives the scale and every A_i·w_t; one pass over the row of
  // the tile gives Σ|Ĉ_ij| and every Ĉ_i·r_t.
  const ay = new Float64Array(rounds + 2);
  const cx = new Float64Array(rounds + 2);
  let unverifiable = 0;
  for (let i = 0; i < rowCount; i++) {
    const aBase = i * k;
    interleavedDots(aRows, aBase, k, w, jb * k, rounds, s, jb * k, ay);
    const scale = ay[0] as number;
    const aAbs = ay[rounds + 1] as number;
    const eta = UNDERFLOW_UNIT * (n * (k + 1 + aAbs) + k + 1);
    // Not finite, NaN or near overflow: no rounding bound applies, the row is not checked.
    if (!(scale <= MAX_ROW_SCALE) || !Number.isFinite(eta)) {
      unverifiable++;
      continue;
    }
    const cBase = (firstRow + i) * n;
    interleavedDots(tile, cBase, n, probes, colStart, rounds, undefined, 0, cx);
    const cAbs = cx[0] as number;
    // Written so that NaN fails too.
    if (!(cAbs <= (1 + 4 * growth) * scale + eta)) {
      return { ok: false, row: firstRow + i, reason: `row ${firstRow + i} is larger than any product of these inputs can be` };
    }
    const tol = 3 * growth * scale + eta;
    let conclusive = true;
    let failed = false;
    for (let t = 1; t <= rounds; t++) {
      const y = ay[t] as number;
      if (!Number.isFinite(y)) conclusive = false;
      else if (!(Math.abs((cx[t] as number) - y) <= tol)) failed = true;
    }
    if (!conclusive) {
      unverifiable++;
      continue;
    }
    if (failed) return { ok: false, row: firstRow + i, reason: `row ${firstRow + i} fails Freivalds' test` };
  }
  return { ok: true, rowsChecked: rowCount - unverifiable, rowsUnverifiable: unverifiable };
}

/**
 * The sums of rows `[firstRow, firstRow + rowCount)` of a tile (as {@link checkTileRows}
 * takes them) in the layout of `judgeTileRows`, computed by the scalar loops: for testing
 * the production decision on its own.
 */
export function scalarTileSums(
  p: Projection,
  probes: Float64Array,
  colStart: number,
  tile: Float64Array,
  n: number,
  aRows: Float64Array,
  firstRow: number,
  rowCount: number,
): TileSums {
  const { k, rounds, w, s } = p;
  const width = rounds + 1;
  const jb = Math.floor(colStart / p.tiling.tileCols);
  const a = new Float64Array(rowCount * width);
  const aAbs = new Float64Array(rowCount);
  const c = new Float64Array(rowCount * width);
  const out = new Float64Array(rounds + 2);
  for (let i = 0; i < rowCount; i++) {
    interleavedDots(aRows, i * k, k, w, jb * k, rounds, s, jb * k, out);
    for (let t = 0; t < rounds; t++) a[i * width + t] = out[1 + t] as number;
    a[i * width + rounds] = out[0] as number;
    aAbs[i] = out[rounds + 1] as number;
    interleavedDots(tile, (firstRow + i) * n, n, probes, colStart, rounds, undefined, 0, out);
    for (let t = 0; t < rounds; t++) c[i * width + t] = out[1 + t] as number;
    c[i * width + rounds] = out[0] as number;
  }
  return { k, n, a, aOff: 0, aStride: width, aScaleOff: rounds, aAbs, aAbsOff: 0, c };
}
