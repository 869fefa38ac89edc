// Per-thread packing buffers for the native-avx512 kernel (gemm_avx512.c), kept between
// calls and freed when the thread exits.
#ifndef DCE_PACK_BUFFERS_H
#define DCE_PACK_BUFFERS_H

#include <stddef.h>

struct pack_buffers {
  double* a;     // packed block of A, 64-byte aligned
  size_t a_len;  // its capacity, in doubles
  double* b;     // packed block of B, 64-byte aligned (2 MiB aligned from 2 MiB on)
  size_t b_len;
};

// The calling thread's buffers, grown to hold at least a_len and b_len doubles; NULL when
// memory runs out (the thread's buffers are then left as they were). They are reused by
// the thread's next call, so they hold at most the largest blocks it has packed (for
// gemm_avx512.c: MC·KC + KC·NC doubles, about 8.4 MiB), and are freed at thread exit.
struct pack_buffers* dce_pack_buffers(size_t a_len, size_t b_len);

#endif
