import { availableParallelism } from "node:os";
import { Worker as Thread } from "node:worker_threads";
import type { ThreadData, ThreadRequest, ThreadResponse, ThreadTask } from "./internal/thread-protocol.js";

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
}

/** The default thread script: resolved against this module, so it works from `dist/`. */
export const defaultThreadUrl: URL = new URL("./kernel-thread.js", import.meta.url);

/**
 * Creates a pool of `worker_threads`, each running kernels from the registry.
 * Threads start at once and are replaced after an abort or a crash.
 *
 * @throws RangeError if `threads` is not a positive integer.
 */
export function createThreadPool(options: ThreadPoolOptions = {}): ComputePool {
  return new ThreadPool(options.threads ?? availableParallelism(), options.threadUrl ?? defaultThreadUrl);
}

interface Job {
  readonly id: number;
  readonly task: GemmTask;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (r: GemmResult) => void;
  readonly reject: (e: unknown) => void;
  readonly onAbort: () => void;
}

interface Slot {
  thread: Thread | undefined;
  /** The stop flag of `thread` (see `StopFlag`), set when its running task is aborted. */
  stop: Int32Array;
  /** Set while an aborted thread is still exiting (its kernel stops within a panel): no work meanwhile. */
  retiring: Promise<void> | undefined;
  /** The message in flight on this thread: one task, or a batch of tiny ones. */
  batch: { readonly id: number; readonly jobs: Job[]; readonly startedAt: number } | undefined;
}

/** Tasks of at most this many multiply-adds go to a thread in batches (one message for many). */
const TINY_TASK_MADDS = 64 * 64 * 64;
/** Most tiny tasks in one message. */
const MAX_BATCH = 64;

class ThreadPool implements ComputePool {
  readonly size: number;
  readonly #threadUrl: URL;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #dispatchScheduled = false;

