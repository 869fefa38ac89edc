/** What the kernels share: their "unavailable" and "stopped" errors, and where their assets live. */

/**
 * Thrown when a kernel cannot run on this machine or in this build (e.g. OpenBLAS is
 * not installed, or the runtime has no WebAssembly SIMD). The worker then does not
 * advertise it; `message` is `"<kernel> unavailable: <reason>"`.
 */
export class KernelUnavailableError extends Error {
  override readonly name = "KernelUnavailableError";
  /** The kernel's registry name. */
  readonly kernel: string;
  /** Why, in a few words (no stack, no kernel name). */
  readonly reason: string;
  constructor(kernel: string, reason: string, options?: ErrorOptions) {
    super(`${kernel} unavailable: ${reason}`, options);
    this.kernel = kernel;
    this.reason = reason;
  }
}

/**
 * Thrown by a kernel that saw its `stop` flag (see `Kernel.gemm`) set between two panels
 * of a product: nobody wants the result any more (the lease was cancelled or lost). The
 * output array then holds a partial product.
 */
export class KernelStoppedError extends Error {
  override readonly name = "KernelStoppedError";
  /** The kernel's registry name. */
  readonly kernel: string;
  constructor(kernel: string) {
    super(`${kernel} stopped: the product is no longer wanted`);
    this.kernel = kernel;
  }
}

/**
 * The root of the `@dce/worker` package (`src/kernels/` and `dist/kernels/` both sit two
 * levels below it): the committed `wasm/` binaries and the built `native/` addon are
 * found from here, from the sources in tests as from `dist/` once installed.
 */
export const packageRootUrl: URL = new URL("../../", import.meta.url);
