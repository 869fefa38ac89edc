// Reproducible test data: the one xorshift32 generator that the tests, the scripts and
// the benchmark share (published as `@dce/core/testing`). The engine never sees it.
// Its values are pinned by random-matrix.test.ts: tests and benches compare against them.

/** A dense row-major float64 matrix, as the tests and the SDK take it. */
export interface RandomMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/** One xorshift32 step (shifts 13, 17, 5) on an unsigned 32-bit state. */
function next(x: number): number {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

/** The state a seed starts from: its low 32 bits, with 0 (a fixed point) replaced by 1. */
function start(seed: number): number {
  return seed >>> 0 || 1;
}

/** The first `n` words of the xorshift32 stream seeded with `seed` (stand-ins for CSPRNG output in tests). */
export function xorshift32Words(n: number, seed: number): Uint32Array {
  let x = start(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    x = next(x);
    out[i] = x;
  }
  return out;
}

/** A rows × cols float64 matrix with values in [-1, 1): word `i` of the xorshift32 stream seeded with `seed`, scaled. */
export function randomMatrix(rows: number, cols: number, seed: number): RandomMatrix {
  let x = start(seed);
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    x = next(x);
    data[i] = (x / 0x100000000) * 2 - 1;
  }
  return { rows, cols, data };
}
