// The two pieces of verification work, run either inline (tiny jobs and tiles) or in a
// verification thread (verify-thread.ts): projecting B once per job, and checking one
// tile against the rows of A it depends on. Both read the matrices straight from their
// content-addressed blob files in bounded chunks; the arithmetic is the core's.
import { closeSync, openSync, readSync } from "node:fs";
import { checkTileRows, type Projection, projectRows, type TileCheck } from "@dce/core";

/** Most bytes of A or B read into memory at once. */
const CHUNK_BYTES = 8 << 20;

/** Everything a projection needs, as plain data (it crosses a thread boundary). */
export interface ProjectTask {
  readonly kind: "project";
  /** Path of B's blob file (k × cols, row-major float64). */
  readonly bPath: string;
  readonly k: number;
  readonly cols: number;
  readonly tileCols: number;
  readonly rounds: number;
  /** Shared buffers (or plain ones inline): probes `rounds × cols`, w and s of the projection, filled in place. */
  readonly probes: Float64Array;
  readonly w: Float64Array;
  readonly s: Float64Array;
}

/** Everything one tile check needs. */
export interface CheckTask {
  readonly kind: "check";
  /** Path of A's blob file (rows × k, row-major float64). */
  readonly aPath: string;
  readonly k: number;
  readonly cols: number;
  readonly tileCols: number;
  readonly rounds: number;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly colStart: number;
  readonly colEnd: number;
  /** The tile, (rowEnd − rowStart) × (colEnd − colStart). */
  readonly tile: Float64Array;
  readonly probes: Float64Array;
  readonly w: Float64Array;
  readonly s: Float64Array;
}

/** Reads exactly `into.byteLength` bytes at `position`. */
function readExactly(fd: number, into: Float64Array, position: number): void {
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  let got = 0;
  while (got < bytes.byteLength) {
    const n = readSync(fd, bytes, got, bytes.byteLength - got, position + got);
    if (n === 0) throw new Error(`matrix file ended at byte ${position + got}, expected ${position + bytes.byteLength}`);
    got += n;
  }
}

/** Fills the task's projection (w, s) from B, streamed in chunks of rows. */
export function runProject(t: ProjectTask): void {
  const p: Projection = { k: t.k, rounds: t.rounds, tiling: { cols: t.cols, tileCols: t.tileCols }, w: t.w, s: t.s };
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / (t.cols * 8)));
  const fd = openSync(t.bPath, "r");
  try {
    const buf = new Float64Array(Math.min(t.k, rowsPerChunk) * t.cols);
    for (let row = 0; row < t.k; row += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, t.k - row);
      const chunk = buf.subarray(0, rows * t.cols);
      readExactly(fd, chunk, row * t.cols * 8);
      projectRows(p, t.probes, chunk, row, rows);
    }
  } finally {
    closeSync(fd);
  }
}

/** Largest row panel of A a verification thread keeps between checks. */
const PANEL_CACHE_BYTES = 64 << 20;
/**
 * The last row panel of A this thread read. The tiles of one row band arrive together
 * (a worker leases a row band's tiles in a row), and each needs the same rows of A; blob
 * files never change, so the path and rows name the bytes.
 */
let lastPanel: { key: string; rows: Float64Array } | undefined;

/** Checks one tile against the rows of A, read in chunks. */
export function runCheck(t: CheckTask, fd?: number): TileCheck {
  const p: Projection = { k: t.k, rounds: t.rounds, tiling: { cols: t.cols, tileCols: t.tileCols }, w: t.w, s: t.s };
  const m = t.rowEnd - t.rowStart;
  const n = t.colEnd - t.colStart;
  if (fd === undefined && m * t.k * 8 <= PANEL_CACHE_BYTES) {
    // In a verification thread: read the whole panel once for the tiles of its band.
    const key = `${t.aPath}:${t.rowStart}:${t.rowEnd}:${t.k}`;
    if (lastPanel?.key !== key) {
      lastPanel = undefined;
      const rows = new Float64Array(m * t.k);
      const handle = openSync(t.aPath, "r");
      try {
        readExactly(handle, rows, t.rowStart * t.k * 8);
      } finally {
        closeSync(handle);
      }
      lastPanel = { key, rows };
    }
    return checkTileRows(p, t.probes, t.colStart, t.tile, n, lastPanel.rows, 0, m);
  }
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / (t.k * 8)));
  const own = fd === undefined;
  const handle = fd ?? openSync(t.aPath, "r");
  try {
    const buf = new Float64Array(Math.min(m, rowsPerChunk) * t.k);
    let checked = 0;
    let unverifiable = 0;
    for (let r0 = 0; r0 < m; r0 += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, m - r0);
      const aRows = buf.subarray(0, rows * t.k);
      readExactly(handle, aRows, (t.rowStart + r0) * t.k * 8);
      const r = checkTileRows(p, t.probes, t.colStart, t.tile, n, aRows, r0, rows);
      if (!r.ok) return r;
      checked += r.rowsChecked;
      unverifiable += r.rowsUnverifiable;
    }
    return { ok: true, rowsChecked: checked, rowsUnverifiable: unverifiable };
  } finally {
    if (own) closeSync(handle);
  }
}
