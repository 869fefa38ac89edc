{
  "targets": [
    {
      "target_name": "dce_blas",
      "sources": ["dce_blas.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-lopenblas"]
    }
  ]
}
