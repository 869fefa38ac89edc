import { describe, expect, it } from "vitest";
import { coalesceRanges, columnPanelView, gatheredBytesOf, gatheredRanges } from "./strided-view.js";

const r = (offsetBytes: number, lengthBytes: number) => ({ offsetBytes, lengthBytes });

describe("strided views", () => {
  it("a column panel of a k×n float64 matrix gathers k segments of its width", () => {
    const view = columnPanelView(11, 3, 5);
    expect(view).toEqual({ offsetBytes: 24, strideBytes: 88, segmentBytes: 16 });
    expect(gatheredBytesOf(view, 7 * 11 * 8)).toBe(7 * 16);
    expect(gatheredRanges(view, 0, 7 * 16).at(-1)).toEqual(r(6 * 88 + 24, 16));
  });

  it("a view whose first segment is outside the blob, or with a stride under a segment, has no length", () => {
    expect(gatheredBytesOf({ offsetBytes: 30, strideBytes: 8, segmentBytes: 4 }, 32)).toBeUndefined();
    expect(gatheredBytesOf({ offsetBytes: 0, strideBytes: 3, segmentBytes: 4 }, 32)).toBeUndefined();
    expect(gatheredBytesOf({ offsetBytes: 0, strideBytes: 8, segmentBytes: 0 }, 32)).toBeUndefined();
    expect(gatheredBytesOf({ offsetBytes: 28, strideBytes: 8, segmentBytes: 4 }, 32)).toBe(4);
  });

  it("ranges start mid-segment and stop at the range limit", () => {
    const view = { offsetBytes: 2, strideBytes: 10, segmentBytes: 4 };
    expect(gatheredRanges(view, 3, 6)).toEqual([r(5, 1), r(12, 4), r(22, 1)]);
    expect(gatheredRanges(view, 3, 6, 2)).toEqual([r(5, 1), r(12, 4)]);
  });

  it("coalescing merges ranges with short gaps up to the window size and keeps distant ones apart", () => {
    const windows = coalesceRanges([r(0, 4), r(6, 4), r(12, 4), r(100, 4), r(106, 20)], 2, 24);
    expect(windows.map((w) => w.span)).toEqual([r(0, 16), r(100, 4), r(106, 20)]);
    expect(windows[0]?.ranges).toHaveLength(3);
  });
});
