/**
 * Entry point of one verification thread (loaded by `verifier.ts` from `dist/`). It runs
 * one task at a time — project B for a job, make the A pass of a row band, or check one
 * tile — and answers with the outcome. Projections and band sums are written into shared
 * buffers the main thread owns.
 *
 * @packageDocumentation
 */
import { parentPort } from "node:worker_threads";
import { type BandTask, type CheckTask, type ProjectTask, runBand, runCheck, runProject } from "./work.js";

const port = parentPort;
if (port === null) throw new Error("verify-thread.js must be started as a worker thread");

port.on("message", (msg: { id: number; task: ProjectTask | BandTask | CheckTask }) => {
  try {
    if (msg.task.kind === "project") {
      runProject(msg.task);
      port.postMessage({ id: msg.id, ok: true, check: undefined });
    } else if (msg.task.kind === "band") {
      runBand(msg.task);
      port.postMessage({ id: msg.id, ok: true, check: undefined });
    } else {
      port.postMessage({ id: msg.id, ok: true, check: runCheck(msg.task) });
    }
  } catch (e) {
    port.postMessage({ id: msg.id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
});
