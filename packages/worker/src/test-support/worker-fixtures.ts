/**
 * Fixtures of the Worker's unit tests (worker.test.ts, pull/, inputs/, report/, chaos/):
 * a log capture, deterministic matrices, a main-thread pool that can hold tasks, and
 * workers on the real coordinator in memory (`@dce/coordinator/testing`), which the
 * test's `afterEach(cleanUpWorkers)` closes.
 */

import { type InMemoryCoordinator, type InMemoryCoordinatorOptions, startInMemoryCoordinator } from "@dce/coordinator/testing";
import type { LeaseRef, MatrixRef } from "@dce/proto";
import { extractColumns } from "../internal/matrix.js";
import { referenceKernel } from "../kernels/reference.js";
import type { WorkerLogger } from "../log-scope.js";
import { type ComputePool, createThreadPool, type GemmResult, type GemmTask } from "../pool.js";
import { Worker } from "../worker.js";
import type { WorkerOptions } from "../worker-options.js";
import { compileThreadScript } from "./compile-thread.js";

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

/** Workers, pools and coordinators to close after each test. */
export const workers: Worker[] = [];
export const pools: ComputePool[] = [];
const coordinators: InMemoryCoordinator[] = [];

/**
 * The real coordinator in memory, as the worker tests see it: heartbeats every 20 ms, and
 * inputs read with ReadBlob (no inline inputs in grants) unless `options` say otherwise.
 */
export async function startCoordinator(options: InMemoryCoordinatorOptions = {}): Promise<InMemoryCoordinator> {
  const h = await startInMemoryCoordinator({
    inlineInputs: false,
    ...options,
    advertise: { heartbeatIntervalMs: 20, ...options.advertise },
  });
  coordinators.push(h);
  return h;
}

export function newWorker(h: InMemoryCoordinator, extra: Partial<WorkerOptions> = {}): Worker {
  const worker = new Worker({
    coordinatorUrl: "http://coordinator.test",
    transport: h.transport,
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
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
}

/** A job on the coordinator, with what the tests check it against. */
export interface TestJob {
  readonly jobId: string;
  readonly shards: number;
}

/** Submits C = A × B (values given) in tiles of at most tileRows × tileCols. */
export async function addJob(
  h: InMemoryCoordinator,
  [m, k, n]: readonly [number, number, number],
  [a, b]: readonly [Float64Array, Float64Array],
  [tileRows, tileCols]: readonly [number, number],
) {
  const aRef = h.putMatrix(m, k, a);
  const bRef = h.putMatrix(k, n, b);
  const job: TestJob = await h.submit(aRef, bRef, tileRows, tileCols);
  return { job, aRef, bRef, expected: product(m, n, k, a, b) };
}

/** A 7×5 by 5×13 job in 3×4 tiles: 3 × 4 = 12 shards with ragged edges. */
export function smallJob(h: InMemoryCoordinator) {
  const [m, k, n] = [7, 5, 13] as const;
  return addJob(h, [m, k, n], [randomMatrix(m, k, 1), randomMatrix(k, n, 2)], [3, 4]);
}

// ---- what the coordinator saw, from the call log -------------------------------------

export function keyOf(lease: LeaseRef): string {
  return `${lease.jobId}/${lease.shardIndex}@${lease.epoch}`;
}

/** Every FailShard call, in order. */
export function failShardCalls(h: InMemoryCoordinator) {
  return h.calls.of("failShard").map((c) => {
    const r = c.request as { workerId: string; lease: LeaseRef; error: string; release: boolean };
    return { workerId: r.workerId, lease: r.lease, error: r.error, release: r.release };
  });
}

/** Every result reported with CompleteShards, in order. */
export function completeCalls(h: InMemoryCoordinator) {
  return h.calls.of("completeShards").flatMap((c) => {
    const r = c.request as { workerId: string; results: { lease: LeaseRef; payload: { case: string | undefined } }[] };
    return r.results.map((x) => ({ workerId: r.workerId, lease: x.lease, payload: x.payload.case }));
  });
}

/** Every registration the coordinator answered: the id it gave and what the worker said. */
export function registrations(h: InMemoryCoordinator) {
  return h.calls
    .of("registerWorker")
    .filter((c) => c.response !== undefined)
    .map((c) => {
      const r = c.request as { name: string; threads: number; kernels: { fingerprint: string }[] };
      return {
        workerId: (c.response as { workerId: string }).workerId,
        name: r.name,
        threads: r.threads,
        kernels: r.kernels.map((k) => k.fingerprint),
      };
    });
}

/** ReadBlob calls the coordinator answered: which blob, from which offset, how many bytes. */
export function reads(h: InMemoryCoordinator) {
  return h.calls
    .of("readBlob")
    .filter((c) => c.response !== undefined)
    .map((c) => ({
      blobId: (c.request as { blobId: string }).blobId,
      offset: Number((c.request as { offset: bigint }).offset),
      bytes: (c.response as { data: Uint8Array }).data.byteLength,
    }));
}

/** Bytes of a blob served by ReadBlob. */
export function bytesRead(h: InMemoryCoordinator, ref: MatrixRef): number {
  return reads(h)
    .filter((r) => r.blobId === ref.blobId)
    .reduce((sum, r) => sum + r.bytes, 0);
}

/** The latest lease granted on a shard. */
export function leaseOf(h: InMemoryCoordinator, jobId: string, shardIndex: number): LeaseRef | undefined {
  const grants = h.calls
    .of("acquireShards")
    .flatMap((c) => ((c.response as { leases: { lease: LeaseRef }[] } | undefined)?.leases ?? []).map((l) => l.lease));
  return grants.filter((l) => l.jobId === jobId && l.shardIndex === shardIndex).at(-1);
}
