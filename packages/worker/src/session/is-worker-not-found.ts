import type { ConnectError } from "@connectrpc/connect";

/**
 * Whether a NOT_FOUND from a call that names both the worker and a job (FailShard) is
 * about the worker (then: register again) rather than the job. The coordinator says so
 * only in its message today ("worker ... not registered").
 */
export function isWorkerNotFound(err: ConnectError): boolean {
  return /worker/i.test(err.rawMessage);
}
