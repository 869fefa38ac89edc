// The native-blas kernel: a Node-API addon around OpenBLAS cblas_dgemm.
//
// Built by scripts/build-native.mjs (node-gyp) when the system has OpenBLAS
// (Debian: libopenblas-dev); optional, so the worker runs without it. Plain Node-API
// (no C++ wrapper): ABI-stable across Node.js versions, and context-aware by
// construction (NAPI_MODULE_INIT keeps no global JavaScript state), so every
// worker_threads thread can load it.
//
// Exports:
//   gemm(m, n, k, a, b, c)  c = a × b, row-major Float64Arrays, c overwritten
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

// gemm(m, n, k, a, b, c[, ldb]): c (m x n) = a (m x k) * b, where b is k rows of stride
// ldb (default n) of which the first n columns are used: a column panel of a wider B is
// read in place, without a copy.
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6 && argc != 7) {
    napi_throw_type_error(env, NULL, "gemm(m, n, k, a, b, c[, ldb]) takes 6 or 7 arguments");
    return NULL;
  }
  int64_t m, n, k, ldb;
  double *a, *b, *c;
  if (!get_dim(env, argv[0], "m", &m) || !get_dim(env, argv[1], "n", &n) || !get_dim(env, argv[2], "k", &k)) return NULL;
  ldb = n;
  if (argc == 7 && !get_dim(env, argv[6], "ldb", &ldb)) return NULL;
  if (ldb < n) {
    napi_throw_range_error(env, NULL, "ldb must be at least n");
    return NULL;
  }
  int64_t b_need = k == 0 ? 0 : (k - 1) * ldb + n;
  if (!get_f64(env, argv[3], "a", m * k, &a) || !get_f64(env, argv[4], "b", b_need, &b) ||
      !get_f64(env, argv[5], "c", m * n, &c)) {
    return NULL;
  }
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    // BLAS requires lda >= 1; the empty sum is +0 everywhere.
    memset(c, 0, (size_t)(m * n) * sizeof(double));
    return NULL;
  }
  if (ldb < 1) ldb = 1;
  // beta = 0: BLAS writes C without reading it (NaN already in C does not leak through).
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)k, b,
              (blasint)ldb, 0.0, c, (blasint)n);
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
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, config, NULL, NULL, NULL, napi_enumerable, NULL},
      {"corename", NULL, corename, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"numThreads", NULL, num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
