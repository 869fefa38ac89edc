// AssemblyScript source of the verifier's product (compiled by scripts/build-wasm.mjs,
// never by tsc). One source, two binaries: wasm/panel-simd.wasm (plain f64x2 multiply, then
// add) and wasm/panel-relaxed.wasm (f64x2.relaxed_madd, a fused multiply-add where the CPU
// has one); ASC_FEATURE_RELAXED_SIMD is a compile-time constant.
//
// Every product of Freivalds' check has the same shape: rows of a matrix X times a panel
// V of 8 interleaved columns (len × 8, row-major) of the 7 rounds and a magnitude:
//
//   y[r][c] = Σ_p x[r][p] · V[p][c]     for c < 7
//   y[r][7] = Σ_p |x[r][p]| · V[p][7]
//
// - projection of B:  X = rows of B[:, J], V = the probes of block J with column 7 = 1;
// - A pass:           X = rows of A,       V = the projection of block J (column 7 = s_J);
// - Ĉ pass:           X = rows of the tile, V = the probes of block J with column 7 = 1.
//
// With a column of ones the magnitude is a plain sum of |x| (probeProduct); the A pass
// takes the projection of two blocks at a time in a layout that keeps magnitudes in their
// own vector (bandProduct).
//
// Summation order: each y[r][c] is one accumulator summed over p in ascending order (the
// sums of |x| in two lanes of two vectors, added at the end), one rounding per multiply
// and per add (or one per fused multiply-add); a product blocked over p (bandProduct)
// stores the accumulator and loads it back, which is exact. The tolerance of the check
// covers any order anyway (docs/verification.md); this one is simply the cheapest.
//
// Addresses are byte offsets into the module's memory, whose first page is left to the
// module's own data; strides count doubles.

/** Rows of X per register block: 2 rows × 4 f64x2 accumulators = 8 registers. */
const MR: i32 = 2;
/** Depth of a cache block of the band product: a KC × 8 slice of V is 16 KiB (L1). */
const KC: i32 = 256;
/** Rows of X per cache block of the band product: MB × KC doubles, 32 KiB (L1/L2). */
const MB: i32 = 16;

/** acc + x · y: rounded once (FMA) or twice, depending on the binary and the CPU; the check's bound covers both. */
function madd(x: v128, y: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f64x2.relaxed_madd(x, y, acc);
  }
  return f64x2.add(acc, f64x2.mul(x, y));
}

/**
 * Modes of {@link product}: which value of x meets the last vector (columns 6–7) of the
 * panel. No vector mixes x and |x|: masking one lane of [x, x] costs 1.5× the whole
 * product in V8 (measured), while f64x2.abs is nearly free.
 */
type AllAbs = u16; // [|x|, |x|]: two magnitude columns
type NoAbs = u32; // [x, x]: two round columns

/** The operand of the last vector of the panel (see the modes above); resolved at compile time. */
function lastOperand<M>(a: v128): v128 {
  if (sizeof<M>() === 2) return f64x2.abs(a);
  return a;
}

/**
 * y[r][0..7] (row stride `ldy`) = rows [0, rows) of X (row stride `ldx`) over `len` steps
 * times columns 0–6 of the probe panel V (len × 8 at `v`), and y[r][7] = Σ_p |x[r][p]|
 * (the panel's column 7 of ones is not read).
 */
export function probeProduct(x: usize, ldx: i32, rows: i32, len: i32, v: usize, y: usize, ldy: i32): void {
  product<NoAbs>(x, ldx, rows, len, v, y, ldy, false);
  absSums(x, ldx, rows, len, y + 56, ldy);
}

/**
 * y[r][0..8] (row stride `ldy`) = rows [0, rows) of X (row stride `ldx`) over `len`
 * steps times the panel V (len × 8 at `v`), added to what y holds when `accumulate`;
 * columns 6 and 7 are taken against |x| in mode AllAbs.
 */
