import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { BlobService } from "@dce/proto";
import { BlobError } from "../blob-error.js";
import { localStoreField, type ShellContext } from "../shell/context.js";

/** A blob store refusal as the Connect error callers see; anything else unchanged. */
function toConnect(e: unknown): unknown {
  if (!(e instanceof BlobError)) return e;
  const code = {
    invalid: Code.InvalidArgument,
    "not-found": Code.NotFound,
    "over-limit": Code.ResourceExhausted,
    "out-of-order": Code.FailedPrecondition,
  }[e.kind];
  return new ConnectError(e.message, code);
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toConnect(e);
  }
}

/** BlobService: chunked (or, on this host, file-based) upload and download of matrices. */
export function createBlobService(shell: ShellContext): ServiceImpl<typeof BlobService> {
  return {
    beginUpload: (req) =>
      guard(() => {
        if (req.sizeBytes > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new ConnectError("size_bytes out of range", Code.InvalidArgument);
        }
        const r = shell.blobs.begin(Number(req.sizeBytes), req.sha256, shell.clock.nowMs());
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
        if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConnectError("offset out of range", Code.InvalidArgument);
        const received = shell.blobs.append(req.uploadId, Number(req.offset), req.data, shell.clock.nowMs());
        return { receivedBytes: BigInt(received) };
      }),
    finishUpload: async (req) => {
      if (!req.writtenLocally) return guard(() => ({ blobId: shell.blobs.finish(req.uploadId) }));
      if (!shell.config.localStore) {
        throw new ConnectError("this coordinator does not accept local uploads (--local-store off)", Code.FailedPrecondition);
      }
      try {
        return { blobId: await shell.blobs.finishLocal(req.uploadId) };
      } catch (e) {
        throw toConnect(e);
      }
    },
    readBlob: (req) =>
      guard(() => {
        if (req.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConnectError("offset out of range", Code.InvalidArgument);
        const max = req.maxBytes === 0 ? shell.maxChunkBytes : Math.min(req.maxBytes, shell.maxChunkBytes);
        const r = shell.blobs.read(req.blobId, Number(req.offset), max);
        return { data: r.data, totalBytes: BigInt(r.totalBytes) };
      }),
  };
}
