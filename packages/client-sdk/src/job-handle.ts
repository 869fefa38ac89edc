/**
 * `JobHandle`: a cheap reference to one job by id, with methods to follow,
 * fetch and cancel it.
 *
 * @packageDocumentation
 */
import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { LocalStore, MatrixRef as WireMatrixRef } from "@dce/proto";
import { accessLocalStore } from "@dce/runtime/local-store";
import { JobCancelledError, JobFailedError } from "./errors.js";
import { type ClientContext, checkTimeoutMs, retryTransient, sleep, throwIfAborted, toCallOptions } from "./internal/context.js";
import { assertLittleEndianHost } from "./internal/host.js";
import { createRateEstimator } from "./internal/rate-estimator.js";
import type { JobProgress, JobStatusInfo, Matrix, RequestOptions, WaitOptions } from "./types.js";
import { fromWireStatus, isTerminal } from "./wire.js";

/** Options of {@link JobHandle.cancel}. */
export interface CancelOptions extends RequestOptions {
  /** Why the job is cancelled; the coordinator reports it as the job's `error`. */
  readonly reason?: string;
}

/**
 * A handle on one job. It holds only the job id: creating one makes no RPC,
 * and any number of handles may refer to the same job.
 *
 * Waiting methods (`progress`, `result`) long-poll the coordinator. Aborting a
 * wait through `signal` only stops waiting: the job keeps running. Only
 * {@link JobHandle.cancel} cancels a job.
 */
export interface JobHandle {
  /** The job id assigned by the coordinator. */
  readonly id: string;

  /**
   * Fetches the job's current status (one `GetJob` RPC, no waiting).
   *
   * @throws ConnectError on RPC failure, e.g. `NotFound` for an unknown id.
   */
  status(options?: RequestOptions): Promise<JobStatusInfo>;

  /**
   * Follows the job: yields its current status at once, then every new status
   * (by `version`) as the coordinator reports it, each with a client-side
   * estimate of the shard rate and ETA. The iteration ends after it yields a
   * terminal state (`succeeded`, `failed` or `cancelled`); it does not throw
   * for failed or cancelled jobs.
   *
   * Aborting `signal` stops the iteration (it throws `ConnectError` with code
   * `Canceled`) but does not cancel the job.
   *
   * @throws ConnectError on RPC failure or abort.
   */
  progress(options?: WaitOptions): AsyncIterable<JobProgress>;

  /**
   * Waits until the job ends and returns the product C.
   *
   * The result is read with `ReadBlob` in chunks no larger than the client's
   * message limit, straight into one preallocated buffer, and checked against
   * its SHA-256 blob id.
   *
   * Aborting `signal` stops the wait (it throws `ConnectError` with code
   * `Canceled`) but does not cancel the job.
   *
   * @throws {@link JobFailedError} if the job failed.
   * @throws {@link JobCancelledError} if the job was cancelled.
   * @throws ConnectError on RPC failure or abort; `DataLoss` if the result
   *   blob does not match its size or SHA-256.
   */
  result(options?: WaitOptions): Promise<Matrix>;

  /**
   * Cancels the job and returns its status afterwards. Cancelling a cancelled
   * job succeeds again.
   *
   * @throws ConnectError `FailedPrecondition` if the job already succeeded or
   *   failed, `NotFound` for an unknown id, or another code on RPC failure.
   */
  cancel(options?: CancelOptions): Promise<JobStatusInfo>;

  /**
   * Deletes the job and its result on the coordinator now; a job still queued or
   * running is cancelled first. Afterwards every call about the job answers `NotFound`,
   * and waits on it (`result()`, `progress()`) end with `NotFound`. The coordinator
   * also deletes finished jobs by itself once their retention runs out (`retentionMs`
   * at submit, or its `--retention`).
   *
   * @example
   * <!-- docs-test: prelude
   * import { readFileSync } from "node:fs";
   * import { createClient } from "@dce/client-sdk";
   * const client = createClient({ baseUrl: "https://127.0.0.1:7070", ca: readFileSync("ca.pem", "utf8"), token: process.env.DCE_TOKEN });
   * const m = { rows: 2, cols: 2, data: new Float64Array([1, 2, 3, 4]) };
   * const job = await client.submitMatMul(m, m);
   * -->
   * ```ts
   * const c = await job.result();
   * await job.delete(); // the coordinator frees its copy of C now
   * ```
   *
   * @throws ConnectError `NotFound` for an unknown (or already deleted) id, or another
   *   code on RPC failure.
   */
  delete(options?: RequestOptions): Promise<void>;
}

