/**
 * The dce worker: a stateless pull loop that leases matrix-multiplication shards
 * from a coordinator and computes them with float64 kernels in `worker_threads`.
 *
 * Most users run the `worker` command; embedders create a {@link Worker}:
 *
 * ```ts
 * import { Worker } from "@dce/worker";
 * const worker = new Worker({ coordinatorUrl: "https://coord:7070", ca: readFileSync("ca.pem") });
 * await worker.start();
 * process.once("SIGTERM", () => void worker.close());
 * await worker.wait();
 * ```
 *
 * @packageDocumentation
 */

export type { Kernel } from "./kernels/kernel.js";
export { createKernel, listKernels } from "./kernels/kernel.js";
export { referenceKernel } from "./kernels/reference.js";
export type { ComputePool, GemmResult, GemmTask, ThreadPoolOptions } from "./pool.js";
export { createThreadPool } from "./pool.js";
export type { WorkerLogger, WorkerOptions } from "./worker.js";
export { RetryBudgetExceededError, Worker } from "./worker.js";
