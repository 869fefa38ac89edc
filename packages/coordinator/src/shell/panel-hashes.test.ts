import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { MatMulTaskSchema, MatrixRefSchema, PeerSourceSchema, type ShardLease, ShardLeaseSchema } from "@dce/proto";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../memory/memory-blob-store.js";
import { PanelHashes } from "./panel-hashes.js";

// The hashes a lease naming peers carries are those of the panel bytes a peer serves.

const [k, n] = [7, 300_000]; // B's rows are 2.4 MB: several 1 MiB reads, rows split across them
const [m] = [5];
const values = (count: number, seed: number) => Float64Array.from({ length: count }, (_, i) => Math.sin(i * 0.37 + seed));
const aValues = values(m * k, 1);
const bValues = values(k * n, 2);
const bytes = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
const sha = (x: Uint8Array) => new Uint8Array(createHash("sha256").update(x).digest());
const peer = create(PeerSourceSchema, { workerId: "w1", address: "10.0.0.2:7071", identity: "worker-1" });

let spill: string | undefined;
afterAll(async () => {
  if (spill) await rm(spill, { recursive: true, force: true });
});

function lease(store: MemoryBlobStore, jobId: string, withPeers: boolean): ShardLease {
  const a = create(MatrixRefSchema, { blobId: store.put(bytes(aValues)), rows: m, cols: k });
  const b = create(MatrixRefSchema, { blobId: store.put(bytes(bValues)), rows: k, cols: n });
  const matmul = create(MatMulTaskSchema, { a, b, rowStart: 1, rowEnd: 4, colStart: 1_000, colEnd: 1_003 });
  if (withPeers) {
    matmul.aPeers = [peer];
    matmul.bPeers = [peer];
  }
  return create(ShardLeaseSchema, { lease: { jobId, shardIndex: 0, epoch: 1n }, matmul });
}

/** A store that counts its reads. */
function countingStore(options: { spillDir?: string } = {}) {
  const store = new MemoryBlobStore(options);
  let reads = 0;
  const read = store.read.bind(store);
  store.read = (...args) => {
    reads++;
    return read(...args);
  };
  return { store, reads: () => reads };
}

describe("PanelHashes", () => {
  it.each([["memory storage"], ["blob files"]])("hashes A's row panel and B's gathered column panel (%s)", async (where) => {
    spill ??= await mkdtemp(join(tmpdir(), "dce-panel-hashes-"));
    const { store } = countingStore(where === "blob files" ? { spillDir: spill } : {});
    const hashes = new PanelHashes({ blobs: store, jobState: () => "running" });
    const l = lease(store, "job-1", true);
    await hashes.fill([l]);
    const panel = new Float64Array(k * 3);
    for (let i = 0; i < k; i++) panel.set(bValues.subarray(i * n + 1_000, i * n + 1_003), i * 3);
    expect(l.matmul?.aPanelSha256).toEqual(sha(bytes(aValues.subarray(1 * k, 4 * k))));
    expect(l.matmul?.bPanelSha256).toEqual(sha(bytes(panel)));
  });

  it("computes nothing for a lease that names no peers", async () => {
    const { store, reads } = countingStore();
    const hashes = new PanelHashes({ blobs: store, jobState: () => "running" });
    const l = lease(store, "job-1", false);
    await hashes.fill([l]);
    expect(l.matmul?.aPanelSha256).toHaveLength(0);
    expect(l.matmul?.bPanelSha256).toHaveLength(0);
    expect(reads()).toBe(0);
    expect(hashes.jobCount).toBe(0);
  });

  it("computes each panel once per job, and drops a job's hashes when it ends", async () => {
    const { store, reads } = countingStore();
    let state: "running" | "succeeded" = "running";
    const hashes = new PanelHashes({ blobs: store, jobState: () => state });
    await hashes.fill([lease(store, "job-1", true), lease(store, "job-1", true)]);
    const first = reads();
    expect(first).toBeGreaterThan(0);
    const again = lease(store, "job-1", true);
    await hashes.fill([again]);
    expect(reads()).toBe(first);
    expect(again.matmul?.aPanelSha256).toHaveLength(32);
    state = "succeeded";
    await hashes.fill([]);
    expect(hashes.jobCount).toBe(0);
  });
});
