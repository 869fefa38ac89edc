/**
 * Freivalds' test for one output tile, with a rigorous floating-point tolerance.
 *
 * A worker returns a tile Ĉ = C[I, J] of C = A·B. The coordinator draws secret probe
 * vectors r (one per round, entries on a grid of 2^32 values in (-1, 1)) and compares
 * Ĉ·r with A[I,:]·(B[:,J]·r) row by row. Everything here is pure arithmetic on arrays;
 * the shell supplies the random words, reads the matrices and runs it off its event loop.
 *
 * Notation (u = 2^-53, the unit roundoff of float64; k = inner dimension; n = tile
 * columns; for a row i of the tile):
 *
 * - S_i = Σ_{j∈J} Σ_l |a_il|·|b_lj|: the magnitude of everything row i of the tile sums.
 * - tol_i = 3u·(k + n + 2)·Ŝ_i + η_i, with Ŝ_i the computed S_i and η_i a bound on the
 *   absolute error gradual underflow can add (far below anything normal).
 *
 * A row is **conclusive** when Ŝ_i ≤ 2^960 and every A_i·w is finite: inputs that hold
 * NaN/Inf or approach overflow give no finite rounding bound, and such rows are not
 * checked (counted as unverified). In a conclusive row, the result is rejected when
 *
 * 1. Σ_j |Ĉ_ij| > (1 + 4u·(k + n + 2))·Ŝ_i + η_i (no honest row can be that large, so a
 *    NaN, an Inf or a huge value is rejected with certainty), or
 * 2. in some round, |fl(Ĉ_i·r) − fl(A_i·w)| > tol_i, where w = fl(B[:,J]·r).
 *
 * **No false rejections.** Any kernel that sums each element of C in any order, with or
 * without FMA, gives |Ĉ_ij − (AB)_ij| ≤ γ_k·Σ_l |a_il||b_lj| (γ_k = ku/(1−ku)); adding
 * the rounding of the three dot products of the check itself (γ_n and γ_k terms) bounds
 * |Δ_i| by about 2u·(k + n)·S_i, below tol_i, which also covers the error of computing
 * Ŝ_i. So an honest result passes every round with certainty, whatever r is.
 *
 * **Detection.** Let D = Ĉ − AB (exact) and δ = |D_ij| for some j. A round misses only if
 * |D_i·r| ≤ 2·T_i, where T_i = 3u·(k + n + 2)·S_i + η_i (check rounding and tolerance
 * together). Fix every probe entry but r_j: D_i·r = D_ij·r_j + c, and r_j takes each of
 * its 2^32 grid values (spacing 2^-31) with probability 2^-32, so at most 4T_i/(δ·2^-31)
 * + 1 of them land in the bad interval: a round misses with probability at most
 * 2T_i/δ + 2^-32. With {@link FREIVALDS_ROUNDS} = 7 independent rounds and
 * δ > {@link FREIVALDS_DETECTION_FACTOR}·T_i = 128·T_i, all rounds miss with
 * probability at most (2^-6 + 2^-32)^7 < 2^-41.99 < 2^-40.
 *
 * A perturbation smaller than the rounding bound (δ ≲ T_i) cannot be told from honest
 * rounding by this test or by any other O(n²) check that must never reject an honest
 * kernel: such a difference is within what legitimate summation orders produce.
 *
 * Probe reuse: one job reuses its probes for every tile. The only feedback a worker gets
 * is accept/reject, an honest result is always accepted, and a worker is quarantined after
 * a few rejections, so a worker can submit only a handful of wrong results per probe set
 * and each one escapes with probability below 2^-40 (a union bound over the attempts).
 *
 * @packageDocumentation
 */

/** Rounds (independent probe vectors) per check. See the module comment for the bound. */
export const FREIVALDS_ROUNDS = 7;
/**
 * An entry error above this many times T_i (see the module comment) is caught with
 * probability at least 1 − 2^-40 by {@link FREIVALDS_ROUNDS} rounds.
 */
export const FREIVALDS_DETECTION_FACTOR = 128;

/** Unit roundoff of float64. */
const U = 2 ** -53;
/** Rows whose magnitude sum is above this are not checked (no overflow anywhere in the check). */
const MAX_ROW_SCALE = 2 ** 960;
/** Underflow allowance per elementary product (2^-1075 each, with a generous margin). */
const UNDERFLOW_UNIT = 2 ** -1070;
/** Spacing of the probe grid: r = (z + 1/2)·2^-31 for a 32-bit signed z. */
const PROBE_STEP = 2 ** -31;

/**
 * Probe vectors from uniformly random 32-bit words: `rounds × cols` values, interleaved
 * by column (`r[j·rounds + t]` is round t's entry for column j, so one pass over a row
 * serves every round), each (z + ½)·2^-31 for the signed 32-bit z of one word, so 2^32
 * equally likely values in (−1, 1), all exact in float64. The caller draws `words` from
 * a CSPRNG and keeps the result secret.
 * @throws RangeError if `words` is shorter than `rounds × cols`.
 */
export function probesFromWords(words: Uint32Array, rounds: number, cols: number): Float64Array {
  const n = rounds * cols;
  if (words.length < n) throw new RangeError(`need ${n} random words, got ${words.length}`);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = ((words[i] as number) | 0) * PROBE_STEP + PROBE_STEP / 2;
  return r;
}

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
    // The production case (FREIVALDS_ROUNDS): every accumulator in a register.
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
 * @param probes from {@link probesFromWords}, `rounds × cols`.
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

/** Outcome of checking (part of) a tile. */
export type TileCheck =
  | { readonly ok: true; readonly rowsChecked: number; readonly rowsUnverifiable: number }
  | { readonly ok: false; readonly row: number; readonly reason: string };

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

/** Floating-point operations one check of an m × n tile with inner dimension k costs (for sizing work). */
export function checkCostFlops(m: number, n: number, k: number, rounds: number = FREIVALDS_ROUNDS): number {
  return 2 * m * (k + n) * (rounds + 1);
}
