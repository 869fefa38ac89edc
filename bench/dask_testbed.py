"""The Dask column of `pnpm bench:testbed` (driven by bench/testbed.mjs): the client side.

Runs in the test bed's client host against a `dask-scheduler` on the coordinator's host and
one `dask-worker` (1 process x 1 thread) on each worker host, so Dask's bytes cross the same
shaped links as dce's. Each timed job starts from NumPy arrays in this process, wraps them
with `da.from_array`, runs `(A @ B).compute()` and ends with C as a NumPy array here: submit
-> result in the client, as dce's client measures it. The inputs are made before the clock
starts and differ per job, so nothing is reused from an earlier job.

Input: one JSON object as argv[1]: {"scheduler": "tcp://HOST:PORT", "workers": P, "n": N,
"seed": S, "chunking": "2x"}. Output on stdout: one JSON line {"seconds": ..., "chunking": ...}
once the job's C was spot-checked. Progress goes to stderr.
"""

import json
import sys
import time

from dask_bench import chunks_for  # the chunkings `pnpm bench` names (rows2, 2x, 4x, ...)


def main():
    cfg = json.loads(sys.argv[1])
    import dask.array as da
    import numpy as np
    from distributed import Client

    client = Client(cfg["scheduler"], timeout=30)
    try:
        client.wait_for_workers(cfg["workers"], timeout=60)
        n = cfg["n"]
        # Warm-up: workers import NumPy and load BLAS before anything is timed.
        w = np.random.default_rng(7).standard_normal((256, 256))
        (da.from_array(w, chunks=(128, 128)) @ da.from_array(w, chunks=(128, 128))).compute()
        rng = np.random.default_rng(cfg["seed"])
        a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        ca, cb = chunks_for(cfg["chunking"], n)
        t = time.perf_counter()
        c = (da.from_array(a, chunks=ca) @ da.from_array(b, chunks=cb)).compute()
        seconds = time.perf_counter() - t
        idx = np.random.default_rng(1).integers(0, n, size=(64, 2))
        want = np.einsum("ij,ji->i", a[idx[:, 0]], b[:, idx[:, 1]])
        if not np.allclose(c[idx[:, 0], idx[:, 1]], want, rtol=1e-10, atol=1e-9):
            raise RuntimeError(f"dask n={n} chunking {cfg['chunking']}: wrong result")
        sys.stdout.write(json.dumps({"seconds": seconds, "chunking": cfg["chunking"]}) + "\n")
        sys.stdout.flush()
    finally:
        client.close()


if __name__ == "__main__":
    main()
