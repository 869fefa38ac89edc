/**
 * State shared by a client and the job handles it makes: the two RPC clients
 * and the resolved configuration.
 *
 * @packageDocumentation
 */
import { type Client, Code, type CallOptions as ConnectCallOptions, ConnectError } from "@connectrpc/connect";
import type { BlobService, JobService } from "@dce/proto";
import type { RequestOptions } from "../types.js";

/** `ClientOptions` with every default filled in. */
export interface ClientConfig {
  /** Default per-RPC timeout; 0 disables it. */
  readonly timeoutMs: number;
  /** Limit of one message in either direction. */
  readonly maxMessageBytes: number;
  /** Largest blob chunk sent or requested: `maxMessageBytes` minus room for framing. */
  readonly chunkBytes: number;
  /** How long one GetJob long-poll asks the coordinator to wait. */
  readonly longPollWaitMs: number;
}

/** What a client and its handles share. */
export interface ClientContext {
  readonly jobs: Client<typeof JobService>;
  readonly blobs: Client<typeof BlobService>;
  readonly config: ClientConfig;
}

/** Headroom left in each message for everything but the chunk bytes. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/**
 * Converts SDK request options to Connect call options. `extraMs` is added to
 * the timeout for long-polls, so the RPC deadline outlasts the server's wait.
 */
export function toCallOptions(config: ClientConfig, options: RequestOptions | undefined, extraMs = 0): ConnectCallOptions {
  const timeoutMs = options?.timeoutMs ?? config.timeoutMs;
  const callOptions: ConnectCallOptions = {
    // Connect treats timeoutMs <= 0 as "no timeout"; keep that meaning for 0.
    timeoutMs: timeoutMs > 0 ? timeoutMs + extraMs : 0,
  };
  if (options?.signal !== undefined) callOptions.signal = options.signal;
  return callOptions;
}

/** Validates a user-supplied per-call timeout. */
export function checkTimeoutMs(timeoutMs: number | undefined, what: string): void {
  if (timeoutMs === undefined) return;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new RangeError(`${what} must be a finite number >= 0, got ${String(timeoutMs)}`);
  }
}

/** The error an aborted SDK wait rejects with, matching what Connect throws for an aborted RPC. */
export function abortError(signal: AbortSignal): ConnectError {
  return ConnectError.from(signal.reason, Code.Canceled);
}

/** Throws {@link abortError} if `signal` is already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** Resolves after `ms`, or rejects with {@link abortError} as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
