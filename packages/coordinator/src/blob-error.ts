import { ErrorReason } from "@dce/proto";

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
