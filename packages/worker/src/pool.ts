import { availableParallelism } from "node:os";
import { createThreadPool as createPool, type TaskOutcome } from "@dce/runtime/thread-pool";
import { runGemm } from "./internal/gemm.js";
import type { ThreadRequest, ThreadResponse, ThreadTask } from "./internal/thread-protocol.js";
import { createKernel } from "./kernels/kernel.js";

/** One matrix product for a {@link ComputePool}: `c (m×n) = a (m×k) × b (k×n)`, row-major. */
export interface GemmTask {
  /** Kernel registry name, e.g. `"reference"`. */
  readonly kernel: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /**
   * `m × k`, row-major. The pool takes ownership: its buffer may be transferred to
   * another thread, after which the caller's array is detached (length 0).
   */
  readonly a: Float64Array;
  /**
   * `k × ldb`, row-major, of which columns `[bColStart, bColStart + n)` are used
   * (all of it by default). Ownership passes to the pool as for `a`, unless it lives
   * in a `SharedArrayBuffer`: shared inputs (the worker's cached matrices) are read in
   * place by the kernel thread and never copied or detached.
   */
  readonly b: Float64Array;
  /** First column of `b` to use. Default 0. */
  readonly bColStart?: number;
  /** Row stride of `b` in elements. Default `n`. */
  readonly ldb?: number;
}

/** The answer to a {@link GemmTask}. */
export interface GemmResult {
  /** `m × n`, row-major, in a buffer the caller now owns. */
  readonly c: Float64Array;
  /** Time the kernel itself took, in milliseconds (excludes queueing and copies). */
  readonly computeMs: number;
  /** Time the task held its thread, in milliseconds: handing it over, computing, answering (no queueing). */
  readonly threadMs: number;
}

/**
 * Runs gemm tasks off the main thread, at most {@link ComputePool.size} at a time.
 * The worker's pull loop uses one; tests may pass their own.
 */
export interface ComputePool {
  /** Number of tasks that can run at once (threads). */
  readonly size: number;
  /**
   * Runs one task. Tasks beyond `size` wait in FIFO order.
   *
   * Aborting `signal` rejects with `signal.reason` at once. If the task was already
   * running, its kernel is stopped: the thread's stop flag is set (native kernels check
   * it between panels) and the thread terminated (which interrupts JavaScript and
   * WebAssembly at once). The slot takes new work once that thread has exited, on a
   * fresh thread, so the pool never computes more than `size` tasks at a time.
   *
   * @throws the kernel's error (e.g. RangeError for an unknown kernel), an Error if the
   *   thread died, or an Error after {@link ComputePool.close}.
   */
  run(task: GemmTask, signal?: AbortSignal): Promise<GemmResult>;
  /** Terminates every thread and rejects pending tasks. Idempotent: returns the same promise. */
  close(): Promise<void>;
}

/** Options for {@link createThreadPool}. */
export interface ThreadPoolOptions {
  /** Number of threads; default `os.availableParallelism()`. */
  readonly threads?: number;
  /**
   * The thread script. Default: `kernel-thread.js` next to this module, which exists
   * in `dist/` (tests that run from `src/` compile it somewhere and pass its URL).
   */
  readonly threadUrl?: URL;
  /**
   * Products of at most this many multiply-adds run on the calling thread instead (the
   * hop to a kernel thread and back costs more than they do); default
   * {@link INLINE_TASK_MADDS}, 0 sends every product to a thread.
   */
  readonly inlineMaxMadds?: number;
}

/**
 * Default of {@link ThreadPoolOptions.inlineMaxMadds}: a 64×64×64 product, some 10 µs
 * with a native kernel and under 1 ms with the reference kernel, against a thread hop
 * of 0.1 ms when the host is idle and several ms when it is busy.
 */
export const INLINE_TASK_MADDS = 64 * 64 * 64;

/** The default thread script: resolved against this module, so it works from `dist/`. */
export const defaultThreadUrl: URL = new URL("./kernel-thread.js", import.meta.url);

