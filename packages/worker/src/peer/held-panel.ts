/**
 * What a worker's panel server can answer a peer from: a panel its blob cache holds (or
 * is loading) under the panel's own key, or the whole matrix it holds, from which the
 * rows are a slice and the columns a gather. Never a fetch of its own.
 *
 * @packageDocumentation
 */
import { PanelAxis, type ReadPanelRequest } from "@dce/proto";
import type { BlobCache } from "../inputs/blob-cache.js";
import { colPanelKey, rowPanelKey } from "../inputs/panel-key.js";

/** Largest matrix side a panel request may name (the coordinator's own limit is lower). */
const MAX_SIDE = 1 << 24;

/** A panel held by this worker: the panel itself, or the whole matrix it is part of. */
export interface HeldPanel {
  /** The panel's size in bytes. */
  readonly totalBytes: number;
  /** Bytes `[offset, offset + length)` of the panel, as a peer reads them. */
  page(offsetBytes: number, lengthBytes: number): Uint8Array;
}

/** Why a request cannot name a panel (for INVALID_ARGUMENT); `undefined` when it can. */
export function panelRequestProblem(req: ReadPanelRequest): string | undefined {
  if (!/^[0-9a-f]{64}$/.test(req.blobId)) return "blob_id must be a lower-case hex SHA-256";
  if (req.rows < 1 || req.cols < 1 || req.rows > MAX_SIDE || req.cols > MAX_SIDE) {
    return `rows and cols must be between 1 and ${MAX_SIDE}, got ${req.rows}x${req.cols}`;
  }
  if (req.axis !== PanelAxis.ROWS && req.axis !== PanelAxis.COLS) return "axis must be PANEL_AXIS_ROWS or PANEL_AXIS_COLS";
  const side = req.axis === PanelAxis.ROWS ? req.rows : req.cols;
  if (!(req.start < req.end && req.end <= side)) {
    return `panel [${req.start}, ${req.end}) does not fit ${req.axis === PanelAxis.ROWS ? "rows" : "cols"} = ${side}`;
  }
  if (req.offset > BigInt(panelBytes(req))) return `offset ${req.offset} is past the panel's ${panelBytes(req)} bytes`;
  return undefined;
}

/** The size in bytes of the panel a (valid) request names. */
export function panelBytes(req: ReadPanelRequest): number {
  const width = req.end - req.start;
  return (req.axis === PanelAxis.ROWS ? width * req.cols : req.rows * width) * 8;
}

/**
 * The panel `req` names, if this worker's cache holds it or is loading it (a load under
 * way is joined), as the panel or as its whole matrix; `undefined` at once otherwise.
 * A held value of the wrong size is not used. A load that is itself reading the panel
 * from a peer (`readingFromPeers` of its cache key) is not joined: that peer may be the
 * one asking, each waiting for the other until the call's deadline (30 s); the asker
 * goes on to its next source instead.
 */
export function findHeldPanel(
  cache: BlobCache,
  req: ReadPanelRequest,
  signal: AbortSignal,
  readingFromPeers: (key: string) => boolean = () => false,
): Promise<HeldPanel | undefined> | undefined {
  const key =
    req.axis === PanelAxis.ROWS ? rowPanelKey(req.blobId, req.start, req.end) : colPanelKey(req.blobId, req.start, req.end);
  const total = panelBytes(req);
  const panel = cache.get(key) !== undefined || !readingFromPeers(key) ? cache.join(key, signal) : undefined;
  if (panel !== undefined) return panel.then((p) => (p.byteLength === total ? contiguous(p) : undefined));
  const whole = cache.join(req.blobId, signal);
  if (whole === undefined) return undefined;
  return whole.then((m) => {
    if (m.length !== req.rows * req.cols) return undefined;
    if (req.axis === PanelAxis.ROWS) return contiguous(m.subarray(req.start * req.cols, req.end * req.cols));
    return gathered(m, req.cols, req.start, req.end);
  });
}

/** A panel held as its own contiguous bytes. */
function contiguous(values: Float64Array): HeldPanel {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return { totalBytes: bytes.byteLength, page: (offset, length) => bytes.subarray(offset, offset + length) };
}

/** Columns `[c0, c1)` of a row-major matrix with `cols` columns, gathered page by page (only the rows a page touches). */
function gathered(matrix: Float64Array, cols: number, c0: number, c1: number): HeldPanel {
  const width = c1 - c0;
  const totalBytes = (matrix.length / cols) * width * 8;
  return {
    totalBytes,
    page(offset, length) {
      const end = Math.min(totalBytes, offset + length);
      if (end <= offset) return new Uint8Array(0);
      const first = Math.floor(offset / 8);
      const last = Math.ceil(end / 8); // exclusive element index in the panel
      const out = new Float64Array(last - first);
      for (let e = first; e < last; ) {
        const row = Math.floor(e / width);
        const col = e - row * width;
        const run = Math.min(width - col, last - e);
        const from = row * cols + c0 + col;
        out.set(matrix.subarray(from, from + run), e - first);
        e += run;
      }
      const skip = offset - first * 8;
      return new Uint8Array(out.buffer, skip, end - offset);
    },
  };
}
