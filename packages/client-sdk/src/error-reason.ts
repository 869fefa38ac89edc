/**
 * Why an RPC failed, as the coordinator says it: every error it answers carries a
 * `dce.v1.ErrorInfo` whose reason tells errors with the same code apart (an unknown
 * job from an unknown blob, a full disk from a size limit). Branch on the reason,
 * never on the message text, which is for people and may change. The reasons, their
 * codes and what to do about each: docs/errors.md.
 *
 * @packageDocumentation
 */
import type { ErrorReason } from "@dce/proto";
import { errorMetadataOf, errorReasonOf } from "@dce/runtime/error-info";

/**
 * The reason of a failed RPC, or undefined when `err` carries none: it is not a
 * `ConnectError`, or it was raised on this side (a deadline, an aborted signal, a TLS
 * failure) or by a peer that is not a dce coordinator; then branch on `err.code`.
 *
 * @example
 * <!-- docs-test: prelude
 * import { readFileSync } from "node:fs";
 * import { createClient } from "@dce/client-sdk";
 * const client = createClient({
 *   baseUrl: "https://127.0.0.1:7070",
 *   ca: readFileSync("ca.pem", "utf8"),
 *   token: process.env.DCE_TOKEN,
 * });
 * const id = "no-such-job";
 * -->
 * ```ts
 * import { ErrorReason, errorReason } from "@dce/client-sdk";
 *
 * try {
 *   await client.getJobHandle(id).status();
 * } catch (e) {
 *   if (errorReason(e) === ErrorReason.JOB_NOT_FOUND) console.log(`no job ${id}`);
 *   else throw e;
 * }
 * ```
 */
export function errorReason(err: unknown): ErrorReason | undefined {
  return errorReasonOf(err);
}

/**
 * The facts a failed RPC's reason comes with, as strings keyed in snake_case
 * (`job_id`, `shard_index`, `limit`, `data_dir` …); empty when it carries none.
 */
export function errorMetadata(err: unknown): Readonly<Record<string, string>> {
  return errorMetadataOf(err);
}
