import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { BlobService, ErrorInfoSchema, ErrorReason, type ReadBlobRequest } from "@dce/proto";
import { afterEach, describe, expect, it } from "vitest";
import { type InMemoryCoordinator, startInMemoryCoordinator } from "../testing.js";

// ReadBlob's strided view over the wire: a column panel of B read in chunks, continued by
// gathered_offset, and every malformed view refused as INVALID_ARGUMENT with a reason.

let h: InMemoryCoordinator | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const [k, n] = [13, 11];
const values = Float64Array.from({ length: k * n }, (_, i) => i + 0.5);

/** Columns [c0, c1) of the k×n matrix, row-major. */
function panel(c0: number, c1: number): Float64Array {
  const out = new Float64Array(k * (c1 - c0));
  for (let r = 0; r < k; r++) out.set(values.subarray(r * n + c0, r * n + c1), r * (c1 - c0));
  return out;
}

async function setUp() {
  h = await startInMemoryCoordinator();
  const ref = h.putMatrix(k, n, values);
  return { blobs: createClient(BlobService, h.transport), blobId: ref.blobId };
}

type ReadInit = Partial<Omit<ReadBlobRequest, "$typeName">>;

describe("ReadBlob with a strided view", () => {
  it.each([
    [0, 1],
    [3, 8],
    [10, 11],
    [0, 11],
  ])("reads columns [%i, %i) in 1-byte and larger chunks, resuming by gathered_offset", async (c0, c1) => {
    const { blobs, blobId } = await setUp();
    const expected = new Uint8Array(panel(c0, c1).buffer);
    const view = { blobId, offset: BigInt(8 * c0), strideBytes: BigInt(8 * n), segmentBytes: 8 * (c1 - c0) };
    for (const maxBytes of [1, 40, 0]) {
      const got = new Uint8Array(expected.byteLength);
      let g = 0;
      let calls = 0;
      while (g < got.byteLength) {
        const res = await blobs.readBlob({ ...view, maxBytes, gatheredOffset: BigInt(g) });
        expect(res.totalBytes).toBe(BigInt(expected.byteLength));
        expect(res.data.byteLength).toBeGreaterThan(0);
        got.set(res.data, g);
        g += res.data.byteLength;
        calls++;
      }
      expect(got).toEqual(expected);
      if (maxBytes === 1) expect(calls).toBe(expected.byteLength);
      if (maxBytes === 0) expect(calls).toBe(1); // the server's chunk limit
    }
    // at the end of the view: nothing more, not an error (as a plain read at the blob's end)
    const end = await blobs.readBlob({ ...view, gatheredOffset: BigInt(expected.byteLength) });
    expect(end.data.byteLength).toBe(0);
  });

  it.each<[string, ReadInit, ErrorReason, RegExp]>([
    [
      "a stride shorter than a segment",
      { strideBytes: 8n, segmentBytes: 16 },
      ErrorReason.BLOB_INVALID,
      /stride_bytes=8 must be at least segment_bytes=16/,
    ],
    ["a zero stride", { strideBytes: 0n, segmentBytes: 8 }, ErrorReason.BLOB_INVALID, /stride_bytes=0/],
    [
      "a view past the blob's end",
      { offset: BigInt(k * n * 8 - 4), strideBytes: 88n, segmentBytes: 8 },
      ErrorReason.BLOB_INVALID,
      /does not fit the blob's 1144 bytes/,
    ],
    [
      "a gathered offset past the view",
      { strideBytes: 88n, segmentBytes: 8, gatheredOffset: 8n * 13n + 1n },
      ErrorReason.BLOB_INVALID,
      /gathered_offset 105 is outside the view \(0\.\.104\)/,
    ],
    ["a stride without a segment", { strideBytes: 88n }, ErrorReason.MALFORMED_REQUEST, /need segment_bytes/],
    ["a gathered offset without a segment", { gatheredOffset: 8n }, ErrorReason.MALFORMED_REQUEST, /need segment_bytes/],
    [
      "a stride past 2^53",
      { strideBytes: 2n ** 60n, segmentBytes: 8 },
      ErrorReason.MALFORMED_REQUEST,
      /stride_bytes out of range/,
    ],
    [
      "a gathered offset past 2^53",
      { strideBytes: 88n, segmentBytes: 8, gatheredOffset: 2n ** 60n },
      ErrorReason.MALFORMED_REQUEST,
      /gathered_offset out of range/,
    ],
  ])("refuses %s as INVALID_ARGUMENT", async (_name, fields, reason, message) => {
    const { blobs, blobId } = await setUp();
    const e = await blobs.readBlob({ blobId, ...fields }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(e?.code).toBe(Code.InvalidArgument);
    expect(e?.rawMessage).toMatch(message);
    expect(e?.findDetails(ErrorInfoSchema)[0]?.reason).toBe(reason);
  });

  it("an unknown blob is NOT_FOUND", async () => {
    const { blobs } = await setUp();
    const e = await blobs
      .readBlob({ blobId: "b".repeat(64), strideBytes: 8n, segmentBytes: 8 })
      .catch((err: unknown) => ConnectError.from(err));
    expect((e as ConnectError).code).toBe(Code.NotFound);
  });
});
