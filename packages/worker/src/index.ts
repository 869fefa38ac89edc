/**
 * The dce worker: a stateless pull loop that leases matrix-multiplication shards
 * from a coordinator and computes them with float64 kernels in `worker_threads`.
 *
 * Most users run the `worker` command; embedders create a {@link Worker}:
 *
 * <!-- docs-test: serves for 3 s -->
 * ```ts
 * import { readFileSync } from "node:fs";
 * import { Worker } from "@dce/worker";
 *
 * const worker = new Worker({
 *   coordinatorUrl: "https://127.0.0.1:7070",
 *   ca: readFileSync("ca.pem"), // the CA that signed the coordinator's certificate
 *   cert: readFileSync("worker-1.pem"), // this worker's identity, signed by the coordinator's CA
 *   key: readFileSync("worker-1-key.pem"),
 * });
 * await worker.start(); // resolves once registered
 * process.once("SIGTERM", () => void worker.close());
 * await worker.wait();
 * ```
 *
 * @packageDocumentation
 */

export type { ChaosOptions } from "./chaos/chaos-options.js";
export { chaosReporter } from "./chaos/chaos-reporter.js";
export { RetryBudgetExceededError } from "./errors.js";
export type { InputBytes } from "./inputs/input-fetcher.js";
export type { Kernel, KernelSelection, UnavailableKernel } from "./kernels/kernel.js";
export { createKernel, listKernels, selectKernels } from "./kernels/kernel.js";
export type { KernelName } from "./kernels/names.js";
export { kernelNames } from "./kernels/names.js";
export { createNativeBlasKernel } from "./kernels/native-blas.js";
export { referenceKernel } from "./kernels/reference.js";
export { KernelUnavailableError } from "./kernels/support.js";
export type { WasmSimdKernelOptions } from "./kernels/wasm-simd.js";
export { createWasmSimdKernel } from "./kernels/wasm-simd.js";
export type { WorkerLogger } from "./log-scope.js";
export type { ComputePool, GemmResult, GemmTask, ThreadPoolOptions } from "./pool.js";
export { createThreadPool } from "./pool.js";
export { Worker } from "./worker.js";
export type { WorkerOptions } from "./worker-options.js";
