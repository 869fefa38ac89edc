import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { type BlobService, ErrorReason, type ReadBlobRequest } from "@dce/proto";
import { principalKey } from "../auth.js";
import { BlobError } from "../blob-error.js";
import { blobConnectError, dceError, malformedRequest } from "../errors.js";
import { localStoreField, type ShellContext } from "../shell/context.js";
import type { StridedView } from "../strided-read.js";

/** A blob store refusal as the Connect error callers see (with its reason); anything else unchanged. */
function toConnect(e: unknown): unknown {
  return e instanceof BlobError ? blobConnectError(e) : e;
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toConnect(e);
  }
}

/**
 * A call from a worker: one with a worker certificate and no client token. With
 * authentication off (development) every caller looks like one, so uploads there are held
 * only to the journal's reserve (submits are still held to the watermark).
 */
function isWorkerCall(ctx: HandlerContext): boolean {
  const p = ctx.values.get(principalKey);
  return p?.workerIdentity !== undefined && p.clientId === undefined;
}

/**
 * The strided view a ReadBlob asks for (segment_bytes set), or undefined for a plain range.
 *
 * @throws INVALID_ARGUMENT (MALFORMED_REQUEST) for stride or gathered offset fields without
 *   segment_bytes, or values past 2^53 − 1; the view itself is checked by the store.
 */
function stridedViewOf(req: ReadBlobRequest): StridedView | undefined {
  if (req.segmentBytes === 0) {
    if (req.strideBytes !== 0n || req.gatheredOffset !== 0n) {
      throw malformedRequest("stride_bytes and gathered_offset need segment_bytes (a strided read)");
    }
    return undefined;
  }
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (req.strideBytes > limit) throw malformedRequest("stride_bytes out of range");
  if (req.gatheredOffset > limit) throw malformedRequest("gathered_offset out of range");
  return { offsetBytes: Number(req.offset), strideBytes: Number(req.strideBytes), segmentBytes: req.segmentBytes };
}

/** BlobService: chunked (or, on this host, file-based) upload and download of matrices. */
export function createBlobService(shell: ShellContext): ServiceImpl<typeof BlobService> {
  return {
    beginUpload: (req, ctx) =>
      guard(() => {
        if (req.sizeBytes > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw malformedRequest("size_bytes out of range");
        }
        // New data from a client must leave the data dir's watermark free; a worker's tile
        // upload belongs to a running job, which may use the space below it.
        const sizeBytes = Number(req.sizeBytes);
        const r = shell.blobs.begin(sizeBytes, req.sha256, shell.clock.nowMs(), { fromClient: !isWorkerCall(ctx) });
        if (!r) return { uploadId: "", alreadyPresent: true, maxChunkBytes: shell.maxChunkBytes };
        const local = localStoreField(shell).localStore;
        return {
          uploadId: r.uploadId,
          alreadyPresent: false,
          maxChunkBytes: shell.maxChunkBytes,
          ...(local ? { localStore: local, localPath: shell.blobs.uploadPathOf(r.uploadId) } : {}),
        };
      }),
    uploadChunk: (req) =>
      guard(() => {
        if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw malformedRequest("offset out of range");
        const received = shell.blobs.append(req.uploadId, Number(req.offset), req.data, shell.clock.nowMs());
        return { receivedBytes: BigInt(received) };
      }),
    finishUpload: async (req) => {
      if (!req.writtenLocally) {
        try {
          return { blobId: await shell.blobs.finish(req.uploadId) };
        } catch (e) {
          throw toConnect(e);
        }
      }
      if (!shell.config.localStore) {
        throw dceError(
          Code.FailedPrecondition,
          ErrorReason.LOCAL_STORE_OFF,
          "this coordinator does not accept local uploads (--local-store off)",
        );
      }
      try {
        return { blobId: await shell.blobs.finishLocal(req.uploadId) };
      } catch (e) {
        throw toConnect(e);
      }
    },
    readBlob: (req) =>
      guard(() => {
        if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw malformedRequest("offset out of range");
        const max = req.maxBytes === 0 ? shell.maxChunkBytes : Math.min(req.maxBytes, shell.maxChunkBytes);
        const view = stridedViewOf(req);
        const r =
          view === undefined
            ? shell.blobs.read(req.blobId, Number(req.offset), max)
            : shell.blobs.readStrided(req.blobId, view, Number(req.gatheredOffset), max);
        return { data: r.data, totalBytes: BigInt(r.totalBytes) };
      }),
  };
}
