/**
 * Error classes thrown by the dce client SDK.
 *
 * RPC failures are not wrapped: they surface as `ConnectError` from
 * `@connectrpc/connect` (re-exported by this package). The classes here cover
 * what is not an RPC failure: bad inputs detected locally and job outcomes.
 *
 * `instanceof` works across two installed copies of the SDK: every instance
 * carries a list of brand names under a `Symbol.for` key, and each class checks
 * that list in `static [Symbol.hasInstance]` instead of the prototype chain.
 *
 * @packageDocumentation
 */
import type { JobState, JobStatusInfo } from "./types.js";

// Symbol.for makes the key identical in every copy of this module.
const BRANDS_KEY = Symbol.for("@dce/client-sdk/error-brands");

// Class -> brand name. A WeakMap keeps the brand out of the public type; the
// names themselves are plain strings, so they compare equal across copies.
const classBrands = new WeakMap<object, string>();

function addBrand(target: object, brand: string): void {
  const existing: unknown = Reflect.get(target, BRANDS_KEY);
  if (Array.isArray(existing)) {
    existing.push(brand);
    return;
  }
  Object.defineProperty(target, BRANDS_KEY, {
    value: [brand],
    enumerable: false,
    writable: false,
    configurable: false,
  });
}

function hasBrand(value: unknown, brand: string): boolean {
  if (typeof value !== "object" || value === null) return false;
  const brands: unknown = Reflect.get(value, BRANDS_KEY);
  return Array.isArray(brands) && brands.includes(brand);
}

/**
 * Base class of every error the SDK itself throws (not of `ConnectError`).
 *
 * Use it to tell SDK errors apart from RPC failures and programming errors.
 */
export class DceError extends Error {
  /** Matches instances of this class made by any installed copy of the SDK. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // `this` is the class on the right of `instanceof`, possibly a subclass.
    // biome-ignore lint/complexity/noThisInStatic: must be the class being tested, not DceError
    const brand = classBrands.get(this);
    // Subclasses defined outside the SDK have no brand: fall back to prototypes.
    // biome-ignore lint/complexity/noThisInStatic: must be the class being tested, not DceError
    if (brand === undefined) return Function.prototype[Symbol.hasInstance].call(this, value);
    return hasBrand(value, brand);
  }

  /** Creates the error; `cause` is kept as the standard `Error.cause`. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    addBrand(this, "DceError");
  }
  override name = "DceError";
}

/**
 * A matrix passed to the SDK is malformed: rows or cols are not integers in
 * `[1, 2^31]`, `data` is not a `Float64Array`, or `data.length !== rows * cols`.
 *
 * Zero-sized matrices (which `parseNpy` accepts) are rejected with this error.
 */
export class InvalidMatrixError extends DceError {
  /** Which argument was wrong, e.g. `"a"`, `"b"` or `"matrix"`. */
  readonly argument: string;
  /** Creates the error. */
  constructor(message: string, argument: string) {
    super(message);
    addBrand(this, "InvalidMatrixError");
    this.argument = argument;
  }
  override name = "InvalidMatrixError";
}

/** Shape of a matrix, used in error reports. */
export interface MatrixShape {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
}

/**
 * The inner dimensions of `A x B` differ (`a.cols !== b.rows`), so the product
 * is undefined. Detected locally before anything is uploaded.
 */
export class DimensionMismatchError extends InvalidMatrixError {
  /** Shape of the left operand. */
  readonly a: MatrixShape;
  /** Shape of the right operand. */
  readonly b: MatrixShape;
  /** Creates the error with the message `inner dimensions do not match: A is RxC, B is RxC`. */
  constructor(a: MatrixShape, b: MatrixShape) {
    super(`inner dimensions do not match: A is ${a.rows}x${a.cols}, B is ${b.rows}x${b.cols}`, "b");
    addBrand(this, "DimensionMismatchError");
    this.a = { rows: a.rows, cols: a.cols };
    this.b = { rows: b.rows, cols: b.cols };
  }
  override name = "DimensionMismatchError";
}

/**
 * Bytes given to `parseNpy` are not a supported NumPy `.npy` file. The message
 * is one line naming the problem (bad magic, unsupported dtype, shape, ...).
 */
export class NpyFormatError extends DceError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    addBrand(this, "NpyFormatError");
  }
  override name = "NpyFormatError";
}

/**
 * Base class of errors that report how a job ended (failed or cancelled).
 *
 * `cause` is an `Error` whose message is the coordinator's reason, when it gave one.
 */
export class JobError extends DceError {
  /** The job this error is about. */
  readonly jobId: string;
  /** Final status of the job as reported by the coordinator. */
  readonly status: JobStatusInfo;
  /** Coordinator's human-readable reason; empty if none was given. */
  readonly reason: string;
  /** Creates the error from the job's terminal status. */
  constructor(message: string, status: JobStatusInfo) {
    const reason = status.error ?? "";
    super(message, reason === "" ? {} : { cause: new Error(reason) });
    addBrand(this, "JobError");
    this.jobId = status.jobId;
    this.status = status;
    this.reason = reason;
  }
  override name = "JobError";
}

/** The job reached state `failed` (a shard exhausted its attempts, or assembly failed). */
export class JobFailedError extends JobError {
  /** Creates the error from the job's terminal status. */
  constructor(status: JobStatusInfo) {
    super(describeOutcome(status, "failed"), status);
    addBrand(this, "JobFailedError");
  }
  override name = "JobFailedError";
}

/** The job reached state `cancelled` (someone called `cancel()` on it). */
export class JobCancelledError extends JobError {
  /** Creates the error from the job's terminal status. */
  constructor(status: JobStatusInfo) {
    super(describeOutcome(status, "cancelled"), status);
    addBrand(this, "JobCancelledError");
  }
  override name = "JobCancelledError";
}

function describeOutcome(status: JobStatusInfo, state: JobState): string {
  const reason = status.error;
  return reason === undefined || reason === "" ? `job ${status.jobId} ${state}` : `job ${status.jobId} ${state}: ${reason}`;
}

/**
 * {@link startLocalCluster} could not start a development cluster: `@dce/coordinator`
 * (or `@dce/worker`) is not installed, or `coordinator dev` exited or timed out before
 * printing its address. The message says what to install or ends with the command's last output.
 */
export class LocalClusterError extends DceError {
  /** Creates the error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    addBrand(this, "LocalClusterError");
  }
  override name = "LocalClusterError";
}

classBrands.set(DceError, "DceError");
classBrands.set(InvalidMatrixError, "InvalidMatrixError");
classBrands.set(DimensionMismatchError, "DimensionMismatchError");
classBrands.set(NpyFormatError, "NpyFormatError");
classBrands.set(JobError, "JobError");
classBrands.set(JobFailedError, "JobFailedError");
classBrands.set(JobCancelledError, "JobCancelledError");
classBrands.set(LocalClusterError, "LocalClusterError");
