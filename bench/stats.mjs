// Small helpers of `pnpm bench`: order statistics and a spot check of a product.

/** The median of `xs` (the upper one of an even count). */
export function median(xs) {
  const s = [...xs].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)];
}

/** The `p`th percentile of `xs` (nearest rank). */
export function percentile(xs, p) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** Checks 64 random entries of C against dot products (catches a wrong or missing result). */
export function spotCheck(a, b, c) {
  if (c.rows !== a.rows || c.cols !== b.cols) throw new Error(`result is ${c.rows}x${c.cols}, expected ${a.rows}x${b.cols}`);
  const k = a.cols;
  let x = 12345;
  for (let t = 0; t < 64; t++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const i = x % a.rows;
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % b.cols;
    let s = 0;
    let mag = 0;
    for (let p = 0; p < k; p++) {
      s += a.data[i * k + p] * b.data[p * b.cols + j];
      mag += Math.abs(a.data[i * k + p] * b.data[p * b.cols + j]);
    }
    const got = c.data[i * b.cols + j];
    if (Math.abs(got - s) > 1e-12 * Math.max(1, mag)) throw new Error(`C[${i},${j}] = ${got}, expected ${s}`);
  }
}
