import { err, ok, type Result } from "./errors.js";
import { quote } from "./text.js";

/** A matrix the coordinator holds as one content-addressed blob (row-major little-endian float64). */
export interface MatrixDesc {
  readonly rows: number;
  readonly cols: number;
  /** Lower-case hex SHA-256 of the blob. */
  readonly blobId: string;
}

/** A validated request to compute C = A × B, with every default resolved. */
export interface MatMulSpec {
  readonly a: MatrixDesc;
  readonly b: MatrixDesc;
  readonly tileRows: number;
  readonly tileCols: number;
  /** A registered kernel name, or `"auto"`. */
  readonly kernel: string;
}

/** The spec as it arrives from a client, before validation; 0 / "" mean "use the default". */
export interface MatMulSpecInput {
  readonly a?: { rows: number; cols: number; blobId: string } | undefined;
  readonly b?: { rows: number; cols: number; blobId: string } | undefined;
  readonly tileRows: number;
  readonly tileCols: number;
  readonly kernel: string;
}

/**
 * Kernels the engine knows, fastest first. A job may name one of these or `"auto"`;
 * nothing else is ever run (a kernel name is a registry key, never code or a path).
 */
export const KERNEL_REGISTRY: readonly string[] = ["native-avx512", "native-blas", "wasm-simd", "reference"];

/** Limits applied to every job. All are explicit so they can be documented and configured. */
export interface SpecLimits {
  /** Largest allowed rows or cols of any matrix. */
  readonly maxDim: number;
  /** Largest allowed size of one matrix (A, B or C) in bytes. */
  readonly maxMatrixBytes: number;
  /** Largest allowed total of A, B and C of one job, in bytes. */
  readonly maxJobBytes: number;
  /** Largest number of shards (output tiles) one job may plan. */
  readonly maxShardsPerJob: number;
  /** Largest output tile in bytes (tileRows × tileCols × 8). */
  readonly maxTileBytes: number;
  /**
   * Tile edge used when the client leaves it 0; 0 (the default) picks the tile from
   * the job's shape with {@link autoTile}.
   */
  readonly defaultTile: number;
  /** Known kernel names. */
  readonly kernels: readonly string[];
}

/** Default limits; each one is listed, with its flag, in docs/limits.md. */
export const DEFAULT_SPEC_LIMITS: SpecLimits = {
  maxDim: 1 << 20,
  maxMatrixBytes: 1024 * 1024 * 1024,
  maxJobBytes: 2 * 1024 * 1024 * 1024,
  maxShardsPerJob: 1 << 20,
  maxTileBytes: 64 * 1024 * 1024,
  defaultTile: 0,
  kernels: KERNEL_REGISTRY,
};

const BLOB_ID = /^[0-9a-f]{64}$/;

/** Why a spec was refused: malformed (`invalid-spec`) or over a named limit (`over-limit`). */
type SpecProblem = { limit?: string; message: string };

function checkMatrix(name: string, m: MatMulSpecInput["a"], limits: SpecLimits): SpecProblem | undefined {
  if (m === undefined) return { message: `matrix ${name} is missing` };
  for (const [field, v] of [
    ["rows", m.rows],
    ["cols", m.cols],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) return { message: `matrix ${name} has ${field}=${v}; it must be at least 1` };
    if (v > limits.maxDim)
      return { limit: "maxDim", message: `matrix ${name} has ${field}=${v}, over the limit maxDim=${limits.maxDim}` };
  }
  const bytes = m.rows * m.cols * 8;
  if (bytes > limits.maxMatrixBytes) {
    return {
      limit: "maxMatrixBytes",
      message: `matrix ${name} is ${m.rows}x${m.cols} (${bytes} bytes), over the limit maxMatrixBytes=${limits.maxMatrixBytes}`,
    };
  }
  if (!BLOB_ID.test(m.blobId)) {
    return { message: `matrix ${name} has an invalid blob id (expected 64 lower-case hex characters)` };
  }
  return undefined;
}

/**
 * Validates a client's job spec and fills in defaults. Pure.
 * @returns the resolved spec; or `invalid-spec` for a malformed spec, or `over-limit`
 *   (naming the limit in `limit` and in the message) for a spec over one of `limits`.
 */
