/**
 * Freivalds' test for one output tile, with a rigorous floating-point tolerance.
 *
 * A worker returns a tile Ĉ = C[I, J] of C = A·B. The coordinator draws secret probe
 * vectors r (one per round, entries on a grid of 2^32 values in (-1, 1)) and compares
 * Ĉ·r with A[I,:]·(B[:,J]·r) row by row. Here are the probes and the rules
 * ({@link judgeTileRows}), pure functions of arrays; the shell supplies the random words,
 * reads the matrices, computes the dot products (in any summation order, see "No false
 * rejections") and runs it all off its event loop.
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

/** Values per row of a panel and of a row's sums: the {@link FREIVALDS_ROUNDS} rounds, then the magnitude. */
export const PANEL_WIDTH = FREIVALDS_ROUNDS + 1;

/**
 * The probes as a panel: `cols × PANEL_WIDTH` values, row j = round 0…6's entries for
 * column j, then 1 (so the product of a row x with it gives x·r_t and, against |x|,
 * Σ|x_j|). `probes` is {@link probesFromWords}' output for {@link FREIVALDS_ROUNDS} rounds.
 */
export function probePanel(probes: Float64Array, cols: number): Float64Array {
  const rounds = FREIVALDS_ROUNDS;
  if (probes.length < rounds * cols) throw new RangeError(`need ${rounds * cols} probe values, got ${probes.length}`);
  const panel = new Float64Array(cols * PANEL_WIDTH);
  for (let j = 0; j < cols; j++) {
    for (let t = 0; t < rounds; t++) panel[j * PANEL_WIDTH + t] = probes[j * rounds + t] as number;
    panel[j * PANEL_WIDTH + rounds] = 1;
  }
  return panel;
}

/** Outcome of checking (part of) a tile. */
export type TileCheck =
  | { readonly ok: true; readonly rowsChecked: number; readonly rowsUnverifiable: number }
  | { readonly ok: false; readonly row: number; readonly reason: string };

/**
 * The sums one check compares, per row i of a tile (m × n, inner dimension k), each a dot
 * product computed in any summation order, with or without FMA (the bound of the module
 * comment covers every order):
 *
 * - `a[aOff + i·aStride + t]` = fl(A_i·w_t) for round t < {@link FREIVALDS_ROUNDS}, and
 *   `a[aScaleOff + i·aStride]` the magnitude Ŝ_i = fl(Σ_l |a_il|·s_l), where w_t and s are
 *   the projection of the tile's column block (w_t = fl(B[:,J]·r_t[J]), s_l =
 *   fl(Σ_{j∈J} |b_lj|));
 * - `aAbs[aAbsOff + i]` = fl(Σ_l |a_il|) (for the underflow allowance);
 * - `c[i·PANEL_WIDTH + t]` = fl(Ĉ_i·r_t[J]), and at t = {@link FREIVALDS_ROUNDS} fl(Σ_j |Ĉ_ij|).
 */
export interface TileSums {
  readonly k: number;
  readonly n: number;
  readonly a: Float64Array;
  readonly aOff: number;
  readonly aStride: number;
  readonly aScaleOff: number;
  readonly aAbs: Float64Array;
  readonly aAbsOff: number;
  readonly c: Float64Array;
}

/**
 * Decides rows `[0, rowCount)` of a tile from their sums (see {@link TileSums}), by the
 * rules of the module comment; `firstRow` is added to the row a rejection names.
 * Deterministic; never throws for any values.
 */
export function judgeTileRows(sums: TileSums, firstRow: number, rowCount: number): TileCheck {
  const { k, n, a, aOff, aStride, aScaleOff, aAbs, aAbsOff, c } = sums;
  const rounds = FREIVALDS_ROUNDS;
  const growth = (k + n + 2) * U;
  let unverifiable = 0;
  for (let i = 0; i < rowCount; i++) {
    const ai = aOff + i * aStride;
    const scale = a[aScaleOff + i * aStride] as number;
    const eta = UNDERFLOW_UNIT * (n * (k + 1 + (aAbs[aAbsOff + i] as number)) + k + 1);
    // Not finite, NaN or near overflow: no rounding bound applies, the row is not checked.
    if (!(scale <= MAX_ROW_SCALE) || !Number.isFinite(eta)) {
      unverifiable++;
      continue;
    }
    const ci = i * PANEL_WIDTH;
    const cAbs = c[ci + rounds] as number;
    // Written so that NaN fails too.
    if (!(cAbs <= (1 + 4 * growth) * scale + eta)) {
      return { ok: false, row: firstRow + i, reason: `row ${firstRow + i} is larger than any product of these inputs can be` };
    }
    const tol = 3 * growth * scale + eta;
    let conclusive = true;
    let failed = false;
    for (let t = 0; t < rounds; t++) {
      const y = a[ai + t] as number;
      if (!Number.isFinite(y)) conclusive = false;
      else if (!(Math.abs((c[ci + t] as number) - y) <= tol)) failed = true;
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