// When a long-poll comes back this fast with nothing new, the coordinator is
// not honouring wait_ms; back off so we do not spin on it.
const EARLY_RETURN_MS = 100;
/** Largest C asked for inline with the final status (the coordinator caps it at 1 MiB too). */
const INLINE_RESULT_MAX_BYTES = 1024 * 1024;
const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 2_000;

/** Creates a handle for `jobId` on the given client context. Makes no RPC. */
export function createJobHandle(ctx: ClientContext, jobId: string): JobHandle {
  return {
    id: jobId,
    status: (options) => fetchStatus(ctx, jobId, options),
    progress: (options) => followProgress(ctx, jobId, options),
    result: (options) => waitForResult(ctx, jobId, options),
    cancel: (options) => cancelJob(ctx, jobId, options),
    delete: (options) => deleteJob(ctx, jobId, options),
  };
}

async function fetchStatus(ctx: ClientContext, jobId: string, options: RequestOptions | undefined): Promise<JobStatusInfo> {
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  const res = await ctx.jobs.getJob({ jobId, waitMs: 0 }, toCallOptions(ctx.config, options));
  return fromWireStatus(requireStatus(res.status, jobId), jobId);
}

/**
 * Yields the current status, then each status with a new version, until a
 * terminal one. Each GetJob long-polls for `longPollWaitMs`.
 */
async function* watchStatuses(
  ctx: ClientContext,
  jobId: string,
  options: WaitOptions | undefined,
  defaultMinIntervalMs: number,
): AsyncGenerator<JobStatusInfo, void, undefined> {
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  const minIntervalMs = options?.minIntervalMs ?? defaultMinIntervalMs;
  checkTimeoutMs(minIntervalMs, "minIntervalMs");
  const signal = options?.signal;
  const waitMs = ctx.config.longPollWaitMs;
  const pollOptions = toCallOptions(ctx.config, options, waitMs);
  let lastVersion: bigint | undefined;
  let backoffMs = MIN_BACKOFF_MS;
  for (;;) {
    throwIfAborted(signal);
    const startedMs = performance.now();
    const res = await retryTransient(ctx.config, signal, () =>
      ctx.jobs.getJob(
        lastVersion === undefined ? { jobId, waitMs: 0 } : { jobId, waitMs, afterVersion: lastVersion },
        lastVersion === undefined ? toCallOptions(ctx.config, options) : pollOptions,
      ),
    );
    const wire = requireStatus(res.status, jobId);
    const status = fromWireStatus(wire, jobId);
    // Any version change is news; a coordinator restart may even lower it.
    if (wire.version !== lastVersion || isTerminal(status.state)) {
      lastVersion = wire.version;
      backoffMs = MIN_BACKOFF_MS;
      yield status;
      if (isTerminal(status.state)) return;
      const restMs = Math.round(minIntervalMs - (performance.now() - startedMs));
      if (restMs > 0) {
        // The pause between updates waits for the job's end only: a job that ends during
        // it is reported at once, not up to `minIntervalMs` later.
        const end = await retryTransient(ctx.config, signal, () =>
          ctx.jobs.getJob({ jobId, waitMs: restMs, untilTerminal: true }, toCallOptions(ctx.config, options, restMs)),
        );
        const endWire = requireStatus(end.status, jobId);
        const endStatus = fromWireStatus(endWire, jobId);
        if (isTerminal(endStatus.state)) {
          yield endStatus;
          return;
        }
      }
      continue;
    }
    if (performance.now() - startedMs < EARLY_RETURN_MS) {
      await sleep(backoffMs, signal);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }
  }
}

async function* followProgress(
  ctx: ClientContext,
  jobId: string,
  options: WaitOptions | undefined,
): AsyncGenerator<JobProgress, void, undefined> {
  const estimator = createRateEstimator();
  for await (const status of watchStatuses(ctx, jobId, options, 0)) {
    const estimate = estimator.observe(performance.now(), status.shardsDone, status.shardsTotal, isTerminal(status.state));
    yield { ...status, ...estimate };
  }
}

/**
 * Long-polls GetJob with `untilTerminal`, so the coordinator answers once when the job
 * ends instead of on every shard (one RPC per `longPollWaitMs`, not per change).
 */
