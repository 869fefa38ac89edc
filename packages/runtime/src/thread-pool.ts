/**
 * A fixed set of `worker_threads` that run tasks off the event loop
 * (`@dce/runtime/thread-pool`, Node.js only): slots, spawn, respawn after a death, FIFO
 * dispatch, optional batching of small tasks into one message, and abort of a running
 * task by stopping its thread. The worker's kernel pool and the coordinator's verifier
 * are both built on it; what a message holds is theirs to say (`encode`, `decode`).
 *
 * Every thread gets `workerData.stop`: an `Int32Array` of one element over shared
 * memory, set to 1 when the thread's task is aborted, so code that cannot be interrupted
 * (native kernels) can stop between steps. A stop is never cleared: the stopped thread
 * is replaced by a fresh one, with a fresh flag, once it has exited.
 *
 * @packageDocumentation
 */
import { Worker as Thread, type TransferListItem } from "node:worker_threads";

/** What every thread of a pool gets as `workerData`. */
export interface ThreadPoolData {
  /** Stop flag of this thread: element 0 becomes 1 when its running task is aborted. */
  readonly stop: Int32Array;
}

/** A thread's answer to one message, for each of its tasks: a value or an error. */
export type TaskOutcome<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: Error };

/** A task's value and the time it held its thread. */
export interface TaskResult<R> {
  readonly value: R;
  /**
   * Time the task held its thread, in milliseconds: handing it over, running, answering
   * (no queueing). A batch's time is shared evenly by its tasks.
   */
  readonly threadMs: number;
}

/** Options of {@link createThreadPool}. */
export interface ThreadPoolOptions<T, R> {
  /** Number of threads (and tasks running at once). */
  readonly threads: number;
  /** The thread script. */
  readonly url: URL;
  /** Start every thread at once (default) or on its first task. */
  readonly startThreads?: "eager" | "lazy";
  /** Idle threads that do not keep the process alive (a thread running a task does); default false. */
  readonly unref?: boolean;
  /** How errors name a thread, e.g. `"kernel thread"` in "kernel thread died: exit code 1". */
  readonly threadLabel: string;
  /** Message of the error that tasks queued or running at {@link ThreadPool.close} (and later) reject with. */
  readonly closedMessage: string;
  /**
   * The message posted for `tasks` (one, or a batch) and the buffers to transfer with it.
   * `id` must come back as the `id` of the reply.
   */
  encode(id: number, tasks: readonly T[]): { readonly message: unknown; readonly transfer: readonly TransferListItem[] };
  /** The outcomes of `count` tasks in a reply (whose `id` has been matched already). */
  decode(reply: unknown, count: number): readonly (TaskOutcome<R> | undefined)[];
  /**
   * Batching of small tasks: given the task at the head of the queue, whether tasks like
   * it may share a message. When set, dispatch waits for the current turn to end so that
   * tasks queued together leave together.
   */
  readonly batchable?: (task: T) => boolean;
  /** Most tasks in one message; default 64. */
  readonly maxBatch?: number;
}

/** A pool of threads. Create it with {@link createThreadPool}. */
export interface ThreadPool<T, R> {
  /** Number of threads. */
  readonly size: number;
  /**
   * Runs one task; tasks beyond `size` wait in FIFO order.
   *
   * Aborting `signal` rejects with `signal.reason` at once. A queued task is dropped; a
   * task that shares its message with others only loses its answer; a task alone on its
   * thread stops it: the thread's stop flag is set and the thread terminated, and the
   * slot takes new work only once that thread has exited, on a fresh thread, so the pool
   * never runs more than `size` tasks at a time.
   *
   * @throws the task's error from `decode`, an Error if the thread died, or an Error
   *   with `closedMessage` after {@link ThreadPool.close}.
   */
  run(task: T, signal?: AbortSignal): Promise<TaskResult<R>>;
  /** Terminates every thread and rejects pending tasks. Idempotent: returns the same promise. */
  close(): Promise<void>;
}

/**
 * Creates a pool of `worker_threads` running `url`.
 *
 * @throws RangeError if `threads` is not a positive integer.
 */
export function createThreadPool<T, R>(options: ThreadPoolOptions<T, R>): ThreadPool<T, R> {
  return new Pool(options);
}

interface Job<T, R> {
  readonly task: T;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (r: TaskResult<R>) => void;
  readonly reject: (e: unknown) => void;
  readonly onAbort: () => void;
}

interface Slot<T, R> {
  thread: Thread | undefined;
  /** The stop flag of `thread`, set when its running task is aborted. */
  stop: Int32Array;
  /** Set while an aborted thread is still exiting (native code stops within a step): no work meanwhile. */
  retiring: Promise<void> | undefined;
  /** The message in flight on this thread: one task, or a batch of small ones. */
  batch: { readonly id: number; readonly jobs: Job<T, R>[]; readonly startedAt: number } | undefined;
}

const ignore = (): void => {};

class Pool<T, R> implements ThreadPool<T, R> {
  readonly size: number;
  readonly #o: ThreadPoolOptions<T, R>;
  readonly #slots: Slot<T, R>[] = [];
  readonly #queue: Job<T, R>[] = [];
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #dispatchScheduled = false;

