// Argument reading shared by the two Node-API addons; see napi_args.h.
#include "napi_args.h"

#include <stdbool.h>
#include <stdio.h>

// Largest dimension cblas_dgemm takes with 32-bit blasint (and the limit of both addons).
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

int read_dgemm_args(napi_env env, const napi_value* argv, struct dgemm_args* out) {
  if (!get_dim(env, argv[0], "m", &out->m) || !get_dim(env, argv[1], "n", &out->n) ||
      !get_dim(env, argv[2], "k", &out->k) || !get_dim(env, argv[4], "lda", &out->lda) ||
      !get_dim(env, argv[6], "ldb", &out->ldb) || !get_dim(env, argv[8], "ldc", &out->ldc)) {
    return 0;
  }
  double beta;
  if (napi_get_value_double(env, argv[9], &beta) != napi_ok || (beta != 0.0 && beta != 1.0)) {
    napi_throw_range_error(env, NULL, "beta must be 0 or 1");
    return 0;
  }
  out->beta = beta == 1.0;
  const int64_t m = out->m, n = out->n, k = out->k;
  // BLAS requires every leading dimension to be at least max(1, row length).
  if (out->lda < (k > 1 ? k : 1) || out->ldb < (n > 1 ? n : 1) || out->ldc < (n > 1 ? n : 1)) {
    napi_throw_range_error(env, NULL, "lda must be >= max(1, k), ldb and ldc >= max(1, n)");
    return 0;
  }
  // An empty row (k = 0 for A, n = 0 for B and C) needs no elements, whatever the stride.
  const int64_t a_need = m == 0 || k == 0 ? 0 : (m - 1) * out->lda + k;
  const int64_t b_need = k == 0 || n == 0 ? 0 : (k - 1) * out->ldb + n;
  const int64_t c_need = m == 0 || n == 0 ? 0 : (m - 1) * out->ldc + n;
  return get_f64(env, argv[3], "a", a_need, &out->a) && get_f64(env, argv[5], "b", b_need, &out->b) &&
         get_f64(env, argv[7], "c", c_need, &out->c);
}

napi_value string_result(napi_env env, const char* s) {
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, s == NULL ? "" : s, NAPI_AUTO_LENGTH, &out));
  return out;
}
