/**
 * Fixtures of the Worker's unit tests (worker.test.ts, pull/, inputs/, report/, chaos/):
 * a log capture, deterministic matrices, a main-thread pool that can hold tasks, and
 * workers on a {@link FakeCoordinator} that the test's `afterEach(cleanUpWorkers)` closes.
 */
import { extractColumns } from "../internal/matrix.js";
import { referenceKernel } from "../kernels/reference.js";
import type { WorkerLogger } from "../log-scope.js";
import { type ComputePool, createThreadPool, type GemmResult, type GemmTask } from "../pool.js";
import { Worker } from "../worker.js";
import type { WorkerOptions } from "../worker-options.js";
import { compileThreadScript } from "./compile-thread.js";
import type { FakeCoordinator } from "./fake-coordinator.js";

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

export function captureLogger(): WorkerLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    lines.push({ level, msg, fields });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

export function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: rows * cols }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    // mixed magnitudes, so that a wrong summation order would change bits
    return (x / 2 ** 31 - 0.5) * 10 ** ((x % 7) - 3);
  });
}

export function product(m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(m * n);
  referenceKernel.gemm(m, n, k, a, b, c);
  return c;
}

export const bits = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A pool that computes with the reference kernel on the main thread, but can hold
 * chosen tasks until they are aborted or let go, so tests control timing exactly.
 */
export class HeldPool implements ComputePool {
  readonly size: number;
  started = 0;
  aborted = 0;
  completed = 0;
  #hold: (task: GemmTask, nth: number) => boolean;
  #letGo: (() => void)[] = [];

  constructor(size: number, hold: (task: GemmTask, nth: number) => boolean = () => false) {
    this.size = size;
    this.#hold = hold;
  }

  /** Lets every held task finish. */
  letGo(): void {
    for (const go of this.#letGo.splice(0)) go();
  }

  async run(task: GemmTask, signal?: AbortSignal): Promise<GemmResult> {
    const nth = this.started++;
    const b =
      (task.ldb ?? task.n) === task.n && (task.bColStart ?? 0) === 0
        ? task.b
        : extractColumns(task.b, task.k, task.ldb ?? task.n, task.bColStart ?? 0, (task.bColStart ?? 0) + task.n);
    const c = product(task.m, task.n, task.k, task.a, b);
    if (this.#hold(task, nth)) {
      await new Promise<void>((resolve, reject) => {
        this.#letGo.push(resolve);
        signal?.addEventListener("abort", () => {
          this.aborted++;
          reject(signal.reason);
        });
      });
    }
    this.completed++;
    return { c, computeMs: 1, threadMs: 1 };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Workers and pools to close after each test. */
export const workers: Worker[] = [];
export const pools: ComputePool[] = [];

export function newWorker(fake: FakeCoordinator, extra: Partial<WorkerOptions> = {}): Worker {
  const worker = new Worker({
    coordinatorUrl: "http://coordinator.test",
    transport: fake.transport,
    acquireWaitMs: 200,
    shutdownGraceMs: 2_000,
    random: () => 0.5,
    prefetch: 0, // exactly one lease per thread, unless a test is about pipelining
    ...extra,
  });
  workers.push(worker);
  return worker;
}

export function threadPool(threads: number): ComputePool {
  const pool = createThreadPool({ threads, threadUrl: compileThreadScript() });
  pools.push(pool);
  return pool;
}

/** Closes every worker and pool the fixtures made; each test file runs it after each test. */
export async function cleanUpWorkers(): Promise<void> {
  await Promise.all(workers.splice(0).map((w) => w.close()));
  await Promise.all(pools.splice(0).map((p) => p.close()));
}

/** A 7×5 by 5×13 job in 3×4 tiles: 3 × 4 = 12 shards with ragged edges. */
export function smallJob(fake: FakeCoordinator) {
  const [m, k, n] = [7, 5, 13];
  const a = randomMatrix(m, k, 1);
  const b = randomMatrix(k, n, 2);
  const aRef = fake.putMatrix(m, k, a);
  const bRef = fake.putMatrix(k, n, b);
  const job = fake.addJob(aRef, bRef, 3, 4);
  return { job, aRef, bRef, expected: product(m, n, k, a, b) };
}

// ---- tests ---------------------------------------------------------------------------
