/**
 * `createClient`: the entry point of the dce client SDK.
 *
 * @packageDocumentation
 */
import { Code, ConnectError, createClient as createRpcClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BlobService, ErrorReason, JobService } from "@dce/proto";
import { createBlobTransfer } from "@dce/runtime/blob-transfer";
import { WideWindowSessionManager } from "@dce/runtime/http2";
import { pemProblem } from "@dce/runtime/tls";
import { errorReason } from "./error-reason.js";
import { DimensionMismatchError, InvalidMatrixError } from "./errors.js";
import { createBulkChannel, nodeOptionsOf, ping } from "./internal/connection.js";
import {
  type ClientConfig,
  type ClientContext,
  checkTimeoutMs,
  MESSAGE_OVERHEAD_BYTES,
  toCallOptions,
} from "./internal/context.js";
import { assertLittleEndianHost } from "./internal/host.js";
import { tlsErrorInterceptor } from "./internal/tls-errors.js";
import { createJobHandle, type JobHandle } from "./job-handle.js";
import { type JobList, type ListJobsOptions, listJobs } from "./job-list.js";
import type { Matrix, MatrixRef, RequestOptions } from "./types.js";

/** Options of {@link createClient}. */
export interface ClientOptions {
  /**
   * Coordinator URL, e.g. `https://coordinator.example:7070`. `http://` URLs
   * are allowed and speak plaintext HTTP/2 (development only).
   */
  readonly baseUrl: string;
  /**
   * PEM of the CA that signed the coordinator's certificate. When given, the
   * server certificate is verified against this CA only (instead of the
   * system roots). Requires an `https://` base URL.
   */
  readonly ca?: string | Uint8Array;
  /**
   * Bearer token from `coordinator tokens add NAME`, sent with every RPC as
   * `authorization: Bearer <token>`. A coordinator with authentication on answers
   * `Unauthenticated` without a valid one; the jobs submitted with it belong to NAME,
   * and jobs of other clients answer `NotFound`. The SDK never logs it.
   */
  readonly token?: string;
  /** Default timeout of each RPC in milliseconds; default 30_000; 0 disables it. */
  readonly timeoutMs?: number;
  /**
   * Largest message sent or accepted, in bytes; default 4 MiB (4_194_304).
   * Applies to the transport's `readMaxBytes` and `writeMaxBytes`; blob chunks
   * are at most this minus 64 KiB. Must exceed 64 KiB.
   */
  readonly maxMessageBytes?: number;
  /**
   * How long each `GetJob` long-poll asks the coordinator to hold the request,
   * in milliseconds; default 10_000. The RPC deadline is `timeoutMs` on top.
   */
  readonly longPollWaitMs?: number;
  /**
   * How long waits (`result()`, `progress()`) and result downloads keep retrying
   * while the coordinator is unreachable (e.g. restarting), in milliseconds;
   * default 60_000. 0 disables the retries.
   */
  readonly reconnectBudgetMs?: number;
  /**
   * Move matrix bytes through the coordinator's blob files instead of RPCs when it offers
   * its store (`coordinator --local-store on`, the default) and this process can reach
   * it: same host, permission on the data dir. Uploads are written into the upload file
   * and C is read from its blob file; both are still checked against their SHA-256.
   * Default true; anything that fails falls back to the RPCs.
   */
  readonly useLocalStore?: boolean;
  /**
   * Transport to use instead of the gRPC-over-HTTP/2 one built from
   * `baseUrl`/`ca`/`maxMessageBytes`, e.g. `createRouterTransport()` in tests.
   */
  readonly transport?: Transport;
}

/** An output tile shape. */
export interface TileSize {
  /** Rows of one output tile. */
  readonly rows: number;
  /** Columns of one output tile. */
  readonly cols: number;
}

/** Options of {@link DceClient.submitMatMul}. */
export interface SubmitOptions extends RequestOptions {
  /**
   * At most 128 characters. Submitting again with the same key and the same
   * inputs returns the same job; with different inputs the coordinator
   * rejects the submit with `AlreadyExists`.
   */
  readonly idempotencyKey?: string;
  /** Output tile shape; a number means a square tile. Default: the coordinator's. */
  readonly tileSize?: number | TileSize;
  /** Kernel name (e.g. `"reference"`); default `"auto"`, the fastest kernel all workers share. */
  readonly kernel?: string;
  /**
   * An integer from -100 to 100, default 0. Among this client's jobs, a higher priority
   * is granted work first (first submitted first within a priority). It does not take
   * work from other clients: they share the workers by their tokens' weights.
   */
  readonly priority?: number;
  /**
   * How long the coordinator keeps the job and its result after the job ends, in ms;
   * default its `--retention` (7 days unless its operator changed it). More than its
   * `--max-retention` is refused with `InvalidArgument`.
   */
  readonly retentionMs?: number;
}

