import { type KernelName, kernelNames } from "./names.js";
import { createNativeBlasKernel } from "./native-blas.js";
import { referenceKernel } from "./reference.js";
import { KernelUnavailableError } from "./support.js";
import { createWasmSimdKernel } from "./wasm-simd.js";

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

// The registry is a fixed table: kernels are code, not configuration. Each entry
// creates the kernel for the calling thread, or throws KernelUnavailableError.
const factories: Readonly<Record<KernelName, () => Kernel>> = {
  "native-blas": createNativeBlasKernel,
  "wasm-simd": () => createWasmSimdKernel(),
  reference: () => referenceKernel,
};

// One instance per kernel per thread (module state is per thread): the WebAssembly
// memory and the loaded addon are reused by every product the thread runs. A kernel
// that is unavailable stays so, and its error is kept to be thrown again.
const instances = new Map<KernelName, Kernel | KernelUnavailableError>();

function instance(name: KernelName): Kernel | KernelUnavailableError {
  let k = instances.get(name);
  if (k === undefined) {
    try {
      k = factories[name]();
    } catch (e) {
      k = e instanceof KernelUnavailableError ? e : new KernelUnavailableError(name, String(e), { cause: e });
    }
    instances.set(name, k);
  }
  return k;
}

/**
 * This thread's instance of a kernel, created at the first call.
 *
 * @throws RangeError if no kernel has that name, or KernelUnavailableError if it cannot
 *   run here (e.g. `native-blas` without OpenBLAS).
 */
export function createKernel(name: string): Kernel {
  if (!(kernelNames as readonly string[]).includes(name)) {
    throw new RangeError(`unknown kernel "${name}" (known: ${kernelNames.join(", ")})`);
  }
  const k = instance(name as KernelName);
  if (k instanceof KernelUnavailableError) throw k;
  return k;
}

/** A kernel that was asked for but cannot run here, and why. */
export interface UnavailableKernel {
  readonly name: KernelName;
  /** E.g. "the addon is not built (…)"; the log line is `${name} unavailable: ${reason}`. */
  readonly reason: string;
}

/** What {@link selectKernels} found: the kernels to advertise, and those left out. */
export interface KernelSelection {
  /** Available kernels in preference order: what {@link listKernels} returns from now on. */
  readonly kernels: readonly Kernel[];
  /** Kernels asked for (or, for `"auto"`, known) that cannot run here. */
  readonly unavailable: readonly UnavailableKernel[];
}

let selected: readonly Kernel[] | undefined;

/**
 * Chooses the kernels this process advertises (the `worker --kernels` flag); it sets
 * what {@link listKernels} returns. `"auto"` means every available kernel, fastest
 * first ({@link kernelNames} order: native-blas, wasm-simd, reference); a list keeps
 * its own order. Kernels that cannot run are left out and reported in `unavailable`,
 * for the caller to log or to refuse.
 *
 * @throws RangeError for an unknown or repeated name, or an empty list.
 */
export function selectKernels(names: "auto" | readonly string[]): KernelSelection {
  const wanted = names === "auto" ? kernelNames : names;
  if (wanted.length === 0) throw new RangeError("no kernel selected");
  const kernels: Kernel[] = [];
  const unavailable: UnavailableKernel[] = [];
  for (const [i, name] of wanted.entries()) {
    if (wanted.indexOf(name) !== i) throw new RangeError(`kernel "${name}" is listed twice`);
    try {
      kernels.push(createKernel(name));
    } catch (e) {
      if (!(e instanceof KernelUnavailableError)) throw e;
      unavailable.push({ name: name as KernelName, reason: e.reason });
    }
  }
  selected = kernels;
  return { kernels, unavailable };
}

/**
 * The kernels this process offers, in the order the worker advertises them (fastest
 * first): those chosen by {@link selectKernels}, or every available one.
 */
export function listKernels(): readonly Kernel[] {
  return selected ?? kernelNames.map(instance).filter((k): k is Kernel => !(k instanceof KernelUnavailableError));
}
