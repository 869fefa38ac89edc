/**
 * Entry point of one kernel worker thread (loaded by `pool.ts` from `dist/`).
 * It runs the gemms of each request in order (one, or a batch of tiny ones) and
 * answers with their result buffers, transferred back without a copy. Aborting a
 * gemm means terminating this thread; since that cannot interrupt native code, the
 * pool first sets this thread's stop flag (`workerData.stop`), which kernels running
 * native code check between panels.
 *
 * @packageDocumentation
 */
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { extractColumns } from "./internal/matrix.js";
import type { ThreadData, ThreadRequest, ThreadResponse, ThreadTask, ThreadTaskResult } from "./internal/thread-protocol.js";
import { createKernel } from "./kernels/kernel.js";

const port = parentPort;
if (port === null) throw new Error("kernel-thread.js must be started as a worker thread");
const stop = (workerData as ThreadData | undefined)?.stop;

function runTask(req: ThreadTask, transfer: ArrayBuffer[]): ThreadTaskResult {
  try {
    const kernel = createKernel(req.kernel);
    const c = new Float64Array(req.m * req.n);
    const whole = req.ldb === req.n && req.bColStart === 0;
    let startMs: number;
    if (whole) {
      startMs = performance.now();
      kernel.gemm(req.m, req.n, req.k, req.a, req.b, c, stop);
    } else if (kernel.gemmStrided !== undefined) {
      // A column panel of a wider B, read in place.
      startMs = performance.now();
      kernel.gemmStrided(req.m, req.n, req.k, req.a, req.b.subarray(req.bColStart), req.ldb, c, stop);
    } else {
      // Columns of a wider B are copied out here, off the worker's event loop.
      const b = extractColumns(req.b, req.k, req.ldb, req.bColStart, req.bColStart + req.n);
      startMs = performance.now();
      kernel.gemm(req.m, req.n, req.k, req.a, b, c, stop);
    }
    const computeMs = performance.now() - startMs;
    transfer.push(c.buffer);
    return { ok: true, c, computeMs };
  } catch (e) {
    const error = e instanceof Error ? { name: e.name, message: e.message } : { name: "Error", message: String(e) };
    return { ok: false, error };
  }
}

port.on("message", (req: ThreadRequest) => {
  const transfer: ArrayBuffer[] = [];
  const results = req.tasks.map((task) => runTask(task, transfer));
  const res: ThreadResponse = { id: req.id, results };
  port.postMessage(res, transfer);
});
