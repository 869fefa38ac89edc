{
  "variables": {
    # 0 builds only dce_avx512 (no OpenBLAS needed); scripts/build-native.mjs retries
    # with it when the OpenBLAS addon cannot be built.
    "with_openblas%": 1
  },
  "targets": [
    {
      "target_name": "dce_avx512",
      "sources": ["dce_avx512.c", "gemm_avx512.c", "pack_buffers.c", "napi_args.c"],
      "defines": ["NAPI_VERSION=8"],
      # No contraction: the arithmetic is exactly the intrinsics written (the summation
      # order is part of the kernel's fingerprint).
      "cflags": ["-O2", "-Wall", "-Wextra", "-ffp-contract=off"]
    }
  ],
  "conditions": [
    [
      "with_openblas==1",
      {
        "targets": [
          {
            "target_name": "dce_blas",
            "sources": ["dce_blas.c", "napi_args.c"],
            "defines": ["NAPI_VERSION=8"],
            "cflags": ["-O2", "-Wall", "-Wextra"],
            "libraries": ["-lopenblas"]
          }
        ]
      }
    ]
  ]
}
