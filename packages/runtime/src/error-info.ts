/**
 * Reading the typed detail every dce error carries: the coordinator attaches exactly
 * one `dce.v1.ErrorInfo` to each error it answers, and callers branch on its reason,
 * never on the message text (docs/errors.md lists the reasons).
 *
 * @example
 * <!-- docs-test: prelude
 * import { readFileSync } from "node:fs";
 * import { createClient } from "@connectrpc/connect";
 * import { createGrpcTransport } from "@connectrpc/connect-node";
 * import { WorkerService } from "@dce/proto";
 * const [ca, cert, key] = ["ca.pem", "worker-1.pem", "worker-1-key.pem"].map((f) => readFileSync(f));
 * const workers = createClient(WorkerService, createGrpcTransport({ baseUrl: "https://127.0.0.1:7070", nodeOptions: { ca, cert, key } }));
 * const [workerId, leases] = ["a-worker-id-the-coordinator-never-gave", []];
 * const registerAgain = async () => {};
 * -->
 * ```ts
 * import { ErrorReason } from "@dce/proto";
 * import { errorReasonOf } from "@dce/runtime/error-info";
 *
 * try {
 *   await workers.heartbeat({ workerId, leases });
 * } catch (e) {
 *   if (errorReasonOf(e) === ErrorReason.WORKER_NOT_FOUND) await registerAgain();
 *   else throw e;
 * }
 * ```
 *
 * @packageDocumentation
 */
import { ConnectError } from "@connectrpc/connect";
import { type ErrorInfo, ErrorInfoSchema, type ErrorReason } from "@dce/proto";

/** The ErrorInfo of `err`: the first one when it is a ConnectError that has one, else undefined. */
export function errorInfoOf(err: unknown): ErrorInfo | undefined {
  // ConnectError's `instanceof` also accepts an error from another installed copy of connect-es.
  return err instanceof ConnectError ? err.findDetails(ErrorInfoSchema)[0] : undefined;
}

/**
 * Why a dce RPC failed: the reason of the error's ErrorInfo. Undefined when `err` is
 * not a ConnectError or carries no ErrorInfo (an error raised on the client side, such
 * as a deadline or a TLS failure, or a peer that is not a dce coordinator); then
 * branch on `err.code`.
 */
export function errorReasonOf(err: unknown): ErrorReason | undefined {
  return errorInfoOf(err)?.reason;
}

/**
 * The facts the error's ErrorInfo carries, as strings keyed in snake_case (`job_id`,
 * `shard_index`, `worker_id`, `limit`, `data_dir` …); empty when there is none.
 */
export function errorMetadataOf(err: unknown): Readonly<Record<string, string>> {
  return errorInfoOf(err)?.metadata ?? {};
}
