// The native-avx512 kernel's Node-API addon: our own AVX-512 GEMM (gemm_avx512.c), with
// no BLAS library behind it.
//
// Built by scripts/build-native.mjs (node-gyp) next to the OpenBLAS addon, but without
// OpenBLAS: it builds wherever a C compiler and the Node.js headers are. The AVX-512 code
// is compiled for that target by function attribute, so the addon loads on any CPU, and
// `supported()` tells whether this one can run the kernel. Plain Node-API, context-aware
// (no global JavaScript state): every worker_threads thread can load it.
//
// Exports:
//   dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta, stop)
//                  C = A × B (+ C when beta is 1), row-major, strided. `stop` is an
//                  Int32Array (over a SharedArrayBuffer) whose element 0 is read between
//                  blocks, or null. Returns true when done, false when stopped.
//   supported()    true when this CPU has AVX-512F/DQ/VL and FMA
//   shape()        micro-kernel and blocking, e.g. "8x24 kc256 mc192 nc4080"
#include <node_api.h>
#include <stdbool.h>

#include "gemm_avx512.h"
#include "napi_args.h"

// Reads the optional stop flag: null/undefined, or an Int32Array of at least one element.
static int get_stop(napi_env env, napi_value v, const volatile int32_t** out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    *out = NULL;
    return 1;
  }
  napi_typedarray_type type;
  size_t length;
  void* data;
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_int32_array ||
      length < 1) {
    napi_throw_type_error(env, NULL, "stop must be an Int32Array of at least one element, or null");
    return 0;
  }
  *out = (const volatile int32_t*)data;
  return 1;
}

// dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta, stop): see the header comment and
// gemm_avx512.h (every element of C is one FMA chain over k in ascending order).
static napi_value dgemm(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 11) {
    napi_throw_type_error(env, NULL, "dgemm(m, n, k, a, lda, b, ldb, c, ldc, beta, stop) takes 11 arguments");
    return NULL;
  }
  struct dgemm_args g;
  const volatile int32_t* stop;
  if (!read_dgemm_args(env, argv, &g) || !get_stop(env, argv[10], &stop)) return NULL;
  if (!dce_avx512_supported()) {
    napi_throw_error(env, NULL, "native-avx512: this CPU lacks AVX-512F/DQ/VL or FMA");
    return NULL;
  }
  const enum dce_gemm_status status =
      dce_avx512_dgemm(g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc, g.beta, stop);
  if (status == DCE_GEMM_NO_MEMORY) {
    napi_throw_error(env, NULL, "native-avx512: cannot allocate the packing buffers");
    return NULL;
  }
  napi_value out;
  CHECK(env, napi_get_boolean(env, status == DCE_GEMM_DONE, &out));
  return out;
}

static napi_value supported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(env, napi_get_boolean(env, dce_avx512_supported() != 0, &out));
  return out;
}

static napi_value shape(napi_env env, napi_callback_info info) {
  (void)info;
  char text[64];
  dce_avx512_shape(text, sizeof text);
  return string_result(env, text);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"dgemm", NULL, dgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"supported", NULL, supported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shape", NULL, shape, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
