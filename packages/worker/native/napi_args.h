// Argument reading shared by the two Node-API addons (dce_blas.c, dce_avx512.c): the
// dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta) call both export, checked the same way.
#ifndef DCE_NAPI_ARGS_H
#define DCE_NAPI_ARGS_H

#include <node_api.h>
#include <stdint.h>

#define CHECK(env, call)                                       \
  do {                                                         \
    if ((call) != napi_ok) {                                   \
      napi_throw_error((env), NULL, "dce: " #call " failed");  \
      return NULL;                                             \
    }                                                          \
  } while (0)

// A checked dgemm call: C = A × B + beta·C, row-major, where A is m rows of stride lda,
// B is k rows of stride ldb and C is m rows of stride ldc.
struct dgemm_args {
  int64_t m, n, k, lda, ldb, ldc;
  double* a;
  double* b;
  double* c;
  int beta;
};

// Reads argv[0..9] = (m, n, k, a, lda, b, ldb, c, ldc, beta) into *out. Returns 1, or 0
// after throwing a RangeError / TypeError on the JavaScript side: a dimension that is not
// a non-negative integer below 2^31, a leading dimension below max(1, row length), an
// array that is not a Float64Array or is shorter than its shape, beta other than 0 or 1.
int read_dgemm_args(napi_env env, const napi_value* argv, struct dgemm_args* out);

// Returns a JavaScript string (the empty string for NULL), or NULL after throwing.
napi_value string_result(napi_env env, const char* s);

#endif