/** A matrix to multiply: either its data, or a reference to an earlier upload. */
export type MatrixInput = Matrix | MatrixRef;

/**
 * A client of one dce coordinator. Create it with {@link createClient}.
 *
 * Every async method takes `{ signal?, timeoutMs? }` last. RPC failures reject
 * with `ConnectError`; problems found locally with SDK errors.
 */
export interface DceClient {
  /**
   * Stores a matrix on the coordinator and returns a reference to it.
   *
   * The blob id is the SHA-256 of the matrix bytes. If the coordinator already
   * holds that content, nothing is sent. Otherwise the bytes go in chunks of
   * at most `min(server limit, maxMessageBytes - 64 KiB)`, in order, without
   * copying the whole matrix.
   *
   * @throws {@link InvalidMatrixError} if the matrix is malformed or has a zero dimension.
   * @throws ConnectError on RPC failure or abort.
   */
  uploadMatrix(matrix: Matrix, options?: RequestOptions): Promise<MatrixRef>;

  /**
   * Submits C = A x B and returns a handle on the job. Uploads A and B first
   * unless they are {@link MatrixRef}s (the same object is uploaded once).
   *
   * Aborting `signal` stops the upload or submit; a job already created keeps
   * running. Pass an `idempotencyKey` to make retrying a submit safe.
   *
   * @example
   * <!-- docs-test: prelude
   * import { readFileSync } from "node:fs";
   * import { createClient } from "@dce/client-sdk";
   * const caPem = readFileSync("ca.pem", "utf8");
   * const a = { rows: 2, cols: 2, data: new Float64Array([1, 2, 3, 4]) };
   * const b = a;
   * -->
   * ```ts
   * const client = createClient({ baseUrl: "https://127.0.0.1:7070", ca: caPem, token: process.env.DCE_TOKEN });
   * const job = await client.submitMatMul(a, b, { idempotencyKey: "nightly-2026-12-01" });
   * for await (const p of job.progress()) console.log(p.shardsDone, "/", p.shardsTotal);
   * const c = await job.result(); // throws JobFailedError | JobCancelledError
   * ```
   *
   * @throws {@link DimensionMismatchError} if `a.cols !== b.rows`.
   * @throws {@link InvalidMatrixError} if either matrix is malformed or has a zero dimension.
   * @throws RangeError for a bad `tileSize`, `idempotencyKey`, `priority` or `timeoutMs`.
   * @throws ConnectError on RPC failure or abort (e.g. `AlreadyExists` for a
   *   reused idempotency key with other inputs).
   */
  submitMatMul(a: MatrixInput, b: MatrixInput, options?: SubmitOptions): Promise<JobHandle>;

  /**
   * Returns a handle on an existing job, e.g. one submitted by another process.
   * Makes no RPC: an unknown id shows up as `NotFound` when the handle is used.
   */
  getJobHandle(jobId: string): JobHandle;

  /**
   * Deletes a job and its result now (see {@link JobHandle.delete}); a running job is
   * cancelled first. Afterwards the job answers `NotFound`.
   *
   * @throws ConnectError `NotFound` for an unknown, deleted or another client's job.
   */
  deleteJob(jobId: string, options?: RequestOptions): Promise<void>;

