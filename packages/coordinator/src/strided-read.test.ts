import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StridedView } from "@dce/runtime/strided-view";
import { afterEach, describe, expect, it } from "vitest";
import { BlobError } from "./blob-error.js";
import { BlobStore } from "./blob-store.js";
import { MemoryBlobStore } from "./memory/memory-blob-store.js";
import { planStridedRead } from "./strided-read.js";

// The strided view of ReadBlob (a column panel of a row-major matrix): which bytes a read
// gathers, its bounds and refusals, and that both stores gather the same bytes.

/** The view's gathered bytes, the slow obvious way. */
function gatherNaively(blob: Uint8Array, v: StridedView): Uint8Array {
  const out: number[] = [];
  for (let at = v.offsetBytes; at + v.segmentBytes <= blob.byteLength; at += v.strideBytes) {
    out.push(...blob.subarray(at, at + v.segmentBytes));
  }
  return Uint8Array.from(out);
}

const blobOf = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function diskStore(): BlobStore {
  const dir = mkdtempSync(join(tmpdir(), "dce-strided-"));
  dirs.push(dir);
  return new BlobStore({ dir: join(dir, "data"), maxBlobBytes: 64 << 20, maxOpenUploads: 4, uploadIdleMs: 60_000 });
}

describe("planStridedRead", () => {
  it("a column panel of a 7x11 float64 matrix is 7 segments, one per row", () => {
    const plan = planStridedRead({ offsetBytes: 8 * 3, strideBytes: 8 * 11, segmentBytes: 8 * 2 }, 7 * 11 * 8, 0, 1 << 20);
    expect(plan.gatheredBytes).toBe(7 * 16);
    expect(plan.ranges).toHaveLength(7);
    expect(plan.ranges[6]).toEqual({ offsetBytes: 6 * 88 + 24, lengthBytes: 16 });
  });

  it("continues mid-segment from gathered_offset, and stops at max bytes", () => {
    const plan = planStridedRead({ offsetBytes: 2, strideBytes: 10, segmentBytes: 4 }, 40, 3, 6);
    // segments at 2, 12, 22, 32; gathered [3, 9) = last byte of the first, all of the second, one of the third
    expect(plan.ranges).toEqual([
      { offsetBytes: 5, lengthBytes: 1 },
      { offsetBytes: 12, lengthBytes: 4 },
      { offsetBytes: 22, lengthBytes: 1 },
    ]);
    expect(plan.lengthBytes).toBe(6);
    expect(plan.gatheredBytes).toBe(16);
  });

  it("gathers at most the segment limit per read", () => {
    const plan = planStridedRead({ offsetBytes: 0, strideBytes: 2, segmentBytes: 1 }, 100, 0, 100, 8);
    expect(plan.ranges).toHaveLength(8);
    expect(plan.lengthBytes).toBe(8);
  });

  it("reading at the view's end returns nothing; past it is refused", () => {
    const view = { offsetBytes: 0, strideBytes: 8, segmentBytes: 4 };
    expect(planStridedRead(view, 32, 16, 10).lengthBytes).toBe(0);
    expect(() => planStridedRead(view, 32, 17, 10)).toThrow(/gathered_offset 17 is outside the view \(0\.\.16\)/);
  });

  it.each([
    [
      "a stride shorter than a segment",
      { offsetBytes: 0, strideBytes: 3, segmentBytes: 4 },
      /stride_bytes=3 must be at least segment_bytes=4/,
    ],
    ["a first segment past the end", { offsetBytes: 30, strideBytes: 8, segmentBytes: 4 }, /does not fit the blob's 32 bytes/],
    ["an unsafe stride", { offsetBytes: 0, strideBytes: 2 ** 60, segmentBytes: 4 }, /stride_bytes/],
  ])("refuses %s as invalid", (_name, view, message) => {
    const e = (() => {
      try {
        planStridedRead(view, 32, 0, 10);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(BlobError);
    expect((e as BlobError).kind).toBe("invalid");
    expect((e as BlobError).message).toMatch(message);
  });
});

describe("readStrided in both stores", () => {
  const blob = blobOf(5000);
  const views: StridedView[] = [
    { offsetBytes: 8, strideBytes: 80, segmentBytes: 8 }, // a one-column panel (dense: merged)
    { offsetBytes: 0, strideBytes: 16, segmentBytes: 16 }, // the whole blob
    { offsetBytes: 13, strideBytes: 4999, segmentBytes: 1 }, // one byte
    { offsetBytes: 100, strideBytes: 4900, segmentBytes: 8 }, // sparse: gaps over a page, read one by one
    { offsetBytes: 5, strideBytes: 1700, segmentBytes: 1200 },
  ];

  it.each(views)("gathers %o in chunks that add up to the naive gather", (view) => {
    const expected = gatherNaively(blob, view);
    for (const store of [new MemoryBlobStore(), diskStore()]) {
      const id = store.put(blob);
      for (const chunk of [1, 7, 1 << 20]) {
        const parts: Uint8Array[] = [];
        for (let g = 0; g < expected.byteLength; ) {
          const r = store.readStrided(id, view, g, chunk);
          expect(r.totalBytes).toBe(expected.byteLength);
          expect(r.data.byteLength).toBeGreaterThan(0);
          parts.push(r.data);
          g += r.data.byteLength;
        }
        expect(Buffer.concat(parts).equals(Buffer.from(expected))).toBe(true);
      }
      store.close();
    }
  });

  it("refuses an unknown blob as not found", () => {
    for (const store of [new MemoryBlobStore(), diskStore()]) {
      expect(() => store.readStrided("a".repeat(64), { offsetBytes: 0, strideBytes: 8, segmentBytes: 8 }, 0, 8)).toThrow(
        /not found/,
      );
      store.close();
    }
  });
});
