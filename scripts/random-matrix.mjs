// Reproducible test data for the scripts and the benchmark (the engine never sees the generator).

/** A rows × cols float64 matrix with values in [-1, 1), from xorshift32 seeded with `seed`. */
export function randomMatrix(rows, cols, seed) {
  let x = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = (x / 0x100000000) * 2 - 1;
  }
  return { rows, cols, data };
}
