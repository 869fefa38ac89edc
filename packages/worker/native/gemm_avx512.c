// The native-avx512 kernel: float64 C = A × B in the style of GotoBLAS / BLIS, written
// for AVX-512 (eight doubles per zmm register) with fused multiply-add.
//
// Structure (the classic five loops around a micro-kernel):
//
//   for jc in steps of NC over the columns of C          B block  KC × NC, packed   (L2/L3)
//     for pc in steps of KC over the depth
//       pack B[pc.., jc..] into NR-column micro-panels
//       for ic in steps of MC over the rows of C         A block  MC × KC, packed   (L2)
//         (check the stop flag)
//         pack A[ic.., pc..] into MR-row micro-panels
//         for jr in steps of NR:  for ir in steps of MR:  MR × NR micro-kernel
//
// The micro-kernel keeps an MR × NR tile of C in MR·NR/8 zmm accumulators, and per step of
// k loads NR/8 vectors of the packed B micro-panel, broadcasts MR elements of the packed
// A micro-panel, and issues MR·NR/8 FMAs. Edge tiles are packed with zeros up to MR rows
// and NR columns and stored through AVX-512 masks; an edge panel of at most 8 or 16
// columns runs a micro-kernel one or two vectors wide, so it issues no FMAs for columns
// that do not exist (the chain of each element that does is the same).
//
// Around it (each measured to pay on the job shapes, m = n = 256..512, k = 1024..4096):
//  - full A micro-panels are packed eight depth steps at a time, 8 × 8 doubles transposed
//    in registers, instead of a scalar gather;
//  - while a tile is computed, the C tile after it is fetched towards the cache (C is
//    read back once per depth block, and would otherwise stall the first FMAs);
//  - the packing buffers belong to the thread and are reused by its next call
//    (pack_buffers.c), instead of being allocated and faulted in per call.
//
// Summation order: every element of C is ONE fused multiply-add chain over k in
// ascending order. The first depth block starts it from +0 (or from C when beta is 1),
// and every later block reloads the partial sum from C and continues the same chain. So
// an element's bits depend only on its row of A and its column of B: not on m or n, not
// on the blocking, not on its place in a tile, not on timing. That is what lets the
// coordinator assemble tiles computed by any worker into a byte-identical C.
//
// Everything that uses AVX-512 is compiled for that target by attribute, so the addon
// builds with the compiler's default target and loads on any x86-64 CPU (or other
// architecture, where the kernel is simply unsupported); dce_avx512_supported() gates it.
#include "gemm_avx512.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_buffers.h"

// Micro-kernel shape: MR rows by NV vectors of 8 columns. 8 × 24 uses 24 of the 32 zmm
// registers as accumulators, 3 for B and one for the broadcast A element. Measured
// against 12 × 16, 14 × 16 and 6 × 32 on the reference machine (Zen 5): 8 × 24 was the
// fastest or equal at n = 512 to 2048, 12 × 16 and 14 × 16 up to 10% slower.
#ifndef DCE_MR
#define DCE_MR 8
#endif
#ifndef DCE_NV
#define DCE_NV 3
#endif
#define MR DCE_MR
#define NR (8 * DCE_NV)

// Cache blocking for a core with a 48 KiB L1D and a 1 MiB L2 (AMD Zen 5; Intel Sapphire
// Rapids has 48 KiB / 2 MiB), chosen by measurement among KC 128-384 and MC 96-384:
//  - KC = 256: each A micro-panel (MR × KC × 8 B = 16 KiB) fits L1 beside the part of the
//    B micro-panel (KC × NR × 8 B = 48 KiB) being read; the B micro-panel is reused by the
//    MC/MR = 24 A micro-panels of a block from L1/L2, fetched ahead by prefetch. A deeper
//    KC also amortises the reload and store of C once per depth block; KC 128 was slower.
//  - MC = 192: the packed A block (MC × KC × 8 B = 384 KiB) sits in under half the L2.
//  - NC = 4080 (a multiple of NR): the packed B block (KC × NC × 8 B ≈ 8 MiB) lives in
//    L3 and is reused by every A block of a column block; B is packed once for n ≤ 4080.
// These are the largest blocks: a product cuts m and k into blocks of equal size (rounded
// up to MR rows and 8 depth steps), so m = 256 runs as 2 × 128 rows rather than 192 + 64.
// Any of these (and the micro-kernel shape) can be overridden with -DDCE_KC=… at build
// time; the shape is part of the kernel's fingerprint.
#ifndef DCE_KC
#define DCE_KC 256
#endif
#ifndef DCE_MC
#define DCE_MC 192
#endif
#ifndef DCE_NC
#define DCE_NC 4080
#endif
#ifndef DCE_PF
#define DCE_PF 16
#endif
#define KC DCE_KC
#define PF DCE_PF
#ifndef DCE_PB
#define DCE_PB 2
#endif
#define PB DCE_PB
#define MC DCE_MC
#define NC ((DCE_NC / NR) * NR)

