/** Messages between the pool (main thread) and `kernel-thread.ts`. Type-only. */

/**
 * Main thread → kernel thread: run one gemm. `a` and `b` arrive transferred, or shared
 * (a `SharedArrayBuffer` view, read in place); `b` is `k × ldb` of which columns
 * `[bColStart, bColStart + n)` are used.
 */
export interface ThreadRequest {
  readonly id: number;
  readonly kernel: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: Float64Array;
  readonly b: Float64Array;
  readonly bColStart: number;
  readonly ldb: number;
}

/** Kernel thread → main thread: the answer to the request with the same `id`. */
export type ThreadResponse =
  | { readonly id: number; readonly ok: true; readonly c: Float64Array; readonly computeMs: number }
  | { readonly id: number; readonly ok: false; readonly error: { readonly name: string; readonly message: string } };
