"""Dask distributed beside dce in `pnpm bench` (driven by bench/dask.mjs).

A LocalCluster of 2 worker processes x 1 thread is started before any timing, as the
dce cluster is. Each timed job starts from NumPy arrays in this (the client) process,
wraps them with `da.from_array`, runs `(A @ B).compute()` and ends with C as a NumPy
array here: submit -> result in the client. Several chunkings are tried per size; the
caller reports the fastest and names it.

Input: one JSON object as argv[1]: {"sizes": [...], "repeat": R, "chunkings": [...],
"latency": COUNT}. Output on stdout, one JSON object per line:
  {"pids": [...]}                      the cluster's worker processes, as soon as they run
  {"result": {...}}                    every figure, at the end
Progress goes to stderr.
"""

import json
import os
import sys
import time


def log(msg):
    sys.stderr.write(f"  dask: {msg}\n")
    sys.stderr.flush()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def chunks_for(name, n):
    """Chunk shapes of A and B for one named chunking of an n x n product."""
    if name == "rows2":  # A in 2 row panels, B whole: one panel product per worker
        return (n // 2 + n % 2, n), (n, n)
    if name.endswith("x"):  # square blocks: "2x" is a 2x2 grid, "4x" a 4x4 grid
        parts = int(name[:-1])
        c = -(-n // parts)
        return (c, c), (c, c)
    raise ValueError(f"unknown chunking {name!r} (rows2, 2x, 4x, ...)")


def blas_core():
    """OpenBLAS's build and the core type it runs with in this process (it honours OPENBLAS_CORETYPE)."""
    import ctypes
    import ctypes.util

    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas") or ""):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return f"{lib.openblas_get_config().decode().strip()}; core {lib.openblas_get_corename().decode()}"
        except (OSError, AttributeError):
            continue
    return "unknown"


def percentile(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))]


def main():
    cfg = json.loads(sys.argv[1])
    import dask
    import dask.array as da
    import distributed
    import numpy as np
    from distributed import Client, LocalCluster

    versions = {"dask": dask.__version__, "distributed": distributed.__version__, "numpy": np.__version__}

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(2)
        emit({"pids": sorted(client.run(os.getpid).values())})
        # What the workers' BLAS runs as (the same on both: same environment).
        versions["blas"] = sorted(set(client.run(blas_core).values()))
        result = {"versions": versions, "sizes": {}, "env": {
            k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
        }}

        def one(a, b, ca, cb):
            t = time.perf_counter()
            c = (da.from_array(a, chunks=ca) @ da.from_array(b, chunks=cb)).compute()
            return time.perf_counter() - t, c

        # Warm-up: workers import NumPy and load BLAS before anything is timed.
        w = np.random.default_rng(7).standard_normal((300, 300))
        one(w, w, (150, 300), (300, 300))

        for n in cfg["sizes"]:
            inputs = []
            for r in range(cfg["repeat"]):
                rng = np.random.default_rng(n * 10 + r)
                inputs.append((rng.standard_normal((n, n)), rng.standard_normal((n, n))))
            per = {}
            for name in cfg["chunkings"]:
                ca, cb = chunks_for(name, n)
                secs = []
                for a, b in inputs:
                    s, c = one(a, b, ca, cb)
                    # A cheap check that C is the product (64 entries against dot products).
                    idx = np.random.default_rng(1).integers(0, n, size=(64, 2))
                    want = np.einsum("ij,ji->i", a[idx[:, 0]], b[:, idx[:, 1]])
                    if not np.allclose(c[idx[:, 0], idx[:, 1]], want, rtol=1e-10, atol=1e-9):
                        raise RuntimeError(f"dask n={n} chunking {name}: wrong result")
                    secs.append(s)
                per[name] = {"seconds": min(secs), "all": secs, "chunksA": ca, "chunksB": cb}
                log(f"n={n} chunking {name}: best {min(secs):.3f} s")
            best = min(per, key=lambda k: per[k]["seconds"])
            result["sizes"][str(n)] = {"best": best, "seconds": per[best]["seconds"], "chunkings": per}

        if cfg.get("latency", 0) > 0:
            lat = []
            for i in range(cfg["latency"] + 5):
                rng = np.random.default_rng(1000 + i)
                a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
                s, c = one(a, b, (64, 64), (64, 64))
                if i >= 5:  # the first few warm the graph path
                    lat.append(s * 1000)
                if i == 5 and not np.allclose(c, a @ b):
                    raise RuntimeError("dask 64x64: wrong result")
            result["latency"] = {
                "count": len(lat),
                "p50Ms": percentile(lat, 50),
                "p99Ms": percentile(lat, 99),
            }
            log(f"latency 64x64: p50 {result['latency']['p50Ms']:.2f} ms, p99 {result['latency']['p99Ms']:.2f} ms")
        emit({"result": result})
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
