import type { ConnectError } from "@connectrpc/connect";
import { ErrorReason } from "@dce/proto";
import { errorReasonOf } from "@dce/runtime/error-info";

/**
 * Whether a NOT_FOUND from a call naming the worker is about the worker (then: register
 * again) rather than something else it names (a job, a blob): the coordinator says so in
 * the error's `dce.v1.ErrorInfo` reason, never only in its text (docs/errors.md).
 */
export function isWorkerNotFound(err: ConnectError): boolean {
  return errorReasonOf(err) === ErrorReason.WORKER_NOT_FOUND;
}
