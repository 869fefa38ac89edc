/**
 * The dce client SDK: submit float64 matrix multiplications to a dce
 * coordinator, follow their progress, fetch results and cancel jobs; plus
 * NumPy `.npy` reading and writing.
 *
 * @example
 * ```ts
 * import { readFile, writeFile } from "node:fs/promises";
 * import { createClient, parseNpy, encodeNpy } from "@dce/client-sdk";
 *
 * const client = createClient({
 *   baseUrl: "https://127.0.0.1:7070",
 *   ca: await readFile("ca.pem", "utf8"),
 *   token: process.env.DCE_TOKEN, // from `coordinator tokens add NAME`
 * });
 * const job = await client.submitMatMul(parseNpy(await readFile("a.npy")), parseNpy(await readFile("b.npy")));
 * const c = await job.result();
 * await writeFile("c.npy", encodeNpy(c));
 * ```
 *
 * @packageDocumentation
 */

// RPC failures reject with ConnectError; re-exported so users need not depend
// on @connectrpc/connect just to inspect `err.code`.
export { Code, ConnectError } from "@connectrpc/connect";
// Why an RPC failed: the reason the coordinator attaches to every error (docs/errors.md).
export { ErrorReason } from "@dce/proto";
export type { ClientOptions, DceClient, MatrixInput, SubmitOptions, TileSize } from "./client.js";
export { createClient } from "./client.js";
export { errorMetadata, errorReason } from "./error-reason.js";
export type { MatrixShape } from "./errors.js";
export {
  DceError,
  DimensionMismatchError,
  InvalidMatrixError,
  JobCancelledError,
  JobError,
  JobFailedError,
  LocalClusterError,
  NpyFormatError,
} from "./errors.js";
export type { CancelOptions, JobHandle } from "./job-handle.js";
export type { LocalCluster, LocalClusterOptions } from "./local-cluster.js";
export { startLocalCluster } from "./local-cluster.js";
export { encodeNpy, parseNpy } from "./npy.js";
export type {
  JobProgress,
  JobState,
  JobStatusInfo,
  Matrix,
  MatrixRef,
  RequestOptions,
  TerminalJobState,
  WaitOptions,
} from "./types.js";