export function validateMatMulSpec(input: MatMulSpecInput, limits: SpecLimits = DEFAULT_SPEC_LIMITS): Result<MatMulSpec> {
  const refuse = (p: SpecProblem) =>
    err<MatMulSpec>(
      p.limit === undefined
        ? { kind: "invalid-spec", message: p.message }
        : { kind: "over-limit", limit: p.limit, message: p.message },
    );
  const bad = (message: string) => refuse({ message });
  const over = (limit: string, message: string) => refuse({ limit, message });
  const ea = checkMatrix("A", input.a, limits);
  if (ea) return refuse(ea);
  const eb = checkMatrix("B", input.b, limits);
  if (eb) return refuse(eb);
  // Both checked above; the non-null assertions only satisfy the type checker.
  const a = input.a as MatrixDesc;
  const b = input.b as MatrixDesc;
  if (a.cols !== b.rows) {
    return bad(`inner dimensions do not match: A is ${a.rows}x${a.cols}, B is ${b.rows}x${b.cols}`);
  }
  const cBytes = a.rows * b.cols * 8;
  if (cBytes > limits.maxMatrixBytes) {
    return over(
      "maxMatrixBytes",
      `result C would be ${a.rows}x${b.cols} (${cBytes} bytes), over the limit maxMatrixBytes=${limits.maxMatrixBytes}`,
    );
  }
  const jobBytes = (a.rows * a.cols + b.rows * b.cols) * 8 + cBytes;
  if (jobBytes > limits.maxJobBytes) {
    return over("maxJobBytes", `A, B and C total ${jobBytes} bytes, over the limit maxJobBytes=${limits.maxJobBytes}`);
  }
  const auto = limits.defaultTile === 0 ? autoTile(a.rows, a.cols, b.cols, limits.maxTileBytes) : undefined;
  const tileRows = input.tileRows !== 0 ? input.tileRows : (auto?.tileRows ?? limits.defaultTile);
  const tileCols = input.tileCols !== 0 ? input.tileCols : (auto?.tileCols ?? limits.defaultTile);
  for (const [field, v] of [
    ["tileRows", tileRows],
    ["tileCols", tileCols],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) return bad(`${field}=${v}; it must be at least 1 (or 0 for the default)`);
  }
  const effRows = Math.min(tileRows, a.rows);
  const effCols = Math.min(tileCols, b.cols);
  if (effRows * effCols * 8 > limits.maxTileBytes) {
    return over(
      "maxTileBytes",
      `tile ${effRows}x${effCols} is ${effRows * effCols * 8} bytes, over the limit maxTileBytes=${limits.maxTileBytes}`,
    );
  }
  const shards = Math.ceil(a.rows / tileRows) * Math.ceil(b.cols / tileCols);
  if (shards > limits.maxShardsPerJob) {
    return over(
      "maxShardsPerJob",
      `the plan has ${shards} shards, over the limit maxShardsPerJob=${limits.maxShardsPerJob}; use a larger tile`,
    );
  }
  const kernel = input.kernel === "" ? "auto" : input.kernel;
  if (kernel !== "auto" && !limits.kernels.includes(kernel)) {
    return bad(`unknown kernel '${quote(kernel, 64)}'; known kernels: auto, ${limits.kernels.join(", ")}`);
  }
  return ok({
    a: { rows: a.rows, cols: a.cols, blobId: a.blobId },
    b: { rows: b.rows, cols: b.cols, blobId: b.blobId },
    tileRows: effRows,
    tileCols: effCols,
    kernel,
  });
}

/** Work per shard below which splitting a job further costs more than it gains (flops). */
const MIN_SHARD_FLOPS = 256e6;
/** Most shards the automatic tiling makes: enough to spread over many threads and balance them. */
const MAX_AUTO_SHARDS = 64;
/** Largest automatic tile in elements (2 MiB): a result tile travels inline in one message. */
const MAX_AUTO_TILE_ELEMENTS = 256 * 1024;

/**
 * The tile for a job that leaves it to the engine: as many shards as the work justifies
 * (at least {@link MIN_SHARD_FLOPS} each, at most {@link MAX_AUTO_SHARDS}), each tile as
 * square as the shape allows (BLAS packs a row panel of A and a column panel of B per
 * call, so square tiles waste the least on packing) and at most 2 MiB, edges a multiple
 * of 8. Depends only on the shape, never on the cluster, so the same inputs always get
 * the same plan and the same bytes.
 */
export function autoTile(m: number, k: number, n: number, maxTileBytes: number): { tileRows: number; tileCols: number } {
  const maxElements = Math.max(1, Math.min(MAX_AUTO_TILE_ELEMENTS, Math.floor(maxTileBytes / 8)));
  const shards = Math.max(1, Math.min(MAX_AUTO_SHARDS, Math.floor((2 * m * k * n) / MIN_SHARD_FLOPS)));
  const area = Math.max(1, Math.min(maxElements, Math.ceil((m * n) / shards)));
  const round8 = (x: number) => Math.max(8, Math.ceil(x / 8) * 8);
  // Square when both sides allow it; otherwise the short side whole and the other to fit.
  // Then even out: cut each side into equal parts (no thin last tile).
  const even = (len: number, side: number) => Math.min(len, round8(len / Math.ceil(len / Math.max(1, side))));
  let tileCols = Math.min(n, round8(Math.sqrt(area)));
  let tileRows = Math.min(m, round8(area / tileCols));
  if (tileRows === m) tileCols = Math.min(n, Math.max(tileCols, Math.floor(area / m)));
  if (tileCols === n) tileRows = Math.min(m, Math.max(tileRows, Math.floor(area / n)));
  tileCols = even(n, tileCols);
  tileRows = even(m, tileRows);
  // Never over the byte limit (rounding up to 8 may have crossed it).
  while (tileRows * tileCols > maxElements && tileRows > 1) tileRows = Math.max(1, tileRows - 8);
  return { tileRows, tileCols };
}

/** True when two resolved specs describe the same computation (used for idempotent submit). */
export function sameSpec(x: MatMulSpec, y: MatMulSpec): boolean {
  return (
    x.a.rows === y.a.rows &&
    x.a.cols === y.a.cols &&
    x.a.blobId === y.a.blobId &&
    x.b.rows === y.b.rows &&
    x.b.cols === y.b.cols &&
    x.b.blobId === y.b.blobId &&
    x.tileRows === y.tileRows &&
    x.tileCols === y.tileCols &&
    x.kernel === y.kernel
  );
}