void dce_avx512_shape(char* out, size_t size) {
  snprintf(out, size, "%dx%d kc%d mc%d nc%d", MR, NR, KC, MC, NC);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,fma")))

int dce_avx512_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

// Packs rows [0, mc) × depth [0, kc) of A (stride lda) into MR-row micro-panels:
// panel q holds, for each p, the MR elements A[q·MR + r][p] (zero past mc).
#if MR == 8
// Full panels move eight depth steps at a time: eight rows of eight doubles transposed in
// registers (pure data movement: the packed values are A's, bit for bit).
AVX512 static inline void transpose8_store(const double* const rows[8], int64_t p, double* ap) {
  __m512d t[8];
  for (int r = 0; r < 8; r += 2) {
    const __m512d x = _mm512_loadu_pd(rows[r] + p), y = _mm512_loadu_pd(rows[r + 1] + p);
    t[r] = _mm512_unpacklo_pd(x, y);
    t[r + 1] = _mm512_unpackhi_pd(x, y);
  }
  for (int odd = 0; odd < 2; odd++) {
    const __m512d u0 = _mm512_shuffle_f64x2(t[odd], t[2 + odd], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512d u1 = _mm512_shuffle_f64x2(t[odd], t[2 + odd], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512d u2 = _mm512_shuffle_f64x2(t[4 + odd], t[6 + odd], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512d u3 = _mm512_shuffle_f64x2(t[4 + odd], t[6 + odd], _MM_SHUFFLE(3, 1, 3, 1));
    _mm512_store_pd(ap + 8 * (0 + odd), _mm512_shuffle_f64x2(u0, u2, _MM_SHUFFLE(2, 0, 2, 0)));
    _mm512_store_pd(ap + 8 * (4 + odd), _mm512_shuffle_f64x2(u0, u2, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_store_pd(ap + 8 * (2 + odd), _mm512_shuffle_f64x2(u1, u3, _MM_SHUFFLE(2, 0, 2, 0)));
    _mm512_store_pd(ap + 8 * (6 + odd), _mm512_shuffle_f64x2(u1, u3, _MM_SHUFFLE(3, 1, 3, 1)));
  }
}
#endif

AVX512 static void pack_a(int64_t mc, int64_t kc, const double* a, int64_t lda, double* ap) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int64_t mr = mc - i0 < MR ? mc - i0 : MR;
    const double* rows[MR];
    for (int r = 0; r < MR; r++) rows[r] = a + (i0 + (r < mr ? r : 0)) * lda;
    int64_t p = 0;
    if (mr == MR) {
#if MR == 8
      for (; p + 8 <= kc; p += 8) {
        // Eight row streams at once (rows lda apart, often on eight pages): fetch each
        // eight lines ahead rather than wait for the hardware prefetcher to find them.
        for (int r = 0; r < MR; r++) _mm_prefetch((const char*)(rows[r] + p + 64), _MM_HINT_T0);
        transpose8_store(rows, p, ap);
        ap += 8 * MR;
      }
#endif
      for (; p < kc; p++) {
        for (int r = 0; r < MR; r++) ap[r] = rows[r][p];
        ap += MR;
      }
    } else {
      for (; p < kc; p++) {
        for (int r = 0; r < MR; r++) ap[r] = r < mr ? rows[r][p] : 0.0;
        ap += MR;
      }
    }
  }
}

// Packs depth [0, kc) × columns [0, nc) of B (stride ldb) into NR-column micro-panels:
// panel q holds, for each p, the NR elements B[p][q·NR + j] (zero past nc). It walks B row
// by row (each row a sequential read) and fetches the row PB steps ahead: with B a tile of
// a wider matrix (ldb much larger than nc) every row starts on another page, where the
// hardware prefetcher would wait for misses before it follows.
AVX512 static void pack_b(int64_t kc, int64_t nc, const double* b, int64_t ldb, double* bp) {
  const int64_t full = nc / NR * NR;
  __mmask8 tail[DCE_NV];
  for (int v = 0; v < DCE_NV; v++) {
    const int64_t left = nc - full - 8 * v;
    tail[v] = left >= 8 ? (__mmask8)0xff : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1);
  }
  for (int64_t p = 0; p < kc; p++) {
    const double* row = b + p * ldb;
    if (p + PB < kc) {
      const char* ahead = (const char*)(row + PB * ldb);
      for (int64_t off = 0; off < nc * (int64_t)sizeof(double); off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
    }
    double* out = bp + p * NR;
    for (int64_t j0 = 0; j0 < full; j0 += NR, out += kc * NR) {
#pragma GCC unroll 4
      for (int v = 0; v < DCE_NV; v++) _mm512_store_pd(out + 8 * v, _mm512_loadu_pd(row + j0 + 8 * v));
    }
    if (full < nc) {
#pragma GCC unroll 4
      for (int v = 0; v < DCE_NV; v++) _mm512_store_pd(out + 8 * v, _mm512_maskz_loadu_pd(tail[v], row + full + 8 * v));
    }
  }
}

// One MR × (8·nv) tile: C[0..mr) × [0..nr) = (load_c ? C : 0) + Σ_p ap[p] ⊗ bp[p], each element a
// single FMA chain in ascending p. ap and bp are packed micro-panels (bp 64-byte aligned,
// NR doubles per step); nv ≤ DCE_NV is a constant at each call, so edge panels narrower
// than NR run fewer FMAs per step, not masked-off ones.
AVX512 static inline __attribute__((always_inline)) void micro_kernel(int64_t kc, const double* restrict ap,
                                                                      const double* restrict bp, double* c,
                                                                      int64_t ldc, int64_t mr, int64_t nr,
                                                                      int load_c, const int nv) {
  __mmask8 mask[DCE_NV];
  for (int v = 0; v < nv; v++) {
    const int64_t left = nr - 8 * v;
    mask[v] = left >= 8 ? (__mmask8)0xff : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1);
  }
  __m512d acc[MR][DCE_NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; r++) {
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
      acc[r][v] = load_c && r < mr ? _mm512_maskz_loadu_pd(mask[v], c + r * ldc + 8 * v) : _mm512_setzero_pd();
    }
  }
  // Unrolled by 4 (less loop overhead between the FMAs), and the packed panels fetched
  // PF steps ahead into L1.
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; p++) {
    _mm_prefetch((const char*)(bp + PF * NR), _MM_HINT_T0);
    _mm_prefetch((const char*)(ap + PF * MR), _MM_HINT_T0);
    __m512d bv[DCE_NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) bv[v] = _mm512_load_pd(bp + 8 * v);
#pragma GCC unroll 32
    for (int r = 0; r < MR; r++) {
      const __m512d av = _mm512_set1_pd(ap[r]);
#pragma GCC unroll 4
      for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_pd(av, bv[v], acc[r][v]);
    }
    ap += MR;
    bp += NR;
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; r++) {
    if (r < mr) {
#pragma GCC unroll 4
      for (int v = 0; v < nv; v++) _mm512_mask_storeu_pd(c + r * ldc + 8 * v, mask[v], acc[r][v]);
    }
  }
}

// Fetches the MR rows × nr columns of a C tile towards the cache ahead of its micro-kernel.
static inline void prefetch_c(const double* c, int64_t ldc, int64_t mr, int64_t nr) {
  for (int64_t r = 0; r < mr; r++) {
    const char* row = (const char*)(c + r * ldc);
    for (int64_t off = 0; off < nr * (int64_t)sizeof(double); off += 64) _mm_prefetch(row + off, _MM_HINT_T1);
    _mm_prefetch(row + nr * (int64_t)sizeof(double) - 1, _MM_HINT_T1);
  }
}

// The two inner loops over one packed A block (mc × kc) and one packed B block (kc × nc).
AVX512 static void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const double* ap, const double* bp, double* c,
                                int64_t ldc, int load_c) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t nr = nc - j0 < NR ? nc - j0 : NR;
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int64_t mr = mc - i0 < MR ? mc - i0 : MR;
      if (load_c) {
        const int64_t i1 = i0 + MR < mc ? i0 + MR : 0, j1 = i0 + MR < mc ? j0 : j0 + NR;
        if (j1 < nc) prefetch_c(c + i1 * ldc + j1, ldc, mc - i1 < MR ? mc - i1 : MR, nc - j1 < NR ? nc - j1 : NR);
      }
      double* cij = c + i0 * ldc + j0;
      if (nr > 16 || DCE_NV < 3) micro_kernel(kc, ap + i0 * kc, bp + j0 * kc, cij, ldc, mr, nr, load_c, DCE_NV);
      else if (nr > 8) micro_kernel(kc, ap + i0 * kc, bp + j0 * kc, cij, ldc, mr, nr, load_c, 2);
      else micro_kernel(kc, ap + i0 * kc, bp + j0 * kc, cij, ldc, mr, nr, load_c, 1);
    }
  }
}

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

