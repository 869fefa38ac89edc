// The contract every kernel implements. It sits apart from the registry (kernel.ts),
// which imports each implementation, so an implementation can name it without a circle.

/**
 * A float64 matrix-multiplication kernel: one implementation of `C = A × B`.
 *
 * Kernels run inside worker threads, so an implementation must be plain
 * synchronous code with no I/O. Every kernel must be deterministic: the same
 * inputs give the same bits on every call. Two kernels that can give different
 * bits for the same inputs must have different {@link Kernel.fingerprint}s,
 * because the coordinator only mixes tiles of one job from workers that share a
 * fingerprint.
 */
export interface Kernel {
  /** Registry name the coordinator asks for, e.g. `"reference"`. */
  readonly name: string;
  /**
   * Implementation fingerprint (name + version + CPU path), e.g. `"reference/1"`.
   * It changes whenever the kernel's results could change bit for bit.
   */
  readonly fingerprint: string;
  /**
   * Computes `c = a × b` and overwrites every element of `c`.
   *
   * @param m - Rows of `a` and `c`.
   * @param n - Columns of `b` and `c`.
   * @param k - Columns of `a`, rows of `b` (the summation length).
   * @param a - `m × k`, row-major.
   * @param b - `k × n`, row-major.
   * @param c - `m × n`, row-major; written, never read.
   * @param stop - Optional {@link StopFlag}: a kernel whose long products cannot be
   *   interrupted by terminating its thread (native code) checks it between panels of
   *   the product; the others ignore it. Checking never changes the result's bits.
   * @throws RangeError if an array is shorter than its shape needs, or
   *   KernelStoppedError once `stop` is set (`c` then holds a partial product).
   */
  gemm(m: number, n: number, k: number, a: Float64Array, b: Float64Array, c: Float64Array, stop?: StopFlag): void;
  /**
   * Optional: the same product with `b` a `k × ldb` row-major matrix of which the first
   * `n` columns are used (a column panel of a wider B, read in place). Must give the
   * same bits as {@link Kernel.gemm} on those columns copied out.
   */
  gemmStrided?(
    m: number,
    n: number,
    k: number,
    a: Float64Array,
    b: Float64Array,
    ldb: number,
    c: Float64Array,
    stop?: StopFlag,
  ): void;
}

/**
 * A request to stop a running product, shared between threads: an `Int32Array` over a
 * `SharedArrayBuffer` whose element 0 another thread sets to non-zero with
 * `Atomics.store` when the product is no longer wanted. It is never cleared: the
 * compute pool gives each kernel thread its own flag, and the thread is replaced after
 * a stop.
 */
export type StopFlag = Int32Array;