  constructor(options: ThreadPoolOptions<T, R>) {
    const { threads } = options;
    if (!Number.isSafeInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    this.size = threads;
    this.#o = options;
    for (let i = 0; i < threads; i++) {
      const slot: Slot<T, R> = { thread: undefined, stop: new Int32Array(0), batch: undefined, retiring: undefined };
      this.#slots.push(slot);
      if ((options.startThreads ?? "eager") === "eager") this.#spawn(slot);
    }
  }

  run(task: T, signal?: AbortSignal): Promise<TaskResult<R>> {
    if (this.#closing !== undefined) return Promise.reject(new Error(this.#o.closedMessage));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<TaskResult<R>>((resolve, reject) => {
      const job: Job<T, R> = {
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
      if (this.#o.batchable === undefined) {
        this.#dispatch();
      } else if (!this.#dispatchScheduled) {
        // Dispatch after the current turn, so small tasks queued together leave together.
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
      const closed = new Error(this.#o.closedMessage);
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

  #spawn(slot: Slot<T, R>): Thread {
    // A fresh flag per thread: a stop is never cleared, the stopped thread is replaced.
    const stop = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const workerData: ThreadPoolData = { stop };
    const thread = new Thread(this.#o.url, { workerData });
    slot.thread = thread;
    slot.stop = stop;
    thread.on("message", (reply: { id?: unknown }) => {
      const batch = slot.batch;
      if (slot.thread !== thread || batch === undefined || batch.id !== reply.id) return;
      slot.batch = undefined;
      if (this.#o.unref === true) thread.unref();
      const share = (performance.now() - batch.startedAt) / Math.max(1, batch.jobs.length);
      const outcomes = this.#o.decode(reply, batch.jobs.length);
      for (const [i, job] of batch.jobs.entries()) {
        const r = outcomes[i];
        if (r === undefined) job.reject(new Error(`${this.#o.threadLabel} sent no result for a task`));
        else if (r.ok) job.resolve({ value: r.value, threadMs: share });
        else job.reject(r.error);
      }
      this.#dispatch();
    });
    const onDeath = (cause: unknown) => {
      // Only a thread we did not terminate ourselves counts: after an abort the slot
      // already holds its replacement (or is retiring).
      if (slot.thread !== thread) return;
      slot.thread = undefined; // respawned lazily by #dispatch, so a broken script cannot spin
      const jobs = slot.batch?.jobs ?? [];
      slot.batch = undefined;
      const err = new Error(`${this.#o.threadLabel} died: ${cause instanceof Error ? cause.message : String(cause)}`);
      for (const job of jobs) job.reject(err);
      if (this.#closing === undefined) this.#dispatch();
    };
    thread.on("error", onDeath);
    thread.on("exit", (code) => onDeath(`exit code ${code}`));
    // After the listeners (adding a "message" listener refs the thread's port again); a
    // task posted to it refs it until its answer is in.
    if (this.#o.unref === true) thread.unref();
    return thread;
  }

  #dispatch(): void {
    const { batchable } = this.#o;
    const maxBatch = this.#o.maxBatch ?? 64;
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) return;
      if (slot.batch !== undefined || slot.retiring !== undefined) continue;
      const first = this.#queue.shift() as Job<T, R>;
      const jobs = [first];
      if (batchable?.(first.task)) {
        // Spread small tasks over the idle threads rather than piling them on one.
        const idle = this.#slots.filter((s) => s.batch === undefined && s.retiring === undefined).length;
        const take = Math.min(maxBatch - 1, Math.ceil(this.#queue.length / Math.max(1, idle)));
        while (jobs.length <= take && this.#queue.length > 0 && batchable((this.#queue[0] as Job<T, R>).task)) {
          jobs.push(this.#queue.shift() as Job<T, R>);
        }
      }
      const id = this.#nextId++;
      slot.batch = { id, jobs, startedAt: performance.now() };
      const thread = slot.thread ?? this.#spawn(slot);
      try {
        const { message, transfer } = this.#o.encode(
          id,
          jobs.map((j) => j.task),
        );
        thread.postMessage(message, transfer as TransferListItem[]);
        if (this.#o.unref === true) thread.ref();
      } catch (e) {
        // A task that cannot be sent (e.g. its buffer was already transferred away) fails
        // alone, at once; the slot stays free for the next one instead of waiting forever.
        slot.batch = undefined;
        for (const job of jobs) job.reject(e);
      }
    }
  }

  #abort(job: Job<T, R>): void {
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
      // One small task of a batch: it finishes in microseconds; drop its answer, keep the rest.
      batch.jobs.splice(batch.jobs.indexOf(job), 1, { ...job, resolve: ignore, reject: ignore });
      job.reject(reason);
      return;
    }
    slot.batch = undefined;
    job.reject(reason);
    const thread = slot.thread;
    slot.thread = undefined; // from now on its messages and its exit are ignored
    if (thread === undefined) return;
    // Terminating interrupts JavaScript and WebAssembly, not native code: native code
    // sees the flag after its current step, and only then can the thread exit. Until it
    // has, the slot stays busy (worker pool.test.ts "native-blas abort").
    Atomics.store(slot.stop, 0, 1);
    slot.retiring = thread.terminate().then(
      () => this.#retired(slot),
      () => this.#retired(slot),
    );
  }

  /** An aborted thread has exited: the slot starts a fresh thread and takes work again. */
  #retired(slot: Slot<T, R>): void {
    slot.retiring = undefined;
    if (this.#closing !== undefined) return;
    this.#spawn(slot);
    this.#dispatch();
  }
}
