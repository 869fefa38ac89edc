// AssemblyScript source of the `wasm-simd` kernel (compiled by scripts/build-wasm.mjs,
// never by tsc). One source, two binaries: wasm/gemm-simd.wasm (plain f64x2 multiply,
// then add) and wasm/gemm-relaxed.wasm (f64x2.relaxed_madd, a fused multiply-add where
// the CPU has one). ASC_FEATURE_RELAXED_SIMD is a compile-time constant, so each binary
// contains only its own path.
//
// Summation order, the contract the TypeScript side and the tests rely on: every output
// element is one accumulator that starts at +0 (or at the C value already in memory when
// `accumulate` is set) and receives a[i][p] * b[p][j] for p = 0, 1, …, k-1 in ascending
// order, one rounding per multiply and per add (or one per fused multiply-add). Blocking
// only changes when an accumulator is stored to C and loaded back, which is exact, so the
// bits of an element depend on its row of A and column of B alone, not on m, n, the tile
// shape, the cache blocks or the chunking. Without FMA this is the reference kernel's
// order, bit for bit ("wasm-simd nofma equals the reference bit for bit" in the tests).

/** Rows of the register tile (see {@link microKernel}). */
const MR: i32 = 5;
/** Columns of the register tile (two f64x2 vectors). */
const NR: i32 = 4;
/** Depth of a cache block: a KC × MR sliver of A and a KC × NR sliver of B stay in L1. */
const KC: i32 = 256;
/** Rows of a packed A block (MC × KC doubles, 160 KiB, sized for L2). A multiple of MR. */
const MC: i32 = 80;
/** Columns of a packed B block (KC × NC doubles, 2 MiB, sized for L3). A multiple of NR. */
const NC: i32 = 1024;

/** Bytes of workspace {@link gemm} needs at `ws`: packed A, packed B, one edge tile. */
export function workspaceBytes(): i32 {
  return (MC * KC + KC * NC + MR * NR) * 8;
}

/**
 * Multiply-add of two f64x2 vectors into an accumulator: acc + x * y, fused or not
 * depending on the binary (see the file comment).
 */
function madd(x: v128, y: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f64x2.relaxed_madd(x, y, acc);
  }
  return f64x2.add(acc, f64x2.mul(x, y));
}

/** The value of relaxed_madd(1 + 2^-52, 1 - 2^-52, -1): -2^-104 when fused, 0 when not. */
export function probeFma(x: f64, y: f64, z: f64): f64 {
  return f64x2.extract_lane(madd(f64x2.splat(x), f64x2.splat(y), f64x2.splat(z)), 0);
}

/**
 * The register tile: C[0..MR][0..NR] (row stride `ldc` bytes) receives the products of a
 * packed A sliver (kc × MR, `ap`) and a packed B sliver (kc × NR, `bp`) over `kc` steps.
 * The accumulators start at C when `fromC` is set, at +0 otherwise.
 *
 * Ten f64x2 accumulators, two B vectors, one broadcast A value and one product fit the 15
 * vector registers V8 allocates on x64 without spilling (6 rows would need 16; measured).
 * The loop is not unrolled: Binaryen regroups an unrolled body per accumulator, which
 * makes every loaded value live at once and spills.
 */