/** Tasks of at most this many multiply-adds go to a thread in batches (one message for many). */
const TINY_TASK_MADDS = 64 * 64 * 64;
/** Most tiny tasks in one message. */
const MAX_BATCH = 64;

/** What a kernel thread answers for one task. */
interface Product {
  readonly c: Float64Array;
  readonly computeMs: number;
}

/**
 * Creates a pool of `worker_threads`, each running kernels from the registry, on the
 * shared thread pool of `@dce/runtime/thread-pool`. Threads start at once and are
 * replaced after an abort or a crash.
 *
 * @throws RangeError if `threads` is not a positive integer.
 */
export function createThreadPool(options: ThreadPoolOptions = {}): ComputePool {
  const pool = createPool<GemmTask, Product>({
    threads: options.threads ?? availableParallelism(),
    url: options.threadUrl ?? defaultThreadUrl,
    threadLabel: "kernel thread",
    closedMessage: "compute pool is closed",
    batchable: isTiny,
    maxBatch: MAX_BATCH,
    encode: encodeRequest,
    decode: (reply, count) => decodeResponse(reply as ThreadResponse, count),
  });
  const inlineMaxMadds = options.inlineMaxMadds ?? INLINE_TASK_MADDS;
  return {
    size: pool.size,
    run: async (task, signal) => {
      if (task.m * task.n * task.k <= inlineMaxMadds) return runInline(task, signal);
      const { value, threadMs } = await pool.run(task, signal);
      return { c: value.c, computeMs: value.computeMs, threadMs };
    },
    close: () => pool.close(),
  };
}

/** The message for a kernel thread: the tasks, with every buffer the thread may take. */
function encodeRequest(id: number, tasks: readonly GemmTask[]): { message: ThreadRequest; transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = [];
  const wire: ThreadTask[] = tasks.map((task) => {
    const a = ownedCopy(task.a);
    const b = ownedCopy(task.b);
    for (const x of [a, b]) if (x.buffer instanceof ArrayBuffer && !transfer.includes(x.buffer)) transfer.push(x.buffer);
    return {
      kernel: task.kernel,
      m: task.m,
      n: task.n,
      k: task.k,
      a,
      b,
      bColStart: task.bColStart ?? 0,
      ldb: task.ldb ?? task.n,
    };
  });
  return { message: { id, tasks: wire }, transfer };
}

function decodeResponse(res: ThreadResponse, count: number): (TaskOutcome<Product> | undefined)[] {
  return Array.from({ length: count }, (_, i) => {
    const r = res.results[i];
    if (r === undefined) return undefined;
    if (r.ok) return { ok: true, value: { c: r.c, computeMs: r.computeMs } };
    const error = new Error(r.error.message);
    error.name = r.error.name;
    return { ok: false, error };
  });
}

/**
 * Runs a tiny product on the calling thread, with the same kernel code a thread runs
 * (internal/gemm.ts), so its bits are the same; covered by pool.test.ts "a tiny product
 * runs on the calling thread with the same bits".
 */
async function runInline(task: GemmTask, signal: AbortSignal | undefined): Promise<GemmResult> {
  signal?.throwIfAborted();
  const { c, computeMs } = runGemm(createKernel(task.kernel), {
    m: task.m,
    n: task.n,
    k: task.k,
    a: task.a,
    b: task.b,
    bColStart: task.bColStart ?? 0,
    ldb: task.ldb ?? task.n,
  });
  return { c, computeMs, threadMs: computeMs };
}

function isTiny(task: GemmTask): boolean {
  return task.m * task.n * task.k <= TINY_TASK_MADDS;
}

/**
 * Returns an array whose buffer can be transferred: the array itself when it spans
 * its whole (non-shared) buffer, otherwise a copy. Transferring a view into a larger
 * buffer would detach memory the caller still uses (e.g. the cached B matrix).
 */
function ownedCopy(x: Float64Array): Float64Array {
  if (typeof SharedArrayBuffer !== "undefined" && x.buffer instanceof SharedArrayBuffer) return x; // shared, not moved
  const whole = x.buffer instanceof ArrayBuffer && x.byteOffset === 0 && x.byteLength === x.buffer.byteLength;
  return whole ? x : x.slice();
}
