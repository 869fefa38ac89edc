import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { afterAll, describe, expect, it } from "vitest";
import { BlobStore } from "./blob-store.js";
import {
  blobConnectError,
  dceError,
  errorInfo,
  errorInfoFor,
  FALLBACK_REASON_OF_CODE,
  MAX_METADATA_VALUE_CHARS,
} from "./errors.js";
import { MAX_CHUNKS_AHEAD } from "./upload-progress.js";
import { REASON_OF_ERROR } from "./wire.js";

const root = mkdtempSync(join(tmpdir(), "dce-errors-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The ConnectError a client receives for the BlobError `fn` throws. */
function refusal(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (e) {
    return blobConnectError(e as never);
  }
  throw new Error("not refused");
}

describe("dceError", () => {
  it("carries one ErrorInfo with the reason and the metadata as bounded strings", () => {
    const e = dceError(Code.NotFound, ErrorReason.JOB_NOT_FOUND, "job j not found", {
      job_id: "j",
      shard_index: 3,
      missing: undefined,
      long: "x".repeat(1000),
    });
    const [info, ...more] = e.findDetails(ErrorInfoSchema);
    expect(more).toEqual([]);
    expect(info?.reason).toBe(ErrorReason.JOB_NOT_FOUND);
    expect(Object.keys(info?.metadata ?? {})).toEqual(["job_id", "shard_index", "long"]);
    expect(info?.metadata.shard_index).toBe("3");
    expect([...(info?.metadata.long ?? "")]).toHaveLength(MAX_METADATA_VALUE_CHARS);
    expect(errorInfo(ErrorReason.INTERNAL).metadata).toEqual({});
  });

  it("errorInfoFor: the error's own ErrorInfo, or the fallback of its code", () => {
    expect(errorInfoFor(dceError(Code.Aborted, ErrorReason.LEASE_LOST, "gone", { epoch: 2 }))).toEqual(
      expect.objectContaining({ reason: ErrorReason.LEASE_LOST, metadata: { epoch: "2" } }),
    );
    expect(errorInfoFor(new ConnectError("x", Code.Unavailable)).reason).toBe(ErrorReason.UNAVAILABLE);
  });
});

describe("blobConnectError", () => {
  const store = new BlobStore({ dir: join(root, "data"), maxBlobBytes: 1024, maxOpenUploads: 1, uploadIdleMs: 60_000 });
  afterAll(() => store.close());

  it.each([
    ["a bad sha256", () => store.begin(8, "x", 0), Code.InvalidArgument, ErrorReason.BLOB_INVALID, {}],
    [
      "a blob over the limit",
      () => store.begin(2048, "0".repeat(64), 0),
      Code.ResourceExhausted,
      ErrorReason.OVER_LIMIT,
      { limit: "maxMatrixBytes" },
    ],
    [
      "an unknown blob",
      () => store.read("1".repeat(64), 0, 8),
      Code.NotFound,
      ErrorReason.BLOB_NOT_FOUND,
      { blob_id: "1".repeat(64) },
    ],
    [
      "an unknown upload",
      () => store.append("gone", 0, new Uint8Array(8), 0),
      Code.NotFound,
      ErrorReason.UPLOAD_NOT_FOUND,
      { upload_id: "gone" },
    ],
  ])("%s: code and reason", (_what, fn, code, reason, metadata) => {
    const e = refusal(fn);
    expect(e.code).toBe(code);
    expect(e.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason, metadata })]);
  });

  it("a chunk too far out of order, and too many uploads at once", () => {
    // Chunks may come in any order, but only MAX_CHUNKS_AHEAD of them wait past a gap.
    const { uploadId } = store.begin(8 * (MAX_CHUNKS_AHEAD + 2), "2".repeat(64), 0) ?? { uploadId: "" };
    for (let i = 1; i <= MAX_CHUNKS_AHEAD; i++) store.append(uploadId, 8 * i, new Uint8Array(8), 0);
    const outOfOrder = refusal(() => store.append(uploadId, 8 * (MAX_CHUNKS_AHEAD + 1), new Uint8Array(8), 0));
    expect(outOfOrder.code).toBe(Code.FailedPrecondition);
    expect(outOfOrder.findDetails(ErrorInfoSchema)[0]?.reason).toBe(ErrorReason.UPLOAD_OUT_OF_ORDER);
    const busy = refusal(() => store.begin(16, "3".repeat(64), 0));
    expect(busy.code).toBe(Code.ResourceExhausted);
    expect(busy.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({ reason: ErrorReason.OVER_CAPACITY, metadata: { limit: "maxOpenUploads" } }),
    ]);
  });
});

describe("the reasons", () => {
  const names = Object.keys(ErrorReason).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");

  it("are all documented in docs/errors.md", () => {
    const doc = readFileSync(fileURLToPath(new URL("../../../docs/errors.md", import.meta.url)), "utf8");
    const missing = names.filter((n) => !doc.includes(`\`${n}\``));
    expect(missing).toEqual([]);
  });

  it("of core error kinds are one per kind, and no fallback is UNSPECIFIED", () => {
    const core = Object.values(REASON_OF_ERROR);
    expect(new Set(core).size).toBe(core.length);
    expect(Object.values(FALLBACK_REASON_OF_CODE)).not.toContain(ErrorReason.UNSPECIFIED);
  });
});
