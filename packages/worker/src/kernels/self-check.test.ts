import { describe, expect, it } from "vitest";
import { avx512Unavailable } from "../test-support/avx512.js";
import { openblasInstalled } from "../test-support/openblas.js";
import { createKernel } from "./kernel.js";
import { createNativeAvx512Kernel } from "./native-avx512.js";
import { createNativeBlasKernel } from "./native-blas.js";
import { referenceKernel } from "./reference.js";
import { selfChecked, selfCheckKernel } from "./self-check.js";
import { KernelUnavailableError } from "./support.js";
import type { Kernel } from "./types.js";
import { createWasmSimdKernel } from "./wasm-simd.js";

/** The reference with its output rewritten: how a broken kernel is made for these tests. */
function broken(
  name: string,
  damage: (m: number, n: number, k: number, a: Float64Array, b: Float64Array, c: Float64Array) => void,
): Kernel {
  return {
    name,
    fingerprint: `${name}/test`,
    gemm(m, n, k, a, b, c) {
      referenceKernel.gemm(m, n, k, a, b, c);
      damage(m, n, k, a, b, c);
    },
  };
}

describe("selfCheckKernel", () => {
  it.each([
    ["reference", () => referenceKernel],
    ["wasm-simd (FMA where it runs)", () => createWasmSimdKernel()],
    ["wasm-simd (no FMA)", () => createWasmSimdKernel({ fma: false })],
  ])("passes an honest kernel: %s", (_, create) => {
    expect(selfCheckKernel(create())).toBeUndefined();
  });

  it.skipIf(!openblasInstalled)("passes native-blas", () => {
    expect(selfCheckKernel(createNativeBlasKernel())).toBeUndefined();
  });

  it.skipIf(avx512Unavailable !== undefined)(
    `passes native-avx512${avx512Unavailable === undefined ? "" : ` (skipped: ${avx512Unavailable})`}`,
    () => {
      expect(selfCheckKernel(createNativeAvx512Kernel())).toBeUndefined();
    },
  );

  it.each<[string, Kernel, RegExp]>([
    [
      "a relative error far above rounding in one element",
      broken("off", (_m, _n, _k, _a, _b, c) => {
        if (c.length > 40) c[40] = (c[40] as number) * (1 + 2 ** -30);
      }),
      /\(primes\): c\[\d+\]\[\d+\] = .*, the reference gives/,
    ],
    [
      "the last term of every sum dropped (an edge in k)",
      {
        name: "short-k",
        fingerprint: "short-k/test",
        gemm(m, n, k, a, b, c) {
          const a2 = Float64Array.from({ length: m * k }, (_, i) => (i % k === k - 1 ? 0 : (a[i] as number)));
          referenceKernel.gemm(m, n, k, a2, b, c);
        },
      },
      /^1×1×1 \(1×1×1\)/,
    ],
    [
      "rows past a multiple of 8 left wrong (an edge tile)",
      broken("edge", (m, n, _k, _a, _b, c) => {
        for (let i = m - (m % 8); i < m; i++) c[i * n] = 0.125;
      }),
      /c\[\d+\]\[0\] = 0\.125/,
    ],
    [
      "subnormal results flushed to zero",
      broken("ftz", (_m, _n, _k, _a, _b, c) => {
        for (let i = 0; i < c.length; i++) if (Math.abs(c[i] as number) < 2 ** -1022) c[i] = 0;
      }),
      /\(subnormal numbers\)/,
    ],
    [
      "NaN turned into zero",
      broken("nan", (_m, _n, _k, _a, _b, c) => {
        for (let i = 0; i < c.length; i++) if (Number.isNaN(c[i])) c[i] = 0;
      }),
      /\(NaN and ±Inf\)/,
    ],
    [
      "-Inf returned as +Inf",
      broken("inf", (_m, _n, _k, _a, _b, c) => {
        for (let i = 0; i < c.length; i++) if (c[i] === Number.NEGATIVE_INFINITY) c[i] = Number.POSITIVE_INFINITY;
      }),
      /\(NaN and ±Inf\)/,
    ],
    [
      "k = 0 leaves the output as it was",
      {
        name: "empty",
        fingerprint: "empty/test",
        gemm(m, n, k, a, b, c) {
          if (k > 0) referenceKernel.gemm(m, n, k, a, b, c);
        },
      },
      /3×5×0 \(k = 0\): c\[0\]\[0\] = NaN, the reference gives 0/,
    ],
    [
      "-0 instead of +0 for the empty sum",
      broken("neg-zero", (_m, _n, k, _a, _b, c) => {
        if (k === 0) c.fill(-0);
      }),
      /\(k = 0\): c\[0\]\[0\] = 0, the reference gives 0/,
    ],
    [
      "a different answer on the second call",
      (() => {
        let calls = 0;
        return broken("flaky", (_m, _n, _k, _a, _b, c) => {
          if (++calls === 2 && c.length > 0) c[0] = (c[0] as number) + 2 ** -60;
        });
      })(),
      /a second call gave other bits/,
    ],
    [
      "a throw on an awkward shape",
      broken("throws", (m) => {
        if (m === 97) throw new RangeError("no");
      }),
      /97×89×101 \(primes\) threw no/,
    ],
  ])("refuses a kernel with %s", (_, kernel, why) => {
    expect(selfCheckKernel(kernel)).toMatch(why);
  });

  it("refuses a gemmStrided that reads the wrong columns", () => {
    const kernel: Kernel = {
      ...referenceKernel,
      gemmStrided(m, n, k, a, b, _ldb, c) {
        referenceKernel.gemm(m, n, k, a, b, c); // ignores the stride
      },
    };
    expect(selfCheckKernel(kernel)).toMatch(/column panel of a 61-wide B: other bits than gemm/);
  });
});

describe("selfChecked", () => {
  it("returns a kernel that passes, and refuses one that does not with the worker's one-line reason", () => {
    expect(selfChecked(referenceKernel)).toBe(referenceKernel);
    const wrong = broken("native-avx512", (_m, _n, _k, _a, _b, c) => c.fill(1));
    expect(() => selfChecked(wrong)).toThrow(KernelUnavailableError);
    expect(() => selfChecked(wrong)).toThrow(
      /^native-avx512 unavailable: failed its start-up self-check: 1×1×1 \(1×1×1\): c\[0\]\[0\] = 1, the reference gives /,
    );
  });

  it.skipIf(avx512Unavailable !== undefined)("is what the registry offers native-avx512 through", () => {
    // The registry's instance is the checked one: it exists, so its check passed.
    expect(createKernel("native-avx512").fingerprint).toBe(createNativeAvx512Kernel().fingerprint);
  });
});