  constructor(threads: number, threadUrl: URL) {
    if (!Number.isSafeInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    this.size = threads;
    this.#threadUrl = threadUrl;
    for (let i = 0; i < threads; i++) {
      const slot: Slot = { thread: undefined, stop: new Int32Array(0), batch: undefined, retiring: undefined };
      this.#slots.push(slot);
      this.#spawn(slot);
    }
  }

  run(task: GemmTask, signal?: AbortSignal): Promise<GemmResult> {
    if (this.#closing !== undefined) return Promise.reject(new Error("compute pool is closed"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<GemmResult>((resolve, reject) => {
      const id = this.#nextId++;
      const job: Job = {
        id,
        task,
        signal,
        resolve: (r) => {
          signal?.removeEventListener("abort", job.onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener("abort", job.onAbort);
          reject(e);
        },
        onAbort: () => this.#abort(job),
      };
      signal?.addEventListener("abort", job.onAbort, { once: true });
      this.#queue.push(job);
      // Dispatch after the current turn, so tiny tasks queued together leave together.
      if (!this.#dispatchScheduled) {
        this.#dispatchScheduled = true;
        queueMicrotask(() => {
          this.#dispatchScheduled = false;
          this.#dispatch();
        });
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const closed = new Error("compute pool is closed");
      for (const job of this.#queue.splice(0)) job.reject(closed);
      const terminating: Promise<number>[] = [];
      for (const slot of this.#slots) {
        for (const job of slot.batch?.jobs ?? []) job.reject(closed);
        slot.batch = undefined;
        if (slot.thread !== undefined) terminating.push(slot.thread.terminate());
        slot.thread = undefined;
        if (slot.retiring !== undefined) terminating.push(slot.retiring.then(() => 0));
      }
      await Promise.allSettled(terminating);
    })();
    return this.#closing;
  }

  #spawn(slot: Slot): Thread {
    // A fresh flag per thread: a stop is never cleared, the stopped thread is replaced.
    const stop = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const workerData: ThreadData = { stop };
    const thread = new Thread(this.#threadUrl, { workerData });
    slot.thread = thread;
    slot.stop = stop;
    thread.on("message", (res: ThreadResponse) => {
      const batch = slot.batch;
      if (slot.thread !== thread || batch === undefined || batch.id !== res.id) return;
      slot.batch = undefined;
      // A batch's thread time is shared evenly by its tasks.
      const share = (performance.now() - batch.startedAt) / Math.max(1, batch.jobs.length);
      for (const [i, job] of batch.jobs.entries()) {
        const r = res.results[i];
        if (r === undefined) job.reject(new Error("kernel thread sent no result for a task"));
        else if (r.ok) job.resolve({ c: r.c, computeMs: r.computeMs, threadMs: share });
        else {
          const err = new Error(r.error.message);
          err.name = r.error.name;
          job.reject(err);
        }
      }
      this.#dispatch();
    });
    const onDeath = (cause: unknown) => {
      // Only a thread we did not terminate ourselves counts: after an abort the slot
      // already holds its replacement.
      if (slot.thread !== thread) return;
      slot.thread = undefined; // respawned lazily by #dispatch, so a broken script cannot spin
      const jobs = slot.batch?.jobs ?? [];
      slot.batch = undefined;
      const err = new Error(`kernel thread died: ${cause instanceof Error ? cause.message : String(cause)}`);
      for (const job of jobs) job.reject(err);
      if (this.#closing === undefined) this.#dispatch();
    };
    thread.on("error", onDeath);
    thread.on("exit", (code) => onDeath(`exit code ${code}`));
    return thread;
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) return;
      if (slot.batch !== undefined || slot.retiring !== undefined) continue;
      const first = this.#queue.shift() as Job;
      const jobs = [first];
      if (isTiny(first.task)) {
        // Spread tiny tasks over the idle threads rather than piling them on one.
        const idle = this.#slots.filter((s) => s.batch === undefined && s.retiring === undefined).length;
        const take = Math.min(MAX_BATCH - 1, Math.ceil(this.#queue.length / Math.max(1, idle)));
        while (jobs.length <= take && this.#queue.length > 0 && isTiny((this.#queue[0] as Job).task)) {
          jobs.push(this.#queue.shift() as Job);
        }
      }
      const id = this.#nextId++;
      slot.batch = { id, jobs, startedAt: performance.now() };
      const thread = slot.thread ?? this.#spawn(slot);
      const transfer: ArrayBuffer[] = [];
      const tasks: ThreadTask[] = jobs.map((job) => {
        const { task } = job;
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
      const req: ThreadRequest = { id, tasks };
      thread.postMessage(req, transfer);
    }
  }

  #abort(job: Job): void {
    const reason = job.signal?.reason;
    const queued = this.#queue.indexOf(job);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      job.reject(reason);
      return;
    }
    const slot = this.#slots.find((s) => s.batch?.jobs.includes(job));
    const batch = slot?.batch;
    if (slot === undefined || batch === undefined) return; // already settled
    if (batch.jobs.length > 1) {
      // One tiny task of a batch: it finishes in microseconds; drop its result, keep the rest.
      batch.jobs.splice(batch.jobs.indexOf(job), 1, { ...job, resolve: () => {}, reject: () => {} });
      job.reject(reason);
      return;
    }
    slot.batch = undefined;
    job.reject(reason);
    const thread = slot.thread;
    slot.thread = undefined; // from now on its messages and its exit are ignored
    if (thread === undefined) return;
    // Terminating interrupts JavaScript and WebAssembly kernels, not native code: a
    // native kernel sees the flag after its current panel, and only then can the
    // thread exit. Until it has, the slot stays busy (pool.test.ts "native-blas abort").
    Atomics.store(slot.stop, 0, 1);
    slot.retiring = thread.terminate().then(
      () => this.#retired(slot),
      () => this.#retired(slot),
    );
  }

  /** An aborted thread has exited: the slot starts a fresh thread and takes work again. */
  #retired(slot: Slot): void {
    slot.retiring = undefined;
    if (this.#closing !== undefined) return;
    this.#spawn(slot);
    this.#dispatch();
  }
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
