import { clone } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";

/** One unary call that reached the coordinator, as the caller sent it and as it was answered. */
export interface RecordedCall {
  /** The method's local name, e.g. `completeShards`. */
  readonly method: string;
  /** A copy of the request message as it was sent (callers may reuse theirs). */
  readonly request: Record<string, unknown>;
  /** The call's deadline as the caller asked for it, in ms, or undefined for none. */
  readonly timeoutMs: number | undefined;
  /** The reply, once it came; undefined while in flight or when the call failed. */
  response?: Record<string, unknown>;
  /** The error the call failed with, if it did. */
  error?: unknown;
}

/**
 * The calls a client made through an in-memory coordinator's transport, in order: those
 * the coordinator saw (injected coordinator-side faults included, network faults not).
 */
export class CallLog {
  readonly #calls: RecordedCall[] = [];

  /** Every recorded call, oldest first. */
  get all(): readonly RecordedCall[] {
    return this.#calls;
  }

  /** The calls of one method (local name, e.g. `readBlob`), oldest first. */
  of(method: string): RecordedCall[] {
    return this.#calls.filter((c) => c.method === method);
  }

  /** How many calls of `method` the coordinator saw. */
  count(method: string): number {
    return this.of(method).length;
  }

  /** Forgets every call recorded so far. */
  clear(): void {
    this.#calls.length = 0;
  }

  /** The client interceptor that records into this log. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (req.stream) return next(req);
      const header = req.header.get("connect-timeout-ms") ?? req.header.get("grpc-timeout");
      const call: RecordedCall = {
        method: req.method.localName,
        request: clone(req.method.input, req.message) as unknown as Record<string, unknown>,
        timeoutMs: header === null ? undefined : Number.parseInt(header, 10),
      };
      this.#calls.push(call);
      try {
        const res = await next(req);
        if (!res.stream) call.response = res.message as unknown as Record<string, unknown>;
        return res;
      } catch (e) {
        call.error = e;
        throw e;
      }
    };
  }
}
