/**
 * Strided views of a blob (`@dce/runtime/strided-view`): the arithmetic ReadBlob's
 * `segment_bytes` reads share on both ends. A view is segments of `segmentBytes` bytes
 * every `strideBytes` bytes from `offsetBytes`, for as many segments as lie wholly inside
 * the blob; its bytes gathered back to back are what a strided read returns. A column
 * panel `B[:, c0:c1]` of a row-major k × n float64 matrix is {@link columnPanelView}.
 * Pure: no I/O.
 *
 * @packageDocumentation
 */

/** A strided view of a blob. */
export interface StridedView {
  readonly offsetBytes: number;
  readonly strideBytes: number;
  readonly segmentBytes: number;
}

/** A contiguous byte range of a blob. */
export interface ByteRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Ranges of a blob read together, with one read of their covering span (see {@link coalesceRanges}). */
export interface ReadWindow {
  /** The covering span. */
  readonly span: ByteRange;
  /** The ranges inside it, in order. */
  readonly ranges: readonly ByteRange[];
}

/** The view of columns `[colStart, colEnd)` of a row-major float64 matrix with `cols` columns. */
export function columnPanelView(cols: number, colStart: number, colEnd: number): StridedView {
  return { offsetBytes: 8 * colStart, strideBytes: 8 * cols, segmentBytes: 8 * (colEnd - colStart) };
}

/**
 * Bytes of the whole gathered view over a blob of `blobBytes` bytes, or undefined when the
 * view is malformed (a segment of no bytes, a stride shorter than a segment, unsafe
 * numbers) or its first segment does not lie inside the blob.
 */
export function gatheredBytesOf(view: StridedView, blobBytes: number): number | undefined {
  const { offsetBytes, strideBytes, segmentBytes } = view;
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) return undefined;
  if (!Number.isSafeInteger(strideBytes) || strideBytes < segmentBytes) return undefined;
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes + segmentBytes > blobBytes) return undefined;
  return (Math.floor((blobBytes - offsetBytes - segmentBytes) / strideBytes) + 1) * segmentBytes;
}

/**
 * The blob's byte ranges holding gathered bytes `[gatheredOffset, gatheredOffset + lengthBytes)`
 * of `view`, in order, at most `maxRanges` of them (one per segment touched; fewer bytes
 * then). The caller keeps the range inside the view ({@link gatheredBytesOf}).
 */
export function gatheredRanges(
  view: StridedView,
  gatheredOffset: number,
  lengthBytes: number,
  maxRanges = Infinity,
): ByteRange[] {
  const { offsetBytes, strideBytes, segmentBytes } = view;
  const ranges: ByteRange[] = [];
  const end = gatheredOffset + lengthBytes;
  let pos = gatheredOffset;
  while (pos < end && ranges.length < maxRanges) {
    const segment = Math.floor(pos / segmentBytes);
    const within = pos - segment * segmentBytes;
    const length = Math.min(segmentBytes - within, end - pos);
    ranges.push({ offsetBytes: offsetBytes + segment * strideBytes + within, lengthBytes: length });
    pos += length;
  }
  return ranges;
}

/**
 * Groups consecutive ranges into windows read with one read each: a range joins the
 * window before it when the gap between them is at most `maxGapBytes` and the span stays
 * within `maxWindowBytes`. Dense views (short gaps) then cost a few large reads instead of
 * one per segment, and sparse ones read no bytes they do not return.
 */
export function coalesceRanges(ranges: readonly ByteRange[], maxGapBytes: number, maxWindowBytes: number): ReadWindow[] {
  const windows: { start: number; end: number; ranges: ByteRange[] }[] = [];
  for (const r of ranges) {
    const last = windows.at(-1);
    const end = r.offsetBytes + r.lengthBytes;
    const joins =
      last !== undefined &&
      r.offsetBytes >= last.end &&
      r.offsetBytes - last.end <= maxGapBytes &&
      end - last.start <= maxWindowBytes;
    if (joins) {
      last.end = end;
      last.ranges.push(r);
    } else {
      windows.push({ start: r.offsetBytes, end, ranges: [r] });
    }
  }
  return windows.map((w) => ({ span: { offsetBytes: w.start, lengthBytes: w.end - w.start }, ranges: w.ranges }));
}
