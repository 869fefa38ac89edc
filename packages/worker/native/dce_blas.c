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
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(env, call)                                       \
  do {                                                         \
    if ((call) != napi_ok) {                                   \
      napi_throw_error((env), NULL, "dce_blas: " #call " failed"); \
      return NULL;                                             \
    }                                                          \
  } while (0)

// Largest dimension cblas_dgemm takes with 32-bit blasint.
#define MAX_DIM 2147483647.0

static int get_dim(napi_env env, napi_value v, const char* label, int64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= MAX_DIM) || d != (double)(int64_t)d) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a non-negative integer below 2^31", label);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

static int get_f64(napi_env env, napi_value v, const char* label, int64_t need, double** out) {
  napi_typedarray_type type;
  size_t length;
  void* data;
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a Float64Array", label);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  if ((int64_t)length < need) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s has %zu elements, needs %lld", label, length, (long long)need);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = (double*)data;
  return 1;
}

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
  int64_t m, n, k, lda, ldb, ldc;
  if (!get_dim(env, argv[0], "m", &m) || !get_dim(env, argv[1], "n", &n) || !get_dim(env, argv[2], "k", &k) ||
      !get_dim(env, argv[4], "lda", &lda) || !get_dim(env, argv[6], "ldb", &ldb) || !get_dim(env, argv[8], "ldc", &ldc)) {
    return NULL;
  }
  double beta;
  if (napi_get_value_double(env, argv[9], &beta) != napi_ok || (beta != 0.0 && beta != 1.0)) {
    napi_throw_range_error(env, NULL, "beta must be 0 or 1");
    return NULL;
  }
  // BLAS requires every leading dimension to be at least max(1, row length).
  if (lda < (k > 1 ? k : 1) || ldb < (n > 1 ? n : 1) || ldc < (n > 1 ? n : 1)) {
    napi_throw_range_error(env, NULL, "lda must be >= max(1, k), ldb and ldc >= max(1, n)");
    return NULL;
  }
  int64_t a_need = m == 0 ? 0 : (m - 1) * lda + k;
  int64_t b_need = k == 0 ? 0 : (k - 1) * ldb + n;
  int64_t c_need = m == 0 ? 0 : (m - 1) * ldc + n;
  double *a, *b, *c;
  if (!get_f64(env, argv[3], "a", a_need, &a) || !get_f64(env, argv[5], "b", b_need, &b) ||
      !get_f64(env, argv[7], "c", c_need, &c)) {
    return NULL;
  }
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    // The empty sum is +0 everywhere; adding it changes nothing.
    if (beta == 0.0) {
      for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(double));
    }
    return NULL;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)lda, b,
              (blasint)ldb, beta, c, (blasint)ldc);
  return NULL;
}

static napi_value string_result(napi_env env, const char* s) {
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, s == NULL ? "" : s, NAPI_AUTO_LENGTH, &out));
  return out;
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
