/**
 * Copies columns `[colStart, colEnd)` of a `rows × cols` row-major matrix into a new
 * `rows × (colEnd - colStart)` row-major array. Always a fresh buffer, even for all
 * columns: the result is transferred to a kernel thread, which must never detach
 * the cached source.
 */
export function extractColumns(x: Float64Array, rows: number, cols: number, colStart: number, colEnd: number): Float64Array {
  const width = colEnd - colStart;
  if (width === cols) return x.slice(0, rows * cols);
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const from = r * cols + colStart;
    out.set(x.subarray(from, from + width), r * width);
  }
  return out;
}
