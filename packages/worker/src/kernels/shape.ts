/**
 * Checks that the arrays are long enough for an `m × k` by `k × n` product.
 *
 * @throws RangeError naming the first array that is too short or a shape that is not a
 *   non-negative integer.
 */
export function checkGemmShape(
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  b: Float64Array,
  c: Float64Array,
  strided?: { readonly b: Float64Array; readonly ldb: number },
): void {
  for (const [label, v] of [
    ["m", m],
    ["n", n],
    ["k", k],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${label} must be a non-negative integer, got ${v}`);
  }
  if (a.length < m * k) throw new RangeError(`a has ${a.length} elements, needs m*k = ${m * k}`);
  if (strided !== undefined) {
    const { ldb } = strided;
    if (!Number.isSafeInteger(ldb) || ldb < n) throw new RangeError(`ldb must be an integer of at least n = ${n}, got ${ldb}`);
    const need = k === 0 ? 0 : (k - 1) * ldb + n;
    if (strided.b.length < need) throw new RangeError(`b has ${strided.b.length} elements, needs (k-1)*ldb+n = ${need}`);
  } else if (b.length < k * n) throw new RangeError(`b has ${b.length} elements, needs k*n = ${k * n}`);
  if (c.length < m * n) throw new RangeError(`c has ${c.length} elements, needs m*n = ${m * n}`);
}
