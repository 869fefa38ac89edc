import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "./blob-store.js";
import { ResultSink } from "./result-sink.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir?: string) {
  const root = dir ?? mkdtempSync(join(tmpdir(), "dce-sink-"));
  if (!dir) dirs.push(root);
  const store = new BlobStore({ dir: root, maxBlobBytes: 1 << 30, maxOpenUploads: 4, uploadIdleMs: 60_000 });
  return { root, store, sink: new ResultSink(root, store) };
}

/** The tiles of a rows × cols C cut into th × tw tiles, each filled with values that name their place. */
function tiles(rows: number, cols: number, th: number, tw: number) {
  const out: { b: { rowStart: number; rowEnd: number; colStart: number; colEnd: number }; data: Uint8Array }[] = [];
  for (let r = 0; r < rows; r += th)
    for (let c = 0; c < cols; c += tw) {
      const b = { rowStart: r, rowEnd: Math.min(r + th, rows), colStart: c, colEnd: Math.min(c + tw, cols) };
      const m = b.rowEnd - b.rowStart;
      const n = b.colEnd - b.colStart;
      const t = new Float64Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[i * n + j] = (r + i) * cols + (c + j) + 0.5;
      out.push({ b, data: new Uint8Array(t.buffer) });
    }
  return out;
}

function expected(rows: number, cols: number): Buffer {
  const c = new Float64Array(rows * cols);
  for (let i = 0; i < c.length; i++) c[i] = i + 0.5;
  return Buffer.from(c.buffer);
}

describe("ResultSink", () => {
  it.each([
    ["a small C, assembled in memory", 37, 29, 8, 5],
    ["a C over the in-memory limit, written tile row by tile row", 1100, 2048, 512, 300],
  ])("%s: any arrival order gives the same bytes, sealed under their SHA-256", async (_label, rows, cols, th, tw) => {
    const want = expected(rows, cols);
    const ids: string[] = [];
    for (const order of ["forward", "reverse"]) {
      const { store, sink } = open();
      sink.prepare("job", rows, cols);
      const ts = tiles(rows, cols, th, tw);
      if (order === "reverse") ts.reverse();
      for (const [i, t] of ts.entries()) {
        sink.writeTile("job", t.b, t.data);
        if (i % 3 === 0) await sink.syncDirty();
      }
      await sink.syncDirty();
      const blobId = await sink.finalize("job");
      expect(blobId).toBe(createHash("sha256").update(want).digest("hex"));
      expect(Buffer.from(store.read(blobId, 0, want.byteLength).data).equals(want)).toBe(true);
      ids.push(blobId);
      sink.close();
    }
    expect(ids[0]).toBe(ids[1]);
  });

  it("the file holds every tile synced before a crash, and a reopened sink carries on from it", async () => {
    const rows = 40;
    const cols = 24;
    const first = open();
    first.sink.prepare("job", rows, cols);
    const ts = tiles(rows, cols, 8, 8);
    const half = ts.slice(0, 7);
    for (const t of half) first.sink.writeTile("job", t.b, t.data);
    await first.sink.syncDirty();
    // The synced tiles are in the file itself (not only in memory).
    const file = readFileSync(join(first.root, "results", "job.f64"));
    for (const t of half) {
      const n = t.b.colEnd - t.b.colStart;
      const row = t.b.rowStart;
      const at = (row * cols + t.b.colStart) * 8;
      expect(file.subarray(at, at + n * 8).equals(Buffer.from(t.data.subarray(0, n * 8)))).toBe(true);
    }
    first.sink.close(); // the process dies; the buffer file stays
    const again = open(first.root);
    again.sink.prepare("job", rows, cols);
    for (const t of ts.slice(7)) again.sink.writeTile("job", t.b, t.data);
    await again.sink.syncDirty();
    const blobId = await again.sink.finalize("job");
    expect(Buffer.from(again.store.read(blobId, 0, rows * cols * 8).data).equals(expected(rows, cols))).toBe(true);
    again.sink.close();
  });
});
