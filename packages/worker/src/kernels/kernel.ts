import { referenceKernel } from "./reference.js";

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
   * @throws RangeError if an array is shorter than its shape needs.
   */
  gemm(m: number, n: number, k: number, a: Float64Array, b: Float64Array, c: Float64Array): void;
}

// The registry is a fixed table: kernels are code, not configuration. A faster
// kernel (e.g. WASM SIMD) gets its own entry and its own fingerprint.
const registry: ReadonlyMap<string, Kernel> = new Map([[referenceKernel.name, referenceKernel]]);

/**
 * Looks up a kernel by its registry name.
 *
 * @throws RangeError if no kernel has that name.
 */
export function createKernel(name: string): Kernel {
  const kernel = registry.get(name);
  if (kernel === undefined) {
    throw new RangeError(`unknown kernel "${name}" (known: ${[...registry.keys()].join(", ")})`);
  }
  return kernel;
}

/** Every kernel this build offers, fastest first (the order the worker advertises them in). */
export function listKernels(): readonly Kernel[] {
  return [...registry.values()];
}
