// The physical anchor of `pnpm bench`: NumPy on 2 cores (rows of A split over 2 threads,
// one BLAS thread each), with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset so OpenBLAS
// picks this CPU's own kernels.
import { execFileSync } from "node:child_process";

/** Best seconds per n over max(3, repeat) runs, keyed by String(n), or `{ note }`. */
export function numpyTimes(ns, repeat) {
  const py = `
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
out = {}
pool = ThreadPoolExecutor(2)
for n in ${JSON.stringify(ns)}:
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)); b = rng.standard_normal((n, n)); c = np.empty((n, n))
    h = n // 2
    def part(lo, hi):
        np.matmul(a[lo:hi], b, out=c[lo:hi])
    best = 1e9
    for _ in range(${Math.max(3, repeat)}):
        t = time.perf_counter()
        list(pool.map(lambda r: part(*r), [(0, h), (h, n)]))
        best = min(best, time.perf_counter() - t)
    out[str(n)] = best
print(json.dumps(out))
`;
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  try {
    return JSON.parse(execFileSync("python3", ["-c", py], { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  } catch (e) {
    return { note: `NumPy unavailable (${String(e.message).split("\n")[0]}); ratio column skipped` };
  }
}
