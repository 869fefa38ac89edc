/** Messages between the pool (main thread) and `kernel-thread.ts`. Type-only. */

import type { ThreadPoolData } from "@dce/runtime/thread-pool";

/**
 * The `workerData` a kernel thread starts with, as the shared thread pool gives it: `stop`
 * is this thread's stop flag (see `StopFlag` in kernels/kernel.ts), set to abort the running task.
 */
export type ThreadData = ThreadPoolData;

/**
 * One gemm. `a` and `b` arrive transferred, or shared (a `SharedArrayBuffer` view,
 * read in place); `b` is `k × ldb` of which columns `[bColStart, bColStart + n)` are used.
 */
export interface ThreadTask {
  readonly kernel: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: Float64Array;
  readonly b: Float64Array;
  readonly bColStart: number;
  readonly ldb: number;
}

/** Main thread → kernel thread: run these gemms in order (one, or a batch of tiny ones). */
export interface ThreadRequest {
  readonly id: number;
  readonly tasks: readonly ThreadTask[];
}

/** The outcome of one task. */
export type ThreadTaskResult =
  | { readonly ok: true; readonly c: Float64Array; readonly computeMs: number }
  | { readonly ok: false; readonly error: { readonly name: string; readonly message: string } };

/** Kernel thread → main thread: the answer to the request with the same `id`, one result per task. */
export interface ThreadResponse {
  readonly id: number;
  readonly results: readonly ThreadTaskResult[];
}
