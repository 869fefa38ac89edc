import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BlobStore } from "./blob-store.js";
import { ResultSink } from "./result-sink.js";
import { DataDirError } from "./storage-errors.js";
import { faults } from "./test-support/disk-faults.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// Result buffers on a disk that refuses writes: the error names the data dir, and what
// was not written or synced stays pending, so nothing is recorded as on disk that is not.

const dirs: string[] = [];
afterEach(() => {
  faults.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open() {
  const root = mkdtempSync(join(tmpdir(), "dce-sink-disk-"));
  dirs.push(root);
  const store = new BlobStore({ dir: root, maxBlobBytes: 1 << 30, maxOpenUploads: 4, uploadIdleMs: 60_000 });
  return { root, sink: new ResultSink(root, store) };
}

const tile = (value: number) => new Uint8Array(new Float64Array(4 * 4).fill(value).buffer);
const top = { rowStart: 0, rowEnd: 4, colStart: 0, colEnd: 4 };

describe("ResultSink on a full or failing disk", () => {
  it("a flush the disk refuses keeps the tile pending; the next flush writes it", async () => {
    const { root, sink } = open();
    sink.prepare("job", 4, 4);
    expect(sink.unwrittenBytes()).toBe(128); // sparse: nothing allocated yet
    sink.writeTile("job", top, tile(3));
    faults.arm({ op: "write", path: /results\/job\.f64$/, code: "ENOSPC", times: 1 });
    const e = (() => {
      try {
        sink.flush("job");
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(DataDirError);
    expect((e as DataDirError).rawMessage).toContain(`data dir ${root} is full (ENOSPC) while writing tiles of job job`);
    sink.flush("job");
    expect(new Float64Array(new Uint8Array(readFileSync(join(root, "results", "job.f64"))).buffer)).toEqual(
      new Float64Array(16).fill(3),
    );
    sink.close();
  });

  it("a sync the disk refuses (UNAVAILABLE) leaves the buffer to be synced again before anything is journaled", async () => {
    const { sink } = open();
    sink.prepare("job", 4, 4);
    sink.writeTile("job", top, tile(5));
    faults.arm({ op: "fsync", path: /results\/job\.f64$/, code: "EIO", times: 1 });
    const first = await sink.syncDirty().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((first as DataDirError).code).toBe(Code.Unavailable);
    // Still dirty: the next sync tries again (and here fails again, so we know it tried).
    faults.arm({ op: "fsync", path: /results\/job\.f64$/, code: "EIO", times: 1 });
    await expect(sink.syncDirty()).rejects.toBeInstanceOf(DataDirError);
    await sink.syncDirty();
    sink.close();
  });
});
