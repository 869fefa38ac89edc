import { quote } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import { isBlobId } from "@dce/runtime/blob-layout";

/** The reason a {@link BlobError} of each kind has unless its raise site names a more precise one. */
const REASON_OF_BLOB_KIND = {
  invalid: ErrorReason.BLOB_INVALID,
  "not-found": ErrorReason.BLOB_NOT_FOUND,
  "over-limit": ErrorReason.OVER_LIMIT,
  "out-of-order": ErrorReason.UPLOAD_OUT_OF_ORDER,
} as const satisfies Record<string, ErrorReason>;

/**
 * Why a blob operation was refused; mapped to a transport code by the service layer
 * (`blobConnectError` in errors.ts), which sends `reason` and `metadata` as the
 * error's ErrorInfo.
 */
export class BlobError extends Error {
  override readonly name = "BlobError";
  /** What callers branch on (docs/errors.md). */
  readonly reason: ErrorReason;
  /** Facts for the ErrorInfo, e.g. `upload_id`, `blob_id`, `limit`. */
  readonly metadata: Readonly<Record<string, string>>;
  constructor(
    readonly kind: keyof typeof REASON_OF_BLOB_KIND,
    message: string,
    detail: { reason?: ErrorReason; metadata?: Record<string, string> } = {},
  ) {
    super(message);
    this.reason = detail.reason ?? REASON_OF_BLOB_KIND[kind];
    this.metadata = detail.metadata ?? {};
  }
}

/**
 * The checks every blob store makes before it opens an upload: a well-formed SHA-256 (or
 * none: "" lets the bytes name the blob), a size that is a positive multiple of 8
 * (float64) and within `maxBlobBytes`.
 */
/**
 * Checks a finished upload's digest against the sha256 declared at its start (none
 * declared: the digest names the blob).
 */
export function checkUploadDigest(digest: string, declared: string): void {
  if (declared !== "" && digest !== declared)
    throw new BlobError("invalid", `upload bytes hash to ${digest}, not the declared sha256 ${declared}`);
}

export function checkUploadRequest(sizeBytes: number, sha256: string, maxBlobBytes: number): void {
  if (sha256 !== "" && !isBlobId(sha256)) throw new BlobError("invalid", "sha256 must be 64 lower-case hex characters, or empty");
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 8 !== 0) {
    throw new BlobError("invalid", `size_bytes=${sizeBytes}; it must be a positive multiple of 8 (float64)`);
  }
  if (sizeBytes > maxBlobBytes) {
    throw new BlobError("over-limit", `size_bytes=${sizeBytes} is over the limit maxMatrixBytes=${maxBlobBytes}`, {
      metadata: { limit: "maxMatrixBytes" },
    });
  }
}

/** Refuses a new upload when `open` uploads already are, the limit `maxOpenUploads`. */
export function checkOpenUploads(open: number, maxOpenUploads: number): void {
  if (open >= maxOpenUploads) {
    throw new BlobError("over-limit", `${open} uploads are open, the limit maxOpenUploads=${maxOpenUploads}`, {
      reason: ErrorReason.OVER_CAPACITY,
      metadata: { limit: "maxOpenUploads" },
    });
  }
}

/** The error for an upload id this store does not hold (finished, expired or never begun). */
export function uploadNotFound(uploadId: string): BlobError {
  return new BlobError("not-found", `upload ${quote(uploadId, 64)} not found (finished, expired or never begun)`, {
    reason: ErrorReason.UPLOAD_NOT_FOUND,
    metadata: { upload_id: uploadId },
  });
}