  /**
   * Lists this client's jobs (an admin token: every client's), newest first. The result
   * is an async iterable that fetches pages lazily as it is iterated; `byPage()` yields
   * the pages with their `nextPageToken`, for callers who page themselves.
   *
   * @example
   * <!-- docs-test: prelude
   * import { readFileSync } from "node:fs";
   * import { createClient } from "@dce/client-sdk";
   * const client = createClient({ baseUrl: "https://127.0.0.1:7070", ca: readFileSync("ca.pem", "utf8"), token: process.env.DCE_TOKEN });
   * const m = { rows: 2, cols: 2, data: new Float64Array([1, 2, 3, 4]) };
   * await client.submitMatMul(m, m);
   * -->
   * ```ts
   * for await (const job of client.listJobs({ states: ["running", "queued"] })) {
   *   console.log(job.jobId, job.state, `${job.shardsDone}/${job.shardsTotal}`);
   * }
   * for await (const page of client.listJobs({ pageSize: 20 }).byPage()) {
   *   console.log(page.jobs.length, "jobs; next:", page.nextPageToken || "(last page)");
   * }
   * ```
   *
   * @throws RangeError (at once) for an unknown state or a `pageSize` outside 1 to 1000.
   * @throws ConnectError while iterating, on RPC failure (`InvalidArgument` for a
   *   `pageToken` of another listing).
   */
  listJobs(options?: ListJobsOptions): JobList;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
const DEFAULT_LONG_POLL_WAIT_MS = 10_000;
const DEFAULT_RECONNECT_BUDGET_MS = 60_000;
const MAX_DIMENSION = 2 ** 31;
const MAX_UINT32 = 2 ** 32 - 1;
const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
/** The job priorities a coordinator accepts (SubmitJobRequest.priority). */
const MIN_PRIORITY = -100;
const MAX_PRIORITY = 100;

/**
 * Creates a client of a dce coordinator. Makes no connection until the first
 * RPC; the HTTP/2 connection does not keep the process alive while idle.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { createClient, parseNpy } from "@dce/client-sdk";
 *
 * const client = createClient({
 *   baseUrl: "https://127.0.0.1:7070",
 *   ca: await readFile("ca.pem", "utf8"),
 *   token: process.env.DCE_TOKEN, // from `coordinator tokens add NAME`
 * });
 * const a = parseNpy(await readFile("a.npy"));
 * const b = parseNpy(await readFile("b.npy"));
 * const job = await client.submitMatMul(a, b);
 * const c = await job.result({ signal: AbortSignal.timeout(600_000) });
 * ```
 *
 * @throws TypeError if `baseUrl` is not an `http://` or `https://` URL, or
 *   `ca` is not PEM certificates or is given with an `http://` URL.
 * @throws RangeError if a numeric option is out of range.
 */
export function createClient(options: ClientOptions): DceClient {
  const config = resolveConfig(options);
  const transport = options.transport ?? createTransport(options, config);
  // Matrix bytes go on a connection of their own, without Connect's copies; a transport
  // the caller gives carries everything.
  const bulk = options.transport === undefined ? createBulkChannel(options) : undefined;
  const ctx: ClientContext = {
    jobs: createRpcClient(JobService, transport),
    transfer: createBlobTransfer(createRpcClient(BlobService, transport), {
      chunkBytes: config.chunkBytes,
      ...(bulk !== undefined ? { bulk } : {}),
    }),
    config,
  };
  return {
    uploadMatrix: (matrix, requestOptions) => {
      validateMatrix(matrix, "matrix");
      checkTimeoutMs(requestOptions?.timeoutMs, "timeoutMs");
      return uploadMatrix(ctx, matrix, requestOptions);
    },
    submitMatMul: (a, b, submitOptions) => submitMatMul(ctx, a, b, submitOptions),
    getJobHandle: (jobId) => {
      if (typeof jobId !== "string" || jobId === "") {
        throw new TypeError("jobId must be a non-empty string");
      }
      return createJobHandle(ctx, jobId);
    },
    deleteJob: (jobId, requestOptions) => {
      if (typeof jobId !== "string" || jobId === "") throw new TypeError("jobId must be a non-empty string");
      return createJobHandle(ctx, jobId).delete(requestOptions);
    },
    listJobs: (listOptions) => listJobs(ctx, listOptions),
  };
}

function resolveConfig(options: ClientOptions): ClientConfig {
  let url: URL;
  try {
    url = new URL(options.baseUrl);
  } catch {
    throw new TypeError(`baseUrl ${JSON.stringify(options.baseUrl)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`baseUrl must start with http:// or https://, got ${JSON.stringify(options.baseUrl)}`);
  }
  if (options.ca !== undefined && url.protocol !== "https:") {
    throw new TypeError("ca is only used with an https:// baseUrl");
  }
  // Node ignores a CA that is not PEM and then trusts nothing: refuse it here, as the bins do.
  const caProblem = options.ca === undefined ? undefined : pemProblem(options.ca, "certificate");
  if (caProblem !== undefined) throw new TypeError(`ca ${caProblem}`);
  if (options.token !== undefined && (typeof options.token !== "string" || !/^[\x21-\x7e]{1,256}$/.test(options.token))) {
    // Checked here so a bad token fails fast instead of as an invalid header mid-call.
    throw new TypeError("token must be 1 to 256 printable ASCII characters without spaces");
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  checkTimeoutMs(timeoutMs, "timeoutMs");
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes <= MESSAGE_OVERHEAD_BYTES || maxMessageBytes > MAX_UINT32) {
    throw new RangeError(
      `maxMessageBytes must be an integer in (${MESSAGE_OVERHEAD_BYTES}, ${MAX_UINT32}], got ${maxMessageBytes}`,
    );
  }
  const longPollWaitMs = options.longPollWaitMs ?? DEFAULT_LONG_POLL_WAIT_MS;
  if (!Number.isInteger(longPollWaitMs) || longPollWaitMs < 1 || longPollWaitMs > MAX_UINT32) {
    throw new RangeError(`longPollWaitMs must be a positive integer, got ${longPollWaitMs}`);
  }
  const reconnectBudgetMs = options.reconnectBudgetMs ?? DEFAULT_RECONNECT_BUDGET_MS;
  if (!Number.isFinite(reconnectBudgetMs) || reconnectBudgetMs < 0) {
    throw new RangeError(`reconnectBudgetMs must be a finite number >= 0, got ${reconnectBudgetMs}`);
  }
  return {
    timeoutMs,
    maxMessageBytes,
    chunkBytes: maxMessageBytes - MESSAGE_OVERHEAD_BYTES,
    longPollWaitMs,
    reconnectBudgetMs,
    useLocalStore: options.useLocalStore ?? true,
  };
}

function createTransport(options: ClientOptions, config: ClientConfig): Transport {
  const { ca, token } = options;
  const nodeOptions = nodeOptionsOf(options);
  // The gRPC transport always speaks HTTP/2 (it has no httpVersion option).
  return createGrpcTransport({
    interceptors: [tlsErrorInterceptor({ baseUrl: options.baseUrl, ca }), ...(token === undefined ? [] : [bearerToken(token)])],
    baseUrl: options.baseUrl,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // float64 data barely compresses; gzip only costs CPU on the data plane.
    acceptCompression: [],
    // Wide flow-control windows: a 4 MiB chunk crosses in one window, not 64.
    sessionManager: new WideWindowSessionManager(options.baseUrl, ping, nodeOptions),
  });
}

/** Sends `authorization: Bearer <token>` with every RPC. */
function bearerToken(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

function isMatrixRef(m: MatrixInput): m is MatrixRef {
  return typeof m === "object" && m !== null && "blobId" in m && !("data" in m);
}

/** Checks a shape against the wire limits; `label` names the argument in messages. */
function validateShape(rows: unknown, cols: unknown, argument: string, label: string): void {
  const ok = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= MAX_DIMENSION;
  if (!ok(rows) || !ok(cols)) {
    throw new InvalidMatrixError(
      `${label} is ${String(rows)}x${String(cols)}; rows and cols must be integers from 1 to 2^31`,
      argument,
    );
  }
}

function validateMatrix(m: Matrix, argument: string, label = "matrix"): void {
  if (typeof m !== "object" || m === null) {
    throw new InvalidMatrixError(`${label} must be an object { rows, cols, data }`, argument);
  }
  validateShape(m.rows, m.cols, argument, label);
  // toString tag instead of instanceof: works for arrays from other realms.
  if (Object.prototype.toString.call(m.data) !== "[object Float64Array]") {
    throw new InvalidMatrixError(`${label}.data must be a Float64Array`, argument);
  }
  if (m.data.length !== m.rows * m.cols) {
    throw new InvalidMatrixError(
      `${label} is ${m.rows}x${m.cols} but data has ${m.data.length} elements, expected ${m.rows * m.cols}`,
      argument,
    );
  }
}

function validateInput(m: MatrixInput, argument: string, label: string): void {
  if (isMatrixRef(m)) {
    validateShape(m.rows, m.cols, argument, label);
    if (typeof m.blobId !== "string" || m.blobId === "") {
      throw new InvalidMatrixError(`${label}.blobId must be a non-empty string`, argument);
    }
  } else {
    validateMatrix(m, argument, label);
  }
}

function resolveTileSize(tile: number | TileSize | undefined): { tileRows: number; tileCols: number } {
  if (tile === undefined) return { tileRows: 0, tileCols: 0 };
  const { rows, cols } = typeof tile === "number" ? { rows: tile, cols: tile } : tile;
  const ok = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= MAX_UINT32;
  if (!ok(rows) || !ok(cols)) {
    throw new RangeError(`tileSize must be positive integers, got ${rows}x${cols}`);
  }
  return { tileRows: rows, tileCols: cols };
}

/** A matrix for SubmitJob: uploaded (a blob id) or, when small, the bytes inline. */
type SubmitRef = MatrixRef & { readonly inlineData?: Uint8Array };

/** A matrix for SubmitJob: small ones ride inside it (the coordinator names the blob), others are uploaded. */
function submitRef(ctx: ClientContext, matrix: Matrix, options: RequestOptions | undefined): SubmitRef | Promise<MatrixRef> {
  const { rows, cols, data } = matrix;
  if (data.byteLength > Math.min(INLINE_MAX_BYTES, ctx.config.chunkBytes / 4)) return uploadMatrix(ctx, matrix, options);
  assertLittleEndianHost();
  return { rows, cols, blobId: "", inlineData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

async function uploadMatrix(ctx: ClientContext, matrix: Matrix, options: RequestOptions | undefined): Promise<MatrixRef> {
  assertLittleEndianHost();
  const { rows, cols, data } = matrix;
  // A view on the caller's memory: the chunks sent are subarrays of it, never copies.
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const blobId = await ctx.transfer.upload(bytes, {
    callOptions: toCallOptions(ctx.config, options),
    useLocalStore: ctx.config.useLocalStore,
  });
  return { rows, cols, blobId };
}

/** Largest matrix sent inline in SubmitJob (the coordinator's limit). */
const INLINE_MAX_BYTES = 1024 * 1024;

function inlineOf(ref: SubmitRef | MatrixRef): Uint8Array {
  return "inlineData" in ref && ref.inlineData !== undefined ? ref.inlineData : new Uint8Array(0);
}

async function submitMatMul(
  ctx: ClientContext,
  a: MatrixInput,
  b: MatrixInput,
  options: SubmitOptions | undefined,
): Promise<JobHandle> {
  // Everything checkable locally is checked before any upload starts.
  validateInput(a, "a", "A");
  validateInput(b, "b", "B");
  if (a.cols !== b.rows) throw new DimensionMismatchError(a, b);
  const { tileRows, tileCols } = resolveTileSize(options?.tileSize);
  const idempotencyKey = options?.idempotencyKey ?? "";
  if (typeof idempotencyKey !== "string" || idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new RangeError(`idempotencyKey must be a string of at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  }
  const priority = options?.priority ?? 0;
  if (!Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
    throw new RangeError(`priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got ${String(priority)}`);
  }
  checkTimeoutMs(options?.timeoutMs, "timeoutMs");
  const retentionMs = options?.retentionMs ?? 0;
  if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
    throw new RangeError(`retentionMs must be a non-negative integer (0: the coordinator's default), got ${retentionMs}`);
  }

  // A and B go up side by side (two upload sessions on one connection).
  const upload = () => {
    const upA = isMatrixRef(a) ? a : submitRef(ctx, a, options);
    const upB = b === a ? upA : isMatrixRef(b) ? b : submitRef(ctx, b, options);
    return Promise.all([upA, upB]);
  };
  const submit = ([refA, refB]: [SubmitRef | MatrixRef, SubmitRef | MatrixRef]) =>
    ctx.jobs.submitJob(
      {
        idempotencyKey,
        matmul: {
          a: { rows: refA.rows, cols: refA.cols, blobId: refA.blobId, inlineData: inlineOf(refA) },
          b: { rows: refB.rows, cols: refB.cols, blobId: refB.blobId, inlineData: inlineOf(refB) },
          tileRows,
          tileCols,
          kernel: options?.kernel ?? "",
        },
        priority,
        retentionMs: BigInt(retentionMs),
      },
      toCallOptions(ctx.config, options),
    );
  let res: Awaited<ReturnType<typeof submit>>;
  try {
    res = await submit(await upload());
  } catch (e) {
    // The coordinator collected an upload of ours before the submit named it (its bytes
    // were a deleted job's, or the upload outlived --blob-grace): send the data again, once.
    // A blob id the caller passed in is theirs to re-upload.
    if (errorReason(e) !== ErrorReason.BLOB_NOT_FOUND || (isMatrixRef(a) && isMatrixRef(b))) throw e;
    res = await submit(await upload());
  }
  if (res.jobId === "") {
    throw new ConnectError("coordinator returned an empty job id", Code.Internal);
  }
  return createJobHandle(ctx, res.jobId);
}