enum dce_gemm_status dce_avx512_dgemm(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
                                      int64_t ldb, double* c, int64_t ldc, int beta, const volatile int32_t* stop) {
  if (m <= 0 || n <= 0) return DCE_GEMM_DONE;
  if (k <= 0) {
    // The empty sum is +0 everywhere; adding it changes nothing.
    if (!beta) {
      for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(double));
    }
    return DCE_GEMM_DONE;
  }
  // Blocks of equal size (rounded up to whole micro-panels and 8 depth steps) rather than
  // full blocks and a small remainder: m = 256 runs as 2 × 128 rows, not 192 + 64, and
  // every A block reuses each B micro-panel as often as the others. The order of every
  // element's chain is the same either way.
  const int64_t kcStep = round_up((k + (k + KC - 1) / KC - 1) / ((k + KC - 1) / KC), 8);
  const int64_t mcStep = round_up((m + (m + MC - 1) / MC - 1) / ((m + MC - 1) / MC), MR);
  const int64_t kcMax = k < kcStep ? k : kcStep;
  const int64_t ncMax = round_up(n < NC ? n : NC, NR);
  struct pack_buffers* buf = dce_pack_buffers((size_t)(mcStep * kcMax), (size_t)(ncMax * kcMax));
  if (buf == NULL) return DCE_GEMM_NO_MEMORY;
  double* apack = buf->a;
  double* bpack = buf->b;
  enum dce_gemm_status status = DCE_GEMM_DONE;
  for (int64_t jc = 0; jc < n && status == DCE_GEMM_DONE; jc += NC) {
    const int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k && status == DCE_GEMM_DONE; pc += kcStep) {
      const int64_t kc = k - pc < kcStep ? k - pc : kcStep;
      pack_b(kc, nc, b + pc * ldb + jc, ldb, bpack);
      for (int64_t ic = 0; ic < m; ic += mcStep) {
        if (stop != NULL && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0) {
          status = DCE_GEMM_STOPPED;
          break;
        }
        const int64_t mc = m - ic < mcStep ? m - ic : mcStep;
        pack_a(mc, kc, a + ic * lda + pc, lda, apack);
        // Depth blocks after the first continue each element's chain from C.
        macro_kernel(mc, nc, kc, apack, bpack, c + ic * ldc + jc, ldc, beta || pc > 0);
      }
    }
  }
  return status;
}

#else

int dce_avx512_supported(void) { return 0; }

enum dce_gemm_status dce_avx512_dgemm(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
                                      int64_t ldb, double* c, int64_t ldc, int beta, const volatile int32_t* stop) {
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)c, (void)ldc, (void)beta, (void)stop;
  return DCE_GEMM_NO_MEMORY;
}

#endif
