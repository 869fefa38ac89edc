import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { checkGemmShape } from "./shape.js";
import { KernelStoppedError, KernelUnavailableError, packageRootUrl } from "./support.js";
import type { Kernel, StopFlag } from "./types.js";

/** Registry name of the OpenBLAS kernel. */
export const nativeBlasName = "native-blas";

/** The exports of native/dce_blas.c. */
interface BlasAddon {
  /** `C = A × B + beta·C`, row-major with leading dimensions; `beta` is 0 or 1. */
  dgemm(
    m: number,
    n: number,
    k: number,
    a: Float64Array,
    lda: number,
    b: Float64Array,
    ldb: number,
    c: Float64Array,
    ldc: number,
    beta: 0 | 1,
  ): void;
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
        "the addon is not built (install OpenBLAS, e.g. `apt-get install libopenblas-dev`, then run `npm rebuild @dce/worker`, or `pnpm --filter @dce/worker build:native` in the dce repository)",
      );
    } else {
      try {
        const loaded = createRequire(import.meta.url)(nativeBlasAddonPath) as BlasAddon;
        if (typeof loaded.dgemm !== "function") {
          throw new Error(
            "it was built from an older dce_blas.c (no dgemm); rebuild it with `npm rebuild @dce/worker` (`pnpm --filter @dce/worker build:native` in the dce repository)",
          );
        }
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
 * Version of how this module drives OpenBLAS, part of the fingerprint. 2: products are
 * cut into panels ({@link nativeBlasPanels}), which changes the summation order of
 * products deeper than one panel.
 */
const driverVersion = 2;

/** Depth (k) of one panel: long products are summed 256 terms at a time. */
const panelDepth = 256;
/**
 * Most multiply-adds in one panel: 2^30, about 45 ms on one core at 48 GFLOP/s. A
 * stop request waits for at most one panel; deeper panels would make it slower, and
 * shorter rows would have OpenBLAS pack B again more often.
 */
const panelMadds = 2 ** 30;

/** How {@link nativeBlasPanels} cuts a product: panels of `rows × n × depth`, the last ones of each kind shorter. */
export interface PanelPlan {
  /** Rows of A and C per panel (all `m` when the product is not cut by rows). */
  readonly rows: number;
  /** Terms of each sum per panel (all `k` when the product is not cut by depth). */
  readonly depth: number;
}

/**
 * How the `native-blas` kernel cuts an `m × n × k` product into panels, between which it
 * checks its stop flag: depth at most {@link panelDepth}, and rows so that a panel has at
 * most {@link panelMadds} multiply-adds; each dimension in equal parts (the last one
 * shorter). A function of the shape alone, never of timing, so the same shape is always
 * summed in the same order and its bits are the same on every run.
 */
export function nativeBlasPanels(m: number, n: number, k: number): PanelPlan {
  const depthParts = Math.max(1, Math.ceil(k / panelDepth));
  const depth = Math.ceil(k / depthParts);
  const maxRows = Math.max(1, Math.floor(panelMadds / (Math.max(1, n) * Math.max(1, depth))));
  const rowParts = Math.max(1, Math.ceil(m / maxRows));
  return { rows: Math.ceil(m / rowParts), depth };
}

/**
 * `c = a × b` panel by panel (see {@link nativeBlasPanels}): row panels in order, and in
 * each the depth panels in ascending k, each added to the sums of the ones before.
 */
function product(
  blas: BlasAddon,
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  b: Float64Array,
  ldb: number,
  c: Float64Array,
  stop: StopFlag | undefined,
): void {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    c.fill(0, 0, m * n); // the empty sum is +0
    return;
  }
  const { rows, depth } = nativeBlasPanels(m, n, k);
  for (let i0 = 0; i0 < m; i0 += rows) {
    const mi = Math.min(rows, m - i0);
    for (let p0 = 0; p0 < k; p0 += depth) {
      // The only check: a stop waits for at most one panel (the pool also terminates the
      // thread, which cannot interrupt OpenBLAS itself).
      if (stop !== undefined && Atomics.load(stop, 0) !== 0) throw new KernelStoppedError(nativeBlasName);
      const kp = Math.min(depth, k - p0);
      blas.dgemm(mi, n, kp, a.subarray(i0 * k + p0), k, b.subarray(p0 * ldb), ldb, c.subarray(i0 * n), n, p0 === 0 ? 0 : 1);
    }
  }
}

/**
 * Creates the `native-blas` kernel: OpenBLAS `cblas_dgemm` through a Node-API addon,
 * built from `native/dce_blas.c` when the machine has OpenBLAS (optional). A product is
 * computed in panels ({@link nativeBlasPanels}) so that a `stop` request is seen within
 * one panel (tens of milliseconds), never a whole tile later.
 *
 * OpenBLAS picks its summation order by CPU kernel and by problem shape, so a product's
 * bits can change with `m` and `n` (the tile shape) and with the OpenBLAS build or CPU,
 * but not between calls with the same inputs; the panels depend on the shape only. The
 * fingerprint therefore names both, after the driver version:
 * `native-blas/2/<openblas_get_config()>/<openblas_get_corename()>`, e.g.
 * `native-blas/2/OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64/Cooperlake`.
 * A job pins one fingerprint and its tiles are cut from the spec, so every tile of a
 * job is computed with the same shape and library whoever computes it.
 *
 * @throws KernelUnavailableError if the addon was not built, is out of date or cannot load.
 */
export function createNativeBlasKernel(): Kernel {
  const blas = loadAddon();
  return {
    name: nativeBlasName,
    fingerprint: `${nativeBlasName}/${driverVersion}/${blas.config().trim()}/${blas.corename().trim()}`,
    gemm(m, n, k, a, b, c, stop) {
      checkGemmShape(m, n, k, a, b, c);
      product(blas, m, n, k, a, b, n, c, stop);
    },
    gemmStrided(m, n, k, a, b, ldb, c, stop) {
      checkGemmShape(m, n, k, a, new Float64Array(0), c, { b, ldb });
      product(blas, m, n, k, a, b, ldb, c, stop);
    },
  };
}
