/**
 * The one place every RPC error message leaves the coordinator through.
 *
 * A status message travels in the `grpc-message` trailer, which Connect percent-encodes
 * with `encodeURIComponent`. A message holding a lone surrogate (a client's id cut with
 * `slice` inside a surrogate pair) makes that throw: the call was then never answered
 * and its stream stayed open until the client's deadline (issue 12). A message echoing
 * a huge request field overflowed the peer's header limit and reset the connection
 * (found by test/fuzz). {@link createErrorBoundary} is the outermost interceptor, so
 * whatever an interceptor or handler throws, the message that goes out is well-formed,
 * bounded and free of control characters, and carries exactly one `dce.v1.ErrorInfo`
 * (an error raised without one gets the reason its code falls back to,
 * `FALLBACK_REASON_OF_CODE` in errors.ts). What fails before any interceptor runs
 * (request parsing, `contextValues`) is answered by `rpc-handler.ts`.
 *
 * @module
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { quote } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import type { Logger } from "pino";
import { dceError, withErrorInfo } from "./errors.js";

/** Longest error message sent to a client, in code points (it travels in an HTTP/2 trailer). */
export const MAX_ERROR_MESSAGE_CHARS = 1024;

/** The message of an error that is a bug: it says nothing of internals (the log has the cause). */
export const INTERNAL_MESSAGE = "internal error";

/**
 * `raw` as a status message may carry it: well-formed (lone surrogates become U+FFFD),
 * control characters escaped, at most {@link MAX_ERROR_MESSAGE_CHARS} code points.
 */
export function safeErrorMessage(raw: string): string {
  return quote(raw, MAX_ERROR_MESSAGE_CHARS);
}

/**
 * `e` as the error a client may be sent: a ConnectError keeps its code, metadata,
 * details and cause, with its message made safe by {@link safeErrorMessage}; anything
 * else is a bug, logged with its cause and answered INTERNAL with only the `INTERNAL`
 * ErrorInfo. Either way the result carries exactly one ErrorInfo ({@link withErrorInfo}).
 */
export function toSafeConnectError(e: unknown, logger: Logger, method: string): ConnectError {
  if (!(e instanceof ConnectError)) {
    logger.error({ err: e, method }, "unexpected error outside the handlers");
    return dceError(Code.Internal, ErrorReason.INTERNAL, INTERNAL_MESSAGE);
  }
  const message = safeErrorMessage(e.rawMessage);
  if (message === e.rawMessage) return withErrorInfo(e);
  const safe = new ConnectError(message, e.code, e.metadata, undefined, e.cause);
  safe.details.push(...e.details);
  return withErrorInfo(safe);
}

/**
 * The outermost server interceptor: every error thrown by the interceptors inside it
 * and by the handlers, including errors thrown while a streaming response is being
 * sent, goes out as {@link toSafeConnectError} made it. Must be first in `interceptors`.
 */
export function createErrorBoundary(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (e) {
      throw toSafeConnectError(e, logger, method);
    }
    if (!res.stream) return res;
    const messages = res.message;
    async function* guarded() {
      try {
        yield* messages;
      } catch (e) {
        throw toSafeConnectError(e, logger, method);
      }
    }
    return { ...res, message: guarded() };
  };
}
