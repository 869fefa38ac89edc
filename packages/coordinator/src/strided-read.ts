import { type ByteRange, coalesceRanges, gatheredBytesOf, gatheredRanges, type StridedView } from "@dce/runtime/strided-view";
import { BlobError } from "./blob-error.js";

export type { StridedView };

/** What one strided read does: which bytes of the blob it gathers, and the view's length. */
export interface StridedReadPlan {
  /** The blob's byte ranges to read, in order; their bytes back to back are the answer. */
  readonly ranges: readonly ByteRange[];
  /** Sum of the ranges' lengths: the bytes this read returns. */
  readonly lengthBytes: number;
  /** Length of the whole gathered view (ReadBlobResponse.total_bytes). */
  readonly gatheredBytes: number;
}

/**
 * Most segments (hence blob reads, before they are merged) one strided ReadBlob answer
 * gathers; a reader asking for more gets fewer bytes and goes on from where it stopped.
 * It bounds the work of one call when segments are tiny (docs/limits.md).
 */
export const MAX_SEGMENTS_PER_READ = 65_536;

/**
 * Works out a read of `[gatheredOffset, gatheredOffset + maxBytes)` of the gathered bytes of
 * `view` over a blob of `blobBytes` bytes, at most {@link MAX_SEGMENTS_PER_READ} segments
 * (shorter at the view's end). Pure.
 *
 * @throws BlobError `invalid` (INVALID_ARGUMENT) when the stride is shorter than a segment,
 *   the view's first segment does not lie inside the blob, or `gatheredOffset` is past the
 *   view's end.
 */
export function planStridedRead(
  view: StridedView,
  blobBytes: number,
  gatheredOffset: number,
  maxBytes: number,
  maxSegments: number = MAX_SEGMENTS_PER_READ,
): StridedReadPlan {
  const { offsetBytes, strideBytes, segmentBytes } = view;
  if (!(segmentBytes > 0) || !Number.isSafeInteger(strideBytes) || strideBytes < segmentBytes) {
    throw new BlobError("invalid", `stride_bytes=${strideBytes} must be at least segment_bytes=${segmentBytes}`);
  }
  const gatheredBytes = gatheredBytesOf(view, blobBytes);
  if (gatheredBytes === undefined) {
    throw new BlobError(
      "invalid",
      `a strided view at offset ${offsetBytes} with segment_bytes=${segmentBytes} does not fit the blob's ${blobBytes} bytes`,
    );
  }
  if (!Number.isSafeInteger(gatheredOffset) || gatheredOffset < 0 || gatheredOffset > gatheredBytes) {
    throw new BlobError("invalid", `gathered_offset ${gatheredOffset} is outside the view (0..${gatheredBytes})`);
  }
  const length = Math.min(gatheredBytes - gatheredOffset, maxBytes);
  const ranges = gatheredRanges(view, gatheredOffset, length, maxSegments);
  const lengthBytes = ranges.reduce((sum, r) => sum + r.lengthBytes, 0);
  return { ranges, lengthBytes, gatheredBytes };
}

/**
 * Gathers `plan`'s ranges into one buffer, reading each window of {@link coalesceRanges}
 * with `readAt(target, targetOffset, lengthBytes, position)`, which fills exactly
 * `lengthBytes` bytes or throws.
 */
export function gatherRanges(
  plan: StridedReadPlan,
  readAt: (target: Uint8Array, targetOffset: number, lengthBytes: number, position: number) => void,
): Uint8Array {
  const out = Buffer.allocUnsafe(plan.lengthBytes);
  let scratch: Uint8Array | undefined;
  let pos = 0;
  for (const w of coalesceRanges(plan.ranges, GATHER_MAX_GAP_BYTES, GATHER_WINDOW_BYTES)) {
    const [only] = w.ranges;
    if (w.ranges.length === 1 && only !== undefined) {
      readAt(out, pos, only.lengthBytes, only.offsetBytes);
      pos += only.lengthBytes;
      continue;
    }
    scratch ??= Buffer.allocUnsafe(GATHER_WINDOW_BYTES);
    readAt(scratch, 0, w.span.lengthBytes, w.span.offsetBytes);
    for (const r of w.ranges) {
      const from = r.offsetBytes - w.span.offsetBytes;
      out.set(scratch.subarray(from, from + r.lengthBytes), pos);
      pos += r.lengthBytes;
    }
  }
  return out;
}

/** Segments this close (a page) are read together with the gap between them. */
const GATHER_MAX_GAP_BYTES = 4096;
/** Largest span read at once for merged segments. */
const GATHER_WINDOW_BYTES = 1024 * 1024;
