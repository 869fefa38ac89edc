/**
 * Typed error details: every error the coordinator answers carries exactly one
 * `dce.v1.ErrorInfo` whose `reason` tells callers what happened, so they never parse
 * the message text (docs/errors.md lists the reasons).
 *
 * - Core decisions become errors through `toConnectError` in `wire.ts`, whose
 *   `REASON_OF_ERROR` table gives every core error kind its reason.
 * - The shell's own errors are made with {@link dceError} where they are raised
 *   (blob store, data dir, authorization, request checks).
 * - Whatever still leaves without a detail (an error connect-es raises itself, or a
 *   raise site not yet converted) gets one from the error boundary, by its code:
 *   {@link FALLBACK_REASON_OF_CODE}.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { quote } from "@dce/core";
import { type ErrorInfo, ErrorInfoSchema, ErrorReason } from "@dce/proto";
import type { BlobError } from "./blob-error.js";

/** Facts about an error, keyed in snake_case; undefined values are left out, others sent as strings. */
export type ErrorMetadata = Readonly<Record<string, string | number | boolean | undefined>>;

/**
 * Longest metadata value sent, in code points. Values may echo request fields (an
 * unknown job id), and the details travel in an HTTP/2 trailer like the message does.
 */
export const MAX_METADATA_VALUE_CHARS = 256;

/**
 * An ErrorInfo message with `reason` and `metadata`: values as strings, undefined ones
 * dropped, each made safe like a message (well-formed, control characters escaped, at
 * most {@link MAX_METADATA_VALUE_CHARS} code points).
 */
export function errorInfo(reason: ErrorReason, metadata: ErrorMetadata = {}): ErrorInfo {
  const strings: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (v !== undefined) strings[k] = quote(String(v), MAX_METADATA_VALUE_CHARS);
  }
  return create(ErrorInfoSchema, { reason, metadata: strings });
}

/**
 * A ConnectError carrying one ErrorInfo: the way the coordinator shell raises its
 * own errors.
 * @param code the transport code (README "Errors").
 * @param reason what callers branch on; never `UNSPECIFIED`.
 * @param message for people; may quote request fields (the error boundary makes it safe to send).
 * @param metadata facts a caller may need (`job_id`, `worker_id`, `limit` …).
 * @param cause the original error, kept for the log; never sent.
 */
export function dceError(
  code: Code,
  reason: ErrorReason,
  message: string,
  metadata?: ErrorMetadata,
  cause?: unknown,
): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: errorInfo(reason, metadata) }], cause);
}

/**
 * A request the coordinator cannot act on as sent (a required field missing, a number
 * out of range): INVALID_ARGUMENT with reason `MALFORMED_REQUEST`.
 */
export function malformedRequest(message: string): ConnectError {
  return dceError(Code.InvalidArgument, ErrorReason.MALFORMED_REQUEST, message);
}

/** The ErrorInfo details of `e` (the coordinator sends exactly one). */
export function errorInfosOf(e: ConnectError): ErrorInfo[] {
  return e.findDetails(ErrorInfoSchema);
}

/**
 * The reason given to an error that leaves without an ErrorInfo, by its code.
 * Exhaustive over `Code`. Most are the generic reason named after the code, which
 * says no more than the code itself; a few codes have one obvious meaning here:
 * INVALID_ARGUMENT and OUT_OF_RANGE are a malformed request, UNAUTHENTICATED and
 * PERMISSION_DENIED come from the access check, RESOURCE_EXHAUSTED without a detail is a
 * message over the size limit, and UNKNOWN, INTERNAL and DATA_LOSS are bugs.
 */
export const FALLBACK_REASON_OF_CODE: Readonly<Record<Code, ErrorReason>> = {
  [Code.Canceled]: ErrorReason.CANCELLED,
  [Code.Unknown]: ErrorReason.INTERNAL,
  [Code.InvalidArgument]: ErrorReason.MALFORMED_REQUEST,
  [Code.DeadlineExceeded]: ErrorReason.DEADLINE_EXCEEDED,
  [Code.NotFound]: ErrorReason.NOT_FOUND,
  [Code.AlreadyExists]: ErrorReason.ALREADY_EXISTS,
  [Code.PermissionDenied]: ErrorReason.PERMISSION_DENIED,
  [Code.ResourceExhausted]: ErrorReason.RESOURCE_EXHAUSTED,
  [Code.FailedPrecondition]: ErrorReason.FAILED_PRECONDITION,
  [Code.Aborted]: ErrorReason.ABORTED,
  [Code.OutOfRange]: ErrorReason.MALFORMED_REQUEST,
  [Code.Unimplemented]: ErrorReason.UNIMPLEMENTED,
  [Code.Internal]: ErrorReason.INTERNAL,
  [Code.Unavailable]: ErrorReason.UNAVAILABLE,
  [Code.DataLoss]: ErrorReason.INTERNAL,
  [Code.Unauthenticated]: ErrorReason.UNAUTHENTICATED,
};

/**
 * `e` with exactly one ErrorInfo: unchanged when it has one, else with the
 * {@link FALLBACK_REASON_OF_CODE} reason of its code added to its details.
 */
export function withErrorInfo(e: ConnectError): ConnectError {
  if (errorInfosOf(e).length > 0) return e;
  e.details.push({ desc: ErrorInfoSchema, value: errorInfo(FALLBACK_REASON_OF_CODE[e.code]) });
  return e;
}

/**
 * The one ErrorInfo of `e` ({@link withErrorInfo}): for the per-shard outcomes of
 * CompleteShards (`ShardOutcome.error`), which carry a code and an ErrorInfo in the
 * response instead of failing the call.
 */
export function errorInfoFor(e: ConnectError): ErrorInfo {
  return errorInfosOf(withErrorInfo(e))[0] as ErrorInfo;
}

/** Transport code of each blob-store refusal (README "Errors", docs/limits.md). */
export const CODE_OF_BLOB_ERROR: Readonly<Record<BlobError["kind"], Code>> = {
  invalid: Code.InvalidArgument,
  "not-found": Code.NotFound,
  "over-limit": Code.ResourceExhausted,
  "out-of-order": Code.FailedPrecondition,
};

/** A blob-store refusal as the error a client receives, with the store's reason and metadata. */
export function blobConnectError(e: BlobError): ConnectError {
  return dceError(CODE_OF_BLOB_ERROR[e.kind], e.reason, e.message, e.metadata);
}
