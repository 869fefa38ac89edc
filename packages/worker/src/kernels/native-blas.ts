import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { Kernel } from "./kernel.js";
import { checkGemmShape } from "./shape.js";
import { KernelUnavailableError, packageRootUrl } from "./support.js";

/** Registry name of the OpenBLAS kernel. */
export const nativeBlasName = "native-blas";

/** The exports of native/dce_blas.c. */
interface BlasAddon {
  gemm(m: number, n: number, k: number, a: Float64Array, b: Float64Array, c: Float64Array, ldb?: number): void;
  config(): string;
  corename(): string;
  setNumThreads(threads: number): void;
  numThreads(): number;
}

/** Where `scripts/build-native.mjs` (node-gyp) puts the addon. */
export const nativeBlasAddonPath: string = fileURLToPath(new URL("native/build/Release/dce_blas.node", packageRootUrl));

let addon: BlasAddon | KernelUnavailableError | undefined;

/**
 * Loads the addon once per thread (Node-API addons load in every worker thread) and
 * pins OpenBLAS to one thread: the worker's own threads are the parallelism, and one
 * BLAS thread per compute thread keeps each product's summation order fixed.
 */
function loadAddon(): BlasAddon {
  if (addon === undefined) {
    if (!existsSync(nativeBlasAddonPath)) {
      addon = new KernelUnavailableError(
        nativeBlasName,
        "the addon is not built (install OpenBLAS, e.g. `apt-get install libopenblas-dev`, then run `pnpm --filter @dce/worker build:native`)",
      );
    } else {
      try {
        const loaded = createRequire(import.meta.url)(nativeBlasAddonPath) as BlasAddon;
        loaded.setNumThreads(1);
        addon = loaded;
      } catch (e) {
        // e.g. "libopenblas.so.0: cannot open shared object file" after OpenBLAS was removed
        const message = e instanceof Error ? e.message : String(e);
        addon = new KernelUnavailableError(nativeBlasName, `cannot load ${nativeBlasAddonPath}: ${message}`, { cause: e });
      }
    }
  }
  if (addon instanceof KernelUnavailableError) throw addon;
  return addon;
}

/**
 * Creates the `native-blas` kernel: OpenBLAS `cblas_dgemm` through a Node-API addon,
 * built from `native/dce_blas.c` when the machine has OpenBLAS (optional).
 *
 * OpenBLAS picks its summation order by CPU kernel and by problem shape, so a product's
 * bits can change with `m` and `n` (the tile shape) and with the OpenBLAS build or CPU,
 * but not between calls with the same inputs. The fingerprint therefore names both:
 * `native-blas/<openblas_get_config()>/<openblas_get_corename()>`, e.g.
 * `native-blas/OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64/Cooperlake`.
 * A job pins one fingerprint and its tiles are cut from the spec, so every tile of a
 * job is computed with the same shape and library whoever computes it.
 *
 * @throws KernelUnavailableError if the addon was not built or cannot load.
 */
export function createNativeBlasKernel(): Kernel {
  const blas = loadAddon();
  return {
    name: nativeBlasName,
    fingerprint: `${nativeBlasName}/${blas.config().trim()}/${blas.corename().trim()}`,
    gemm(m, n, k, a, b, c) {
      checkGemmShape(m, n, k, a, b, c);
      blas.gemm(m, n, k, a, b, c);
    },
    gemmStrided(m, n, k, a, b, ldb, c) {
      checkGemmShape(m, n, k, a, new Float64Array(0), c, { b, ldb });
      blas.gemm(m, n, k, a, b, c, ldb);
    },
  };
}
