import { Code, type ConnectError } from "@connectrpc/connect";
import { isTlsMisconfiguration } from "@dce/runtime/tls";

/** Transient: worth retrying after a pause (the coordinator may be restarting or overloaded). */
export function isTransient(err: ConnectError): boolean {
  // Another CA, an expired certificate, a refused one: no retry changes the answer.
  if (isTlsMisconfiguration(err)) return false;
  // A broken connection can surface as ABORTED or INTERNAL too (connect-node maps
  // ECONNRESET and destroyed streams to ABORTED), which would otherwise read as the
  // coordinator's own "stale lease" ABORTED. Errors raised on this side carry the
  // Node.js error as their cause; statuses sent by the server never do.
  if (isLocalNetworkError(err)) return true;
  switch (err.code) {
    case Code.Unavailable:
    case Code.ResourceExhausted:
    case Code.DeadlineExceeded:
    case Code.Unknown:
    case Code.Internal:
    case Code.Canceled: // not ours (ours is checked first): the server or a proxy cancelled
      return true;
    default:
      return false;
  }
}

/** True if a Node.js system or stream error (with a string `code`, e.g. ECONNRESET) caused `err`. */
function isLocalNetworkError(err: Error): boolean {
  const seen = new Set<unknown>();
  for (let e: unknown = err.cause; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (typeof (e as { code?: unknown }).code === "string") return true;
  }
  return false;
}
