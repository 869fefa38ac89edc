/**
 * Cache keys of input blocks that are part of a matrix blob. A worker's block cache holds
 * whole matrices under their blob id, and panels under these keys: a row panel of A
 * (`A[r0:r1, :]`, one contiguous byte range) and a column panel of B (`B[:, c0:c1]`,
 * stored contiguous as a k × (c1 − c0) matrix). Anything that serves cached panels to
 * others (a peer) names them the same way, through these functions.
 */

/** Which part of a matrix a panel is: rows `[start, end)` or columns `[start, end)`. */
export interface PanelKey {
  readonly blobId: string;
  readonly axis: "rows" | "cols";
  readonly start: number;
  readonly end: number;
}

/** The cache key of rows `[rowStart, rowEnd)` of the matrix in blob `blobId`. */
export function rowPanelKey(blobId: string, rowStart: number, rowEnd: number): string {
  return `${blobId}:rows:${rowStart}-${rowEnd}`;
}

/** The cache key of columns `[colStart, colEnd)` of the matrix in blob `blobId`. */
export function colPanelKey(blobId: string, colStart: number, colEnd: number): string {
  return `${blobId}:cols:${colStart}-${colEnd}`;
}

const PANEL_KEY = /^([0-9a-f]{64}):(rows|cols):(\d{1,15})-(\d{1,15})$/;

/**
 * The panel a cache key names, or undefined when `key` is not a panel key (a whole
 * matrix's blob id, or anything malformed: a start not below its end included).
 */
export function parsePanelKey(key: string): PanelKey | undefined {
  const m = PANEL_KEY.exec(key);
  if (m === null) return undefined;
  const [, blobId, axis, start, end] = m;
  if (blobId === undefined || start === undefined || end === undefined) return undefined;
  const [s, e] = [Number(start), Number(end)];
  if (!(s < e)) return undefined;
  return { blobId, axis: axis === "rows" ? "rows" : "cols", start: s, end: e };
}
