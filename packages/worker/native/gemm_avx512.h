// The native-avx512 kernel's C interface: a packed, cache-blocked float64 GEMM with an
// AVX-512 FMA micro-kernel (gemm_avx512.c), free of any Node.js or BLAS dependency.
#ifndef DCE_GEMM_AVX512_H
#define DCE_GEMM_AVX512_H

#include <stddef.h>
#include <stdint.h>

// Outcome of dce_avx512_dgemm.
enum dce_gemm_status {
  DCE_GEMM_DONE = 0,     // C holds the product
  DCE_GEMM_STOPPED = 1,  // *stop became non-zero; C holds a partial product
  DCE_GEMM_NO_MEMORY = 2 // the packing buffers could not be allocated; C is untouched
};

// 1 when this CPU runs the AVX-512F/DQ/VL and FMA instructions the kernel uses
// (__builtin_cpu_supports), 0 otherwise; the kernel must not be called then.
int dce_avx512_supported(void);

// Writes the micro-kernel and block sizes, e.g. "8x24 kc256 mc192 nc4080", for the
// fingerprint (truncated to size - 1 characters).
void dce_avx512_shape(char* out, size_t size);

// C = A × B (beta 0) or C = C + A × B (beta 1), row-major: A is m rows of stride lda, B is
// k rows of stride ldb, C is m rows of stride ldc. Every element of C is one fused
// multiply-add chain over k in ascending order, starting from +0 (beta 0) or from C
// (beta 1): its bits depend on its row of A and column of B only, never on m, n, the
// blocking or where the element sits. `stop`, when not NULL, is read (relaxed atomic)
// before each block of at most MC·NC·KC multiply-adds (about 2·10^8, a few ms); once non-zero the call returns
// DCE_GEMM_STOPPED. The packing buffers belong to the calling thread and are kept for its
// next call (at most MC·KC + KC·NC doubles, about 8.4 MiB), freed when the thread exits.
enum dce_gemm_status dce_avx512_dgemm(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
                                      int64_t ldb, double* c, int64_t ldc, int beta, const volatile int32_t* stop);

#endif
