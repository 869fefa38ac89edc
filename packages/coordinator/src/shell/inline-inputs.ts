import { Code } from "@connectrpc/connect";
import { ErrorReason, type MatrixRef, type ShardLease } from "@dce/proto";
import { dceError } from "../errors.js";
import type { BlobStorePort } from "../ports/storage.js";

/** Largest matrix accepted inline in SubmitJob, and largest C returned inline by GetJob. */
export const MAX_INLINE_BYTES = 1024 * 1024;
/** Input matrices up to this size travel inline with a grant (once per job per response). */
const GRANT_INLINE_MAX_BYTES = 64 * 1024;

/**
 * Stores a matrix sent inline in SubmitJob as a blob and names it by its SHA-256
 * (rewrites `ref` to point at the blob).
 * @throws ConnectError RESOURCE_EXHAUSTED (`OVER_LIMIT`) when it is too large,
 *   INVALID_ARGUMENT (`INVALID_SPEC`) when it is the wrong length or contradicts a given blob id.
 */
export function storeInline(blobs: BlobStorePort, name: string, ref: MatrixRef): void {
  const bytes = ref.inlineData.byteLength;
  if (bytes > MAX_INLINE_BYTES) {
    throw dceError(
      Code.ResourceExhausted,
      ErrorReason.OVER_LIMIT,
      `matrix ${name}: inline_data is ${bytes} bytes, over the limit maxInlineBytes=${MAX_INLINE_BYTES}; upload it with BlobService`,
      { limit: "maxInlineBytes" },
    );
  }
  const want = ref.rows * ref.cols * 8;
  if (bytes !== want) {
    throw dceError(
      Code.InvalidArgument,
      ErrorReason.INVALID_SPEC,
      `matrix ${name}: inline_data is ${bytes} bytes but ${ref.rows}x${ref.cols} float64 needs ${want}`,
    );
  }
  const blobId = blobs.put(ref.inlineData);
  if (ref.blobId !== "" && ref.blobId !== blobId) {
    throw dceError(Code.InvalidArgument, ErrorReason.INVALID_SPEC, `matrix ${name}: blob_id is not the SHA-256 of inline_data`);
  }
  ref.blobId = blobId;
  ref.inlineData = new Uint8Array(0);
}

/**
 * Puts small input matrices inline in the first lease of each job in a grant, so a
 * worker computes a small shard without a ReadBlob round trip (it caches them).
 */
export function withInlineInputs(blobs: BlobStorePort, leases: ShardLease[]): ShardLease[] {
  const seen = new Set<string>();
  for (const lease of leases) {
    const t = lease.matmul;
    if (t?.a === undefined || t.b === undefined) continue;
    for (const ref of [t.a, t.b]) {
      const size = ref.rows * ref.cols * 8;
      if (size > GRANT_INLINE_MAX_BYTES || seen.has(ref.blobId)) continue;
      const r = blobs.sizeOf(ref.blobId) === size ? blobs.read(ref.blobId, 0, size) : undefined;
      if (r === undefined || r.data.byteLength !== size) continue;
      ref.inlineData = r.data;
      seen.add(ref.blobId);
    }
  }
  return leases;
}
