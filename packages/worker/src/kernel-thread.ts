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
import { parentPort, workerData } from "node:worker_threads";
import { runGemm } from "./internal/gemm.js";
import type { ThreadData, ThreadRequest, ThreadResponse, ThreadTask, ThreadTaskResult } from "./internal/thread-protocol.js";
import { createKernel } from "./kernels/kernel.js";

const port = parentPort;
if (port === null) throw new Error("kernel-thread.js must be started as a worker thread");
const stop = (workerData as ThreadData | undefined)?.stop;

function runTask(req: ThreadTask, transfer: ArrayBuffer[]): ThreadTaskResult {
  try {
    const { c, computeMs } = runGemm(createKernel(req.kernel), req, stop);
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
