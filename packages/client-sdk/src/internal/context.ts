/**
 * State shared by a client and the job handles it makes: the job RPC client, the
 * blob-transfer client and the resolved configuration.
 *
 * @packageDocumentation
 */
import { type Client, Code, type CallOptions as ConnectCallOptions, ConnectError } from "@connectrpc/connect";
import type { JobService } from "@dce/proto";
import type { BlobTransfer } from "@dce/runtime/blob-transfer";
import { isTlsMisconfiguration } from "@dce/runtime/tls";
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
  /** How long idempotent reads keep retrying while the coordinator is unreachable. */
  readonly reconnectBudgetMs: number;
  /** Move matrix bytes through the coordinator's blob files when it offers them and they are reachable. */
  readonly useLocalStore: boolean;
}

/** What a client and its handles share. */
export interface ClientContext {
  readonly jobs: Client<typeof JobService>;
  /** Uploads and blob reads (`@dce/runtime/blob-transfer`). */
  readonly transfer: BlobTransfer;
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

/**
 * Codes an idempotent read retries: the coordinator is unreachable or the connection
 * broke mid-call (connect-node reports a reset stream as ABORTED, INTERNAL or CANCELED). The
 * coordinator itself never answers a well-formed read with these.
 */
const TRANSIENT = new Set<Code>([Code.Unavailable, Code.Aborted, Code.Internal, Code.Unknown, Code.Canceled]);

/**
 * Runs an idempotent read (GetJob, GetResult, ReadBlob), retrying transient failures
 * with exponential backoff until one succeeds, `signal` aborts, or failures have
 * lasted `config.reconnectBudgetMs`. A coordinator restart is therefore invisible to
 * a client waiting on a job.
 */
export async function retryTransient<T>(config: ClientConfig, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  let firstFailureMs: number | undefined;
  let delayMs = 100;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      const err = ConnectError.from(e);
      // A certificate that is not trusted now will not be in a minute either.
      if (!TRANSIENT.has(err.code) || signal?.aborted || isTlsMisconfiguration(err)) throw e;
      const now = performance.now();
      firstFailureMs ??= now;
      if (now - firstFailureMs + delayMs > config.reconnectBudgetMs) throw e;
      await sleep(delayMs, signal);
      delayMs = Math.min(delayMs * 2, 2_000);
    }
  }
}