function microKernel(kc: i32, ap: usize, bp: usize, c: usize, ldc: usize, fromC: bool): void {
  const r1 = c + ldc;
  const r2 = r1 + ldc;
  const r3 = r2 + ldc;
  const r4 = r3 + ldc;
  let c00 = f64x2.splat(0);
  let c01 = f64x2.splat(0);
  let c10 = f64x2.splat(0);
  let c11 = f64x2.splat(0);
  let c20 = f64x2.splat(0);
  let c21 = f64x2.splat(0);
  let c30 = f64x2.splat(0);
  let c31 = f64x2.splat(0);
  let c40 = f64x2.splat(0);
  let c41 = f64x2.splat(0);
  if (fromC) {
    c00 = v128.load(c);
    c01 = v128.load(c, 16);
    c10 = v128.load(r1);
    c11 = v128.load(r1, 16);
    c20 = v128.load(r2);
    c21 = v128.load(r2, 16);
    c30 = v128.load(r3);
    c31 = v128.load(r3, 16);
    c40 = v128.load(r4);
    c41 = v128.load(r4, 16);
  }
  let a = ap;
  let b = bp;
  const end = ap + <usize>kc * ((<usize>MR) << 3);
  while (a < end) {
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    let x = v128.load64_splat(a);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = v128.load64_splat(a, 8);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = v128.load64_splat(a, 16);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = v128.load64_splat(a, 24);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
    x = v128.load64_splat(a, 32);
    c40 = madd(x, b0, c40);
    c41 = madd(x, b1, c41);
    a += (<usize>MR) << 3;
    b += (<usize>NR) << 3;
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(r1, c10);
  v128.store(r1, c11, 16);
  v128.store(r2, c20);
  v128.store(r2, c21, 16);
  v128.store(r3, c30);
  v128.store(r3, c31, 16);
  v128.store(r4, c40);
  v128.store(r4, c41, 16);
}

/**
 * Packs rows [0, mc) and columns [0, kc) of A (at `a`, row stride `lda` bytes) into
 * slivers of MR rows: sliver r holds, for each p, the MR values A[r*MR + i][p]. Rows past
 * `mc` are zero (their results are computed but never stored).
 */
function packA(mc: i32, kc: i32, a: usize, lda: usize, dst: usize): void {
  for (let r: i32 = 0; r < mc; r += MR) {
    const rows = min(MR, mc - r);
    const sliver = dst + <usize>r * <usize>kc * 8;
    for (let i: i32 = 0; i < MR; i++) {
      let out = sliver + ((<usize>i) << 3);
      if (i < rows) {
        let src = a + <usize>(r + i) * lda;
        const end = src + ((<usize>kc) << 3);
        while (src < end) {
          store<f64>(out, load<f64>(src));
          src += 8;
          out += (<usize>MR) << 3;
        }
      } else {
        for (let p: i32 = 0; p < kc; p++) {
          store<f64>(out, 0);
          out += (<usize>MR) << 3;
        }
      }
    }
  }
}

/**
 * Packs rows [0, kc) and columns [0, nc) of B (at `b`, row stride `ldb` bytes) into
 * slivers of NR columns: sliver s holds, for each p, the NR values B[p][s*NR + j].
 * Columns past `nc` are zero.
 */
function packB(kc: i32, nc: i32, b: usize, ldb: usize, dst: usize): void {
  for (let s: i32 = 0; s < nc; s += NR) {
    const cols = min(NR, nc - s);
    let out = dst + <usize>s * <usize>kc * 8;
    let src = b + ((<usize>s) << 3);
    if (cols === NR) {
      for (let p: i32 = 0; p < kc; p++) {
        v128.store(out, v128.load(src));
        v128.store(out, v128.load(src, 16), 16);
        src += ldb;
        out += (<usize>NR) << 3;
      }
    } else {
      for (let p: i32 = 0; p < kc; p++) {
        for (let j: i32 = 0; j < NR; j++) {
          store<f64>(out + ((<usize>j) << 3), j < cols ? load<f64>(src + ((<usize>j) << 3)) : 0);
        }
        src += ldb;
        out += (<usize>NR) << 3;
      }
    }
  }
}

/**
 * C = A × B (or C += A × B when `accumulate` is non-zero) for row-major float64 matrices
 * in this module's memory. `a`, `b`, `c` and `ws` are byte offsets; `lda`, `ldb`, `ldc`
 * are row strides in elements. `ws` points at {@link workspaceBytes} free bytes.
 */
export function gemm(
  m: i32,
  n: i32,
  k: i32,
  a: usize,
  lda: i32,
  b: usize,
  ldb: i32,
  c: usize,
  ldc: i32,
  accumulate: i32,
  ws: usize,
): void {
  const ldaB = (<usize>lda) << 3;
  const ldbB = (<usize>ldb) << 3;
  const ldcB = (<usize>ldc) << 3;
  const packedA = ws;
  const packedB = packedA + <usize>(MC * KC) * 8;
  const edge = packedB + <usize>(KC * NC) * 8;
  if (k === 0 && accumulate === 0) {
    // No products: every element is the empty sum, +0.
    for (let i: i32 = 0; i < m; i++) memory.fill(c + <usize>i * ldcB, 0, (<usize>n) << 3);
    return;
  }
  for (let jc: i32 = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    for (let pc: i32 = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const fromC = pc > 0 || accumulate !== 0;
      packB(kc, nc, b + <usize>pc * ldbB + ((<usize>jc) << 3), ldbB, packedB);
      for (let ic: i32 = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic);
        packA(mc, kc, a + <usize>ic * ldaB + ((<usize>pc) << 3), ldaB, packedA);
        for (let jr: i32 = 0; jr < nc; jr += NR) {
          const cols = min(NR, nc - jr);
          const bp = packedB + <usize>jr * <usize>kc * 8;
          for (let ir: i32 = 0; ir < mc; ir += MR) {
            const rows = min(MR, mc - ir);
            const ap = packedA + <usize>ir * <usize>kc * 8;
            const ct = c + <usize>(ic + ir) * ldcB + ((<usize>(jc + jr)) << 3);
            if (rows === MR && cols === NR) {
              microKernel(kc, ap, bp, ct, ldcB, fromC);
            } else {
              // Edge tile: run the full register tile on a scratch copy, store the valid part.
              for (let i: i32 = 0; i < MR; i++) {
                for (let j: i32 = 0; j < NR; j++) {
                  const inside = fromC && i < rows && j < cols;
                  const v = inside ? load<f64>(ct + <usize>i * ldcB + ((<usize>j) << 3)) : 0;
                  store<f64>(edge + ((<usize>(i * NR + j)) << 3), v);
                }
              }
              microKernel(kc, ap, bp, edge, (<usize>NR) << 3, fromC);
              for (let i: i32 = 0; i < rows; i++) {
                for (let j: i32 = 0; j < cols; j++) {
                  store<f64>(ct + <usize>i * ldcB + ((<usize>j) << 3), load<f64>(edge + ((<usize>(i * NR + j)) << 3)));
                }
              }
            }
          }
        }
      }
    }
  }
}
