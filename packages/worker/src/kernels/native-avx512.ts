import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { checkGemmShape } from "./shape.js";
import { KernelStoppedError, KernelUnavailableError, packageRootUrl } from "./support.js";
import type { Kernel, StopFlag } from "./types.js";

/** Registry name of our own AVX-512 kernel. */
export const nativeAvx512Name = "native-avx512";

/** The exports of native/dce_avx512.c. */
interface Avx512Addon {
  /**
   * `C = A × B + beta·C`, row-major with leading dimensions; `beta` is 0 or 1. Reads
   * `stop[0]` before each block; returns false (C partial) once it is non-zero.
   */
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
    stop: StopFlag | null,
  ): boolean;
  /** True when this CPU has AVX-512F/DQ/VL and FMA. */
  supported(): boolean;
  /** Micro-kernel and blocking, e.g. `"8x24 kc256 mc192 nc4080"`. */
  shape(): string;
}

/** Where `scripts/build-native.mjs` (node-gyp) puts the addon. */
export const nativeAvx512AddonPath: string = fileURLToPath(new URL("native/build/Release/dce_avx512.node", packageRootUrl));

/**
 * Version of the kernel's arithmetic, part of the fingerprint. 1: every element of C is
 * one fused multiply-add chain over k in ascending order, from +0.
 */
const arithmeticVersion = 1;

let addon: Avx512Addon | KernelUnavailableError | undefined;

/** Loads the addon once per thread (Node-API addons load in every worker thread). */
function loadAddon(): Avx512Addon {
  if (addon === undefined) {
    if (!existsSync(nativeAvx512AddonPath)) {
      addon = new KernelUnavailableError(
        nativeAvx512Name,
        "the addon is not built (it needs a C compiler: run `npm rebuild @dce/worker`, or `pnpm --filter @dce/worker build:native` in the dce repository)",
      );
    } else {
      try {
        const loaded = createRequire(import.meta.url)(nativeAvx512AddonPath) as Avx512Addon;
        addon = loaded.supported()
          ? loaded
          : new KernelUnavailableError(nativeAvx512Name, "this CPU lacks AVX-512F/DQ/VL or FMA");
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        addon = new KernelUnavailableError(nativeAvx512Name, `cannot load ${nativeAvx512AddonPath}: ${message}`, {
          cause: e,
        });
      }
    }
  }
  if (addon instanceof KernelUnavailableError) throw addon;
  return addon;
}

/**
 * Creates the `native-avx512` kernel: our own GEMM for x86-64 CPUs with AVX-512
 * (`native/gemm_avx512.c`), in the style of GotoBLAS/BLIS: A and B packed into
 * micro-panels, cache blocking, and an 8 × 24 register-blocked FMA micro-kernel. It needs
 * no BLAS library, only the addon built from `native/dce_avx512.c`.
 *
 * Every element of C is one fused multiply-add chain over k in ascending order, starting
 * from +0: its bits depend only on its row of A and column of B, never on the shape of
 * the product, the blocking, the tile it sits in, the thread or timing. The fingerprint
 * names the arithmetic version and the micro-kernel and block sizes,
 * `native-avx512/1/8x24 kc256 mc192 nc4080`.
 *
 * The addon reads the `stop` flag before each block of at most MC·NC·KC multiply-adds
 * (a few milliseconds), so a cancelled product stops burning CPU within one block.
 *
 * The registry offers it only after {@link selfCheckKernel} passed (`kernel.ts`).
 *
 * @throws KernelUnavailableError if the addon was not built or cannot load, or the CPU
 *   lacks AVX-512F/DQ/VL or FMA.
 */
export function createNativeAvx512Kernel(): Kernel {
  const lib = loadAddon();
  const product = (
    m: number,
    n: number,
    k: number,
    a: Float64Array,
    b: Float64Array,
    ldb: number,
    c: Float64Array,
    stop: StopFlag | undefined,
  ) => {
    if (!lib.dgemm(m, n, k, a, Math.max(1, k), b, Math.max(1, ldb), c, Math.max(1, n), 0, stop ?? null)) {
      throw new KernelStoppedError(nativeAvx512Name);
    }
  };
  return {
    name: nativeAvx512Name,
    fingerprint: `${nativeAvx512Name}/${arithmeticVersion}/${lib.shape()}`,
    gemm(m, n, k, a, b, c, stop) {
      checkGemmShape(m, n, k, a, b, c);
      product(m, n, k, a, b, n, c, stop);
    },
    gemmStrided(m, n, k, a, b, ldb, c, stop) {
      checkGemmShape(m, n, k, a, new Float64Array(0), c, { b, ldb });
      product(m, n, k, a, b, ldb, c, stop);
    },
  };
}