async function waitForTerminal(
  ctx: ClientContext,
  jobId: string,
  options: WaitOptions | undefined,
  inlineResultMaxBytes = 0,
): Promise<{ status: JobStatusInfo; result?: WireMatrixRef | undefined }> {
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  const signal = options?.signal;
  const waitMs = ctx.config.longPollWaitMs;
  const pollOptions = toCallOptions(ctx.config, options, waitMs);
  let backoffMs = MIN_BACKOFF_MS;
  for (;;) {
    throwIfAborted(signal);
    const startedMs = performance.now();
    const res = await retryTransient(ctx.config, signal, () =>
      ctx.jobs.getJob({ jobId, waitMs, untilTerminal: true, inlineResultMaxBytes }, pollOptions),
    );
    const status = fromWireStatus(requireStatus(res.status, jobId), jobId);
    if (isTerminal(status.state)) return { status, result: res.result };
    // A coordinator that returned early without news (e.g. draining): back off a little.
    if (performance.now() - startedMs < EARLY_RETURN_MS) {
      await sleep(backoffMs, signal);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }
  }
}

async function waitForResult(ctx: ClientContext, jobId: string, options: WaitOptions | undefined): Promise<Matrix> {
  // A small C comes back inline with the status that says the job is done.
  const inlineMax = Math.min(INLINE_RESULT_MAX_BYTES, ctx.config.chunkBytes);
  const { status: last, result: inline } = await waitForTerminal(ctx, jobId, options, inlineMax);
  if (last.state === "failed") throw new JobFailedError(last);
  if (last.state === "cancelled") throw new JobCancelledError(last);
  if (inline !== undefined && inline.inlineData.byteLength > 0) {
    const size = inline.rows * inline.cols * 8;
    if (inline.inlineData.byteLength !== size) {
      throw new ConnectError(
        `inline result of job ${jobId} is ${inline.inlineData.byteLength} bytes, expected ${size}`,
        Code.DataLoss,
      );
    }
    const copy = new Uint8Array(size);
    copy.set(inline.inlineData);
    const sha256 = createHash("sha256").update(copy).digest("hex");
    if (sha256 !== inline.blobId) {
      throw new ConnectError(`inline result of job ${jobId} has SHA-256 ${sha256}, expected ${inline.blobId}`, Code.DataLoss);
    }
    return { rows: inline.rows, cols: inline.cols, data: new Float64Array(copy.buffer) };
  }

  const callOptions = toCallOptions(ctx.config, options);
  const res = await retryTransient(ctx.config, options?.signal, () => ctx.jobs.getResult({ jobId }, callOptions));
  const ref = res.result;
  if (ref === undefined || ref.blobId === "") {
    throw new ConnectError(`coordinator returned no result blob for job ${jobId}`, Code.Internal);
  }
  const expectedBytes = BigInt(ref.rows) * BigInt(ref.cols) * 8n;
  if (ref.rows === 0 || ref.cols === 0 || res.sizeBytes !== expectedBytes) {
    throw new ConnectError(`result of job ${jobId} is ${ref.rows}x${ref.cols} but ${res.sizeBytes} bytes`, Code.DataLoss);
  }
  const data = await readBlob(ctx, res.localStore, ref.blobId, Number(expectedBytes), options);
  return { rows: ref.rows, cols: ref.cols, data };
}

/**
 * Reads a whole blob into a fresh Float64Array and checks its SHA-256: from the
 * coordinator's store on this host when it is offered and reachable, otherwise (or when
 * the file cannot be read) by ReadBlob chunks, each retried while the coordinator is
 * unreachable.
 */
async function readBlob(
  ctx: ClientContext,
  offered: LocalStore | undefined,
  blobId: string,
  sizeBytes: number,
  options: RequestOptions | undefined,
): Promise<Float64Array> {
  assertLittleEndianHost();
  const buffer = new ArrayBuffer(sizeBytes);
  await ctx.transfer.readBlob(blobId, new Uint8Array(buffer), {
    callOptions: toCallOptions(ctx.config, options),
    call: (_name, rpc) => retryTransient(ctx.config, options?.signal, rpc),
    localStore: ctx.config.useLocalStore ? accessLocalStore(offered) : undefined,
  });
  return new Float64Array(buffer);
}

async function cancelJob(ctx: ClientContext, jobId: string, options: CancelOptions | undefined): Promise<JobStatusInfo> {
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  const res = await ctx.jobs.cancelJob({ jobId, reason: options?.reason ?? "" }, toCallOptions(ctx.config, options));
  return fromWireStatus(requireStatus(res.status, jobId), jobId);
}

async function deleteJob(ctx: ClientContext, jobId: string, options: RequestOptions | undefined): Promise<void> {
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  await ctx.jobs.deleteJob({ jobId }, toCallOptions(ctx.config, options));
}

function requireStatus<T>(status: T | undefined, jobId: string): T {
  if (status === undefined) {
    throw new ConnectError(`coordinator returned no status for job ${jobId}`, Code.Internal);
  }
  return status;
}
