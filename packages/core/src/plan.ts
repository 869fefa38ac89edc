import type { MatMulSpec } from "./spec.js";

/**
 * The shard plan of a job: C is cut into output tiles in row-major tile order.
 * It depends only on the spec (shapes and tile size), never on how many workers
 * there are, so shard `i` always means the same tile of C.
 */
export interface Plan {
  /** Rows of C (= rows of A). */
  readonly rows: number;
  /** Columns of C (= columns of B). */
  readonly cols: number;
  /** Inner dimension (= cols of A = rows of B). */
  readonly inner: number;
  readonly tileRows: number;
  readonly tileCols: number;
  /** Tiles down C. */
  readonly rowTiles: number;
  /** Tiles across C. */
  readonly colTiles: number;
  /** rowTiles × colTiles. */
  readonly shardCount: number;
}

/** Bounds of one tile of C: rows [rowStart, rowEnd) and columns [colStart, colEnd). */
export interface TileBounds {
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly colStart: number;
  readonly colEnd: number;
}

/** Plans a validated spec. Pure and deterministic. */
export function planMatMul(spec: MatMulSpec): Plan {
  const rows = spec.a.rows;
  const cols = spec.b.cols;
  const rowTiles = Math.ceil(rows / spec.tileRows);
  const colTiles = Math.ceil(cols / spec.tileCols);
  return {
    rows,
    cols,
    inner: spec.a.cols,
    tileRows: spec.tileRows,
    tileCols: spec.tileCols,
    rowTiles,
    colTiles,
    shardCount: rowTiles * colTiles,
  };
}

/** The tile of C that shard `index` computes. `index` must be in [0, shardCount). */
export function tileBounds(plan: Plan, index: number): TileBounds {
  const tr = Math.floor(index / plan.colTiles);
  const tc = index - tr * plan.colTiles;
  const rowStart = tr * plan.tileRows;
  const colStart = tc * plan.tileCols;
  return {
    rowStart,
    rowEnd: Math.min(rowStart + plan.tileRows, plan.rows),
    colStart,
    colEnd: Math.min(colStart + plan.tileCols, plan.cols),
  };
}

/** Size in bytes of the float64 tile that shard `index` produces. */
export function tileSizeBytes(plan: Plan, index: number): number {
  const t = tileBounds(plan, index);
  return (t.rowEnd - t.rowStart) * (t.colEnd - t.colStart) * 8;
}
