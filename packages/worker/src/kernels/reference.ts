import { checkGemmShape } from "./shape.js";
import type { Kernel } from "./types.js";

/**
 * The reference kernel: plain TypeScript with a fixed summation order.
 *
 * Each output element is `c[i][j] = ((0 + a[i][0]*b[0][j]) + a[i][1]*b[1][j]) + …`,
 * summed in ascending `k` with one IEEE-754 double rounding per multiply and per add
 * (JavaScript has no fused multiply-add and never reassociates). The order does not
 * depend on `m` or `n`, so an element's bits are the same however the output is
 * tiled: that is what lets the coordinator assemble tiles from many workers into one
 * bit-reproducible result. NaN and ±Infinity propagate as IEEE-754 says.
 *
 * Pinned by `reference.test.ts` ("equals a naive triple loop bit for bit",
 * "tiling invariance").
 */
export const referenceKernel: Kernel = {
  name: "reference",
  fingerprint: "reference/1",
  gemm(m, n, k, a, b, c) {
    checkGemmShape(m, n, k, a, b, c);
    // i-k-j order: the inner loop walks rows of b and c contiguously (cache friendly),
    // while each c[i][j] still receives its k terms in ascending order.
    for (let i = 0; i < m; i++) {
      const cRow = i * n;
      c.fill(0, cRow, cRow + n);
      const aRow = i * k;
      for (let p = 0; p < k; p++) {
        const aip = a[aRow + p] as number;
        const bRow = p * n;
        for (let j = 0; j < n; j++) {
          c[cRow + j] = (c[cRow + j] as number) + aip * (b[bRow + j] as number);
        }
      }
    }
  },
};
