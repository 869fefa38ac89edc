// The three pieces of verification work, run either inline (tiny jobs and tiles) or in a
// verification thread (verify-thread.ts): projecting B once per job, the A pass of a row
// band once for all the tiles of the band, and the Ĉ pass and verdict of one tile. The
// first two read the matrices straight from their content-addressed blob files in bounded
// chunks; the products are the WebAssembly panel kernel's, the verdict is the core's.
import { closeSync, openSync, readSync } from "node:fs";
import { judgeTileRows, PANEL_WIDTH, type TileCheck } from "@dce/core";
import { bandSumsOffsets, createPanelKernel, type PanelKernel, projectionPanels, type ReadRows } from "./panel-kernel.js";

/** Everything a projection needs, as plain data (it crosses a thread boundary). */
export interface ProjectTask {
  readonly kind: "project";
  /** Path of B's blob file (k × cols, row-major float64). */
  readonly bPath: string;
  readonly k: number;
  readonly cols: number;
  readonly tileCols: number;
  /** Shared buffers (or plain ones inline): the probe panel (cols × 8), and w (projectionPanels(blocks) × k × 8), filled in place. */
  readonly probes: Float64Array;
  readonly w: Float64Array;
}

/** The A pass of one row band: its sums against every column block's projection. */
export interface BandTask {
  readonly kind: "band";
  /** Path of A's blob file (rows × k, row-major float64). */
  readonly aPath: string;
  readonly k: number;
  readonly blocks: number;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly w: Float64Array;
  /** Filled in place: (rowEnd − rowStart) × projectionPanels(blocks) × 8 sums, and the rows' absolute sums. */
  readonly y: Float64Array;
  readonly aAbs: Float64Array;
}

/** The check of one tile against its band's sums. */
export interface CheckTask {
  readonly kind: "check";
  readonly k: number;
  readonly tileCols: number;
  readonly blocks: number;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly colStart: number;
  readonly colEnd: number;
  /** The tile, (rowEnd − rowStart) × (colEnd − colStart) little-endian float64. */
  readonly tile: Uint8Array;
  readonly probes: Float64Array;
  /** The band's sums and absolute row sums (from a {@link BandTask}). */
  readonly y: Float64Array;
  readonly aAbs: Float64Array;
}

/** This thread's kernel, created at the first task. */
let kernel: PanelKernel | undefined;

function panelKernel(): PanelKernel {
  kernel ??= createPanelKernel();
  return kernel;
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

/** Rows of a row-major matrix of `cols` columns in the file `fd`. */
function rowsOf(fd: number, cols: number): ReadRows {
  return (into, firstRow) => readExactly(fd, into, firstRow * cols * 8);
}

/** Opens `path` (or uses `fd`) for the duration of `body`. */
function withFile<T>(path: string, fd: number | undefined, body: (fd: number) => T): T {
  const handle = fd ?? openSync(path, "r");
  try {
    return body(handle);
  } finally {
    if (fd === undefined) closeSync(handle);
  }
}

/** Fills the task's projection w from B, streamed in chunks of rows. */
export function runProject(t: ProjectTask): void {
  withFile(t.bPath, undefined, (fd) => panelKernel().project(rowsOf(fd, t.cols), t.k, t.cols, t.tileCols, t.probes, t.w));
}

/** Fills the band's sums from its rows of A, read once (in chunks of rows) for all its tiles. */
export function runBand(t: BandTask, fd?: number): void {
  withFile(t.aPath, fd, (handle) =>
    panelKernel().band(rowsOf(handle, t.k), t.rowStart, t.rowEnd, t.k, t.blocks, t.w, t.y, t.aAbs),
  );
}

/** Checks one tile: its Ĉ pass, then the core's verdict on the band's sums of its column block. */
export function runCheck(t: CheckTask): TileCheck {
  const m = t.rowEnd - t.rowStart;
  const n = t.colEnd - t.colStart;
  const c = new Float64Array(m * PANEL_WIDTH);
  panelKernel().tile(t.tile, m, n, t.probes, t.colStart, c);
  const at = bandSumsOffsets(Math.floor(t.colStart / t.tileCols));
  const aStride = projectionPanels(t.blocks) * PANEL_WIDTH;
  return judgeTileRows({ k: t.k, n, a: t.y, aOff: at.rounds, aStride, aScaleOff: at.scale, aAbs: t.aAbs, aAbsOff: 0, c }, 0, m);
}
