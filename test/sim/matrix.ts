// Matrices of a simulated job: seeded data, the naive kernel the simulated workers
// run on one tile, and the single-process multiply the final C is compared with.
import type { TileBounds } from "@dce/core";
import type { Rng } from "./prng.js";

/** A dense row-major float64 matrix. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/**
 * The two builds of the reference kernel the simulated workers run. They sum the inner
 * dimension in opposite orders, so on random data their bytes differ: a job that mixed
 * builds (or ran one not pinned to it) would not be byte-identical to the multiply.
 */
export const FINGERPRINTS = ["sim-asc", "sim-desc"] as const;
export type Fingerprint = (typeof FINGERPRINTS)[number];

/** A matrix of full-precision random values in [-1, 1). */
export function randomMatrix(rng: Rng, rows: number, cols: number): Matrix {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = rng.float() * 2 - 1;
  return { rows, cols, data };
}

/** A well-formed 64-hex blob id drawn from the PRNG (the simulated blob store is keyed by it). */
export function randomBlobId(rng: Rng): string {
  let s = "";
  for (let i = 0; i < 8; i++) s += rng.u32().toString(16).padStart(8, "0");
  return s;
}

/** The tile of C = A × B at `t`, as one kernel build computes it (row-major, tile-sized). */
export function computeTile(a: Matrix, b: Matrix, t: TileBounds, fp: Fingerprint): Float64Array {
  const m = t.rowEnd - t.rowStart;
  const n = t.colEnd - t.colStart;
  const k = a.cols;
  const out = new Float64Array(m * n);
  const asc = fp === "sim-asc";
  for (let i = 0; i < m; i++) {
    const row = (t.rowStart + i) * k;
    for (let j = 0; j < n; j++) {
      const col = t.colStart + j;
      let s = 0;
      if (asc) for (let p = 0; p < k; p++) s += (a.data[row + p] as number) * (b.data[p * b.cols + col] as number);
      else for (let p = k - 1; p >= 0; p--) s += (a.data[row + p] as number) * (b.data[p * b.cols + col] as number);
      out[i * n + j] = s;
    }
  }
  return out;
}

/** The whole product in one process, element by element in the build's order. */
export function multiply(a: Matrix, b: Matrix, fp: Fingerprint): Float64Array {
  return computeTile(a, b, { rowStart: 0, rowEnd: a.rows, colStart: 0, colEnd: b.cols }, fp);
}

/** Writes a tile into a row-major C of `cols` columns. */
export function writeTile(c: Float64Array, cols: number, t: TileBounds, tile: Float64Array): void {
  const n = t.colEnd - t.colStart;
  for (let i = t.rowStart; i < t.rowEnd; i++)
    c.set(tile.subarray((i - t.rowStart) * n, (i - t.rowStart + 1) * n), i * cols + t.colStart);
}

/** Reads a tile out of a row-major C of `cols` columns. */
export function readTile(c: Float64Array, cols: number, t: TileBounds): Float64Array {
  const n = t.colEnd - t.colStart;
  const out = new Float64Array((t.rowEnd - t.rowStart) * n);
  for (let i = t.rowStart; i < t.rowEnd; i++)
    out.set(c.subarray(i * cols + t.colStart, i * cols + t.colEnd), (i - t.rowStart) * n);
  return out;
}

/** Byte-for-byte equality of two float64 arrays (distinguishes -0 and NaN payloads). */
export function sameBytes(x: Float64Array, y: Float64Array): boolean {
  if (x.length !== y.length) return false;
  const bx = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const by = new Uint8Array(y.buffer, y.byteOffset, y.byteLength);
  for (let i = 0; i < bx.length; i++) if (bx[i] !== by[i]) return false;
  return true;
}

/** A content address for a sealed C: FNV-1a (64-bit) over its bytes, in hex. */
export function contentId(c: Float64Array): string {
  const bytes = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < bytes.length; i++) {
    lo ^= bytes[i] as number;
    // 64-bit multiply by the FNV prime 0x100000001b3, in two 32-bit halves.
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    hi = (Math.imul(hi, 0x1b3) + Math.imul(lo, 0x100) + carry) >>> 0;
    lo = loMul >>> 0;
  }
  return `c-${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")}-${c.length}`;
}