function product<M>(x: usize, ldx: i32, rows: i32, len: i32, v: usize, y: usize, ldy: i32, accumulate: bool): void {
  const xs = (<usize>ldx) << 3;
  const ys = (<usize>ldy) << 3;
  let r = 0;
  for (; r + MR <= rows; r += MR) {
    const x0 = x + <usize>r * xs;
    const x1 = x0 + xs;
    const y0 = y + <usize>r * ys;
    const y1 = y0 + ys;
    let c00 = f64x2.splat(0);
    let c01 = f64x2.splat(0);
    let c02 = f64x2.splat(0);
    let c03 = f64x2.splat(0);
    let c10 = f64x2.splat(0);
    let c11 = f64x2.splat(0);
    let c12 = f64x2.splat(0);
    let c13 = f64x2.splat(0);
    if (accumulate) {
      c00 = v128.load(y0);
      c01 = v128.load(y0, 16);
      c02 = v128.load(y0, 32);
      c03 = v128.load(y0, 48);
      c10 = v128.load(y1);
      c11 = v128.load(y1, 16);
      c12 = v128.load(y1, 32);
      c13 = v128.load(y1, 48);
    }
    let p = v;
    for (let l = 0; l < len; l++) {
      const o = (<usize>l) << 3;
      const a0 = v128.load64_splat(x0 + o);
      const a1 = v128.load64_splat(x1 + o);
      let w = v128.load(p);
      c00 = madd(a0, w, c00);
      c10 = madd(a1, w, c10);
      w = v128.load(p, 16);
      c01 = madd(a0, w, c01);
      c11 = madd(a1, w, c11);
      w = v128.load(p, 32);
      c02 = madd(a0, w, c02);
      c12 = madd(a1, w, c12);
      w = v128.load(p, 48);
      c03 = madd(lastOperand<M>(a0), w, c03);
      c13 = madd(lastOperand<M>(a1), w, c13);
      p += 64;
    }
    v128.store(y0, c00);
    v128.store(y0, c01, 16);
    v128.store(y0, c02, 32);
    v128.store(y0, c03, 48);
    v128.store(y1, c10);
    v128.store(y1, c11, 16);
    v128.store(y1, c12, 32);
    v128.store(y1, c13, 48);
  }
  for (; r < rows; r++) {
    const x0 = x + <usize>r * xs;
    const y0 = y + <usize>r * ys;
    let c0 = f64x2.splat(0);
    let c1 = f64x2.splat(0);
    let c2 = f64x2.splat(0);
    let c3 = f64x2.splat(0);
    if (accumulate) {
      c0 = v128.load(y0);
      c1 = v128.load(y0, 16);
      c2 = v128.load(y0, 32);
      c3 = v128.load(y0, 48);
    }
    let p = v;
    for (let l = 0; l < len; l++) {
      const a0 = v128.load64_splat(x0 + ((<usize>l) << 3));
      c0 = madd(a0, v128.load(p), c0);
      c1 = madd(a0, v128.load(p, 16), c1);
      c2 = madd(a0, v128.load(p, 32), c2);
      c3 = madd(lastOperand<M>(a0), v128.load(p, 48), c3);
      p += 64;
    }
    v128.store(y0, c0);
    v128.store(y0, c1, 16);
    v128.store(y0, c2, 32);
    v128.store(y0, c3, 48);
  }
}

/**
 * The A pass of a row band for every column block at once: X = the band (m × k at `a`)
 * against the projection in pair layout: for each pair of column blocks (J, J+1), two
 * panels of 8 columns (k × 8 each, panel q at `w` + q·k·64 bytes):
 *
 *   panel 2p:     J's rounds 0–6, J+1's round 0          (against x)
 *   panel 2p + 1: J+1's rounds 1–6, s_J, s_J+1           (the last two against |x|)
 *
 * so that no panel mixes x and |x| within a vector (measured: 1.5× faster than [x, |x|]).
 * y = m × (panels · 8) (row r, panel q at `y` + (r·panels + q)·64 bytes). Blocked over k
 * (KC) and rows (MB) so that a slice of the band and of each panel stay in cache while
 * every panel uses them.
 */
export function bandProduct(a: usize, m: i32, k: i32, w: usize, panels: i32, y: usize): void {
  const blocks = panels;
  const ldy = blocks * 8;
  // At least one pass, so that k = 0 still writes zeros.
  for (let l0 = 0; l0 === 0 || l0 < k; l0 += KC) {
    const kb = min(KC, k - l0);
    for (let i0 = 0; i0 < m; i0 += MB) {
      const mb = min(MB, m - i0);
      const xa = a + ((<usize>i0 * <usize>k + <usize>l0) << 3);
      for (let jb = 0; jb < blocks; jb++) {
        const v = w + ((<usize>jb * <usize>k + <usize>l0) << 6);
        const ya = y + ((<usize>i0 * <usize>ldy + <usize>jb * 8) << 3);
        if (jb & 1) product<AllAbs>(xa, k, mb, kb, v, ya, ldy, l0 > 0);
        else product<NoAbs>(xa, k, mb, kb, v, ya, ldy, l0 > 0);
      }
    }
  }
}

/**
 * The projection of `rows` rows of B (row stride `cols`, at `b`), which are rows
 * [firstRow, firstRow + rows) of B: for each column block J of `tileCols` columns,
 * w_J[l] = B[l, J] · V_J with V_J the probes of block J (at `probes` + j0·64 bytes).
 * w_J[l] is at `w` + (J·k + l)·64 bytes.
 */
export function projectRows(b: usize, rows: i32, cols: i32, tileCols: i32, probes: usize, w: usize, k: i32, firstRow: i32): void {
  let jb = 0;
  for (let j0 = 0; j0 < cols; j0 += tileCols) {
    const nb = min(tileCols, cols - j0);
    const out = w + ((<usize>jb * <usize>k + <usize>firstRow) << 6);
    probeProduct(b + ((<usize>j0) << 3), cols, rows, nb, probes + ((<usize>j0) << 6), out, 8);
    jb++;
  }
}

/** out[r·outStride] = Σ_p |x[r][p]| over `len` values of each of `rows` rows (row stride `ldx`). */
export function absSums(x: usize, ldx: i32, rows: i32, len: i32, out: usize, outStride: i32): void {
  const xs = (<usize>ldx) << 3;
  const os = (<usize>outStride) << 3;
  for (let r = 0; r < rows; r++) {
    const x0 = x + <usize>r * xs;
    let s0 = f64x2.splat(0);
    let s1 = f64x2.splat(0);
    let p = 0;
    for (; p + 4 <= len; p += 4) {
      const at = x0 + ((<usize>p) << 3);
      s0 = f64x2.add(s0, f64x2.abs(v128.load(at)));
      s1 = f64x2.add(s1, f64x2.abs(v128.load(at, 16)));
    }
    const s = f64x2.add(s0, s1);
    let t = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
    for (; p < len; p++) t += abs<f64>(load<f64>(x0 + ((<usize>p) << 3)));
    store<f64>(out + <usize>r * os, t);
  }
}
