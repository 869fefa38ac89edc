// The native-blas kernel: a Node-API addon around OpenBLAS cblas_dgemm.
//
// Built by scripts/build-native.mjs (node-gyp) when the system has OpenBLAS
// (Debian: libopenblas-dev); optional, so the worker runs without it. Plain Node-API
// (no C++ wrapper): ABI-stable across Node.js versions, and context-aware by
// construction (NAPI_MODULE_INIT keeps no global JavaScript state), so every
// worker_threads thread can load it.
//
// Exports:
//   dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta)
//                           C = A × B (+ C when beta is 1), row-major, strided
//   config()                openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH …"
//   corename()              openblas_get_corename(), the CPU kernel set in use
//   setNumThreads(n)        openblas_set_num_threads(n) (called with 1 at load)
//   numThreads()            openblas_get_num_threads()
#include <cblas.h>
#include <node_api.h>
#include <string.h>

#include "napi_args.h"

// dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta): C = A * B + beta * C, row-major, where A is
// m rows of stride lda, B is k rows of stride ldb and C is m rows of stride ldc, each
// Float64Array starting at its first element. beta must be 0 (C is written without being
// read: NaN already in C does not leak through) or 1 (the product is added to C). Any
// block of a larger product is such a call on subarrays, which is how native-blas.ts
// cuts a long product into panels (a stop request is checked between them).
static napi_value dgemm(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 10) {
    napi_throw_type_error(env, NULL, "dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta) takes 10 arguments");
    return NULL;
  }
  struct dgemm_args g;
  if (!read_dgemm_args(env, argv, &g)) return NULL;
  const int64_t m = g.m, n = g.n, k = g.k, ldc = g.ldc;
  double* c = g.c;
  const double beta = g.beta ? 1.0 : 0.0;
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    // The empty sum is +0 everywhere; adding it changes nothing.
    if (beta == 0.0) {
      for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(double));
    }
    return NULL;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, g.a, (blasint)g.lda,
              g.b, (blasint)g.ldb, beta, c, (blasint)ldc);
  return NULL;
}

static napi_value config(napi_env env, napi_callback_info info) {
  (void)info;
  return string_result(env, openblas_get_config());
}

static napi_value corename(napi_env env, napi_callback_info info) {
  (void)info;
  return string_result(env, openblas_get_corename());
}

static napi_value set_num_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t threads = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &threads) != napi_ok || threads < 1) {
    napi_throw_range_error(env, NULL, "setNumThreads(n) needs an integer n >= 1");
    return NULL;
  }
  openblas_set_num_threads(threads);
  return NULL;
}

static napi_value num_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(env, napi_create_int32(env, openblas_get_num_threads(), &out));
  return out;
}

NAPI_MODULE_INIT() {
  // One BLAS thread per compute thread: the worker's pool is the parallelism.
  openblas_set_num_threads(1);
  napi_property_descriptor props[] = {
      {"dgemm", NULL, dgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, config, NULL, NULL, NULL, napi_enumerable, NULL},
      {"corename", NULL, corename, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"numThreads", NULL, num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
