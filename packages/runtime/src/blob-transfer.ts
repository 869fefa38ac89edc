/**
 * The one client of `BlobService` that every dce process uses to move matrix bytes
 * (`@dce/runtime/blob-transfer`, Node.js only): uploads (BeginUpload, UploadChunk,
 * FinishUpload) and reads (ReadBlob), in chunks that fit a message, through the
 * coordinator's local store when it is offered and reachable. The SDK uploads A and B
 * and reads C with it; the worker reads its input blocks and uploads large tiles.
 *
 * Policy stays with the caller: each RPC goes through the caller's `call` wrapper (the
 * worker retries and re-registers there, the SDK retries idempotent reads), and content
 * that does not match what was asked for becomes the caller's own error (`dataError`;
 * by default a `ConnectError` with code `DataLoss`).
 *
 * @packageDocumentation
 */
import { createHash } from "node:crypto";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import type { BlobService, ReadBlobRequest } from "@dce/proto";
import { type BulkChannel, bulkReadBlob, bulkUploadChunk } from "./bulk-calls.js";
import { CallWindow } from "./call-window.js";
import { type LocalStoreAccess, readFilePieces, readFileRange, readFileStrided, writeUploadLocally } from "./local-store.js";
import { gatheredBytesOf, type StridedView } from "./strided-view.js";

/** Runs one RPC of a transfer: call `rpc()` once, or retry it by the caller's rules. `name` is the RPC's name. */
export type RpcRunner = <T>(name: string, rpc: () => Promise<T>) => Promise<T>;

/** Options of {@link createBlobTransfer}. */
export interface BlobTransferOptions {
  /**
   * Largest payload of one chunk, in bytes (a message less room for its envelope). A
   * function is asked before every chunk, for limits learnt after the client was made.
   */
  readonly chunkBytes: number | (() => number);
  /**
   * ReadBlob calls in flight at once over all reads of this client (default
   * {@link READS_IN_FLIGHT}); a read alone uses them all.
   */
  readonly readsInFlight?: number;
  /**
   * UploadChunk calls in flight at once over all uploads of this client (default
   * {@link CHUNKS_IN_FLIGHT}); an upload alone uses them all.
   */
  readonly chunksInFlight?: number;
  /**
   * Makes UploadChunk and ReadBlob straight on this HTTP/2 channel (`@dce/runtime/bulk-calls`:
   * the same gRPC calls without Connect's copies of the bytes); without it they go through
   * `blobs`, as every other call does.
   */
  readonly bulk?: BulkChannel;
}

/** Content that does not fit the request; `message` says so in words. */
export type BlobDataProblem =
  | {
      readonly kind: "size-mismatch";
      readonly blobId: string;
      /** Bytes the coordinator says the blob holds; those of the gathered view when `strided`. */
      readonly actualBytes: bigint;
      /** The read was of a strided view ({@link BlobTransfer.readStrided}). */
      readonly strided: boolean;
      readonly message: string;
    }
  | {
      readonly kind: "bad-chunk";
      readonly blobId: string;
      readonly chunkBytes: number;
      /** Where the chunk was asked for: in the blob, or in the gathered view for a strided read. */
      readonly offsetBytes: number;
      readonly message: string;
    }
  | { readonly kind: "digest-mismatch"; readonly message: string }
  | { readonly kind: "upload-mismatch"; readonly message: string };

/** Per-operation settings shared by uploads and reads. */
export interface TransferCallOptions {
  /** Deadline and signal of each RPC. */
  readonly callOptions: CallOptions;
  /** Wraps each RPC (retries); default: one try. */
  readonly call?: RpcRunner;
  /** Makes the error thrown for a {@link BlobDataProblem}; default: a `ConnectError` with code `DataLoss`. */
  readonly dataError?: (problem: BlobDataProblem) => Error;
}

/** Options of {@link BlobTransfer.upload}. */
export interface UploadOptions extends TransferCallOptions {
  /** Write the bytes into the upload file when BeginUpload offers the local store and it is reachable. */
  readonly useLocalStore: boolean;
  /**
   * Lower-case hex SHA-256 of the bytes, when the caller has it already. Without it the
   * bytes are hashed first (so a blob already stored is not sent again), except with
   * `useLocalStore` while the local store has not proved out of reach: then the
   * coordinator names the blob by the bytes it receives.
   */
  readonly sha256?: string;
}

/** Options of {@link BlobTransfer.readRange}, {@link BlobTransfer.readStrided} and {@link BlobTransfer.readBlob}. */
export interface ReadOptions extends TransferCallOptions {
  /** The coordinator's store, when reachable from here: blocks are read from its files first. */
  readonly localStore?: LocalStoreAccess | undefined;
  /** Told why a read from the local store failed; the bytes then come by ReadBlob. */
  readonly onLocalStoreError?: (error: unknown) => void;
}

/** Moves blobs to and from one coordinator. Create it with {@link createBlobTransfer}. */
export interface BlobTransfer {
  /**
   * Stores `bytes` as a blob and returns its id (the lower-case hex SHA-256 of the
   * bytes). Nothing is sent when the coordinator already holds the content. The chunks
   * are subarrays of `bytes`, never copies.
   *
   * @throws the `dataError` when the coordinator's answers do not add up (an empty
   *   upload id is a ConnectError `Internal`), or the error of an RPC.
   */
  upload(bytes: Uint8Array, options: UploadOptions): Promise<string>;
  /**
   * Fills `target` with the bytes at `offsetBytes` of a blob that holds `totalBytes`:
   * from the local store's file when given and readable, else by ReadBlob chunks.
   * `target` may view a SharedArrayBuffer. The content is not hashed (it is a part).
   *
   * @throws the `dataError` when the blob's size is not `totalBytes` or a chunk is
   *   empty or larger than asked, or the error of an RPC.
   */
  readRange(blobId: string, offsetBytes: number, target: Uint8Array, totalBytes: number, options: ReadOptions): Promise<void>;
  /**
   * Fills `target` with the first `target.byteLength` gathered bytes of a strided `view`
   * (`@dce/runtime/strided-view`; a column panel of a row-major matrix) of a blob that
   * holds `totalBytes`: from the local store's file when given and readable (its segments,
   * merged into larger reads where they lie close), else by strided ReadBlob chunks that
   * fit a message. Only the view's bytes cross the wire. Not hashed (it is a part).
   *
   * @throws RangeError when `view` does not fit a blob of `totalBytes` or `target` is
   *   longer than the view; the `dataError` when the coordinator's view of the blob is not
   *   that long (the blob's size differs) or a chunk is empty or larger than asked; or the
   *   error of an RPC.
   */
  readStrided(blobId: string, view: StridedView, target: Uint8Array, totalBytes: number, options: ReadOptions): Promise<void>;
  /**
   * Fills `target` with a whole blob, as {@link BlobTransfer.readRange}, then checks
   * its SHA-256 against `blobId`.
   *
   * @throws the `dataError` when the content's digest is not `blobId`, and as readRange.
   */
  readBlob(blobId: string, target: Uint8Array, options: ReadOptions): Promise<void>;
}

const callOnce: RpcRunner = (_name, rpc) => rpc();

/**
 * ReadBlob calls in flight at once, by default: the round trip of each overlaps the
 * others' transfer. Four answers of 4 MiB fill the 16 MiB connection window of
 * `@dce/runtime/http2`; more only queue there.
 */
export const READS_IN_FLIGHT = 4;

/**
 * UploadChunk calls in flight at once, by default. The coordinator writes each chunk at
 * its offset as it comes, in whatever order, and hashes the bytes in order (docs/limits.md).
 */
export const CHUNKS_IN_FLIGHT = 4;

/** The default {@link TransferCallOptions.dataError}. */
function dataLoss(problem: BlobDataProblem): Error {
  return new ConnectError(problem.message, Code.DataLoss);
}

/**
 * Creates the blob-transfer client over `blobs`.
 *
 * @example
 * <!-- docs-test: prelude
 * import { readFileSync } from "node:fs";
 * import { createClient } from "@connectrpc/connect";
 * import { createGrpcTransport } from "@connectrpc/connect-node";
 * import { BlobService } from "@dce/proto";
 * import { createBlobTransfer } from "@dce/runtime/blob-transfer";
 * const bearer = (next) => (req) => (req.header.set("authorization", `Bearer ${process.env.DCE_TOKEN}`), next(req));
 * const nodeOptions = { ca: readFileSync("ca.pem") };
 * const transport = createGrpcTransport({ baseUrl: "https://127.0.0.1:7070", nodeOptions, interceptors: [bearer] });
 * const bytes = new Uint8Array(3000).fill(7);
 * -->
 * ```ts
 * const transfer = createBlobTransfer(createClient(BlobService, transport), { chunkBytes: 4_128_768 });
 * const blobId = await transfer.upload(bytes, { callOptions: { timeoutMs: 30_000 }, useLocalStore: true });
 * ```
 */
export function createBlobTransfer(blobs: Client<typeof BlobService>, options: BlobTransferOptions): BlobTransfer {
  const chunkLimit = typeof options.chunkBytes === "number" ? () => options.chunkBytes as number : options.chunkBytes;
  const readWindow = new CallWindow(options.readsInFlight ?? READS_IN_FLIGHT);
  const uploadWindow = new CallWindow(options.chunksInFlight ?? CHUNKS_IN_FLIGHT);
  const bulk = options.bulk;
  /** Whether the last upload that offered to use the local store could write there; unknown before. */
  let localStoreReachable: boolean | undefined;

  async function upload(bytes: Uint8Array, o: UploadOptions): Promise<string> {
    const call = o.call ?? callOnce;
    const dataError = o.dataError ?? dataLoss;
    const opts = o.callOptions;
    // Over the local store the bytes only cross a page cache, and the coordinator hashes
    // them anyway to check them: declaring no hash spares the client a pass over them
    // (and gives up deduplication before the write, which would save only that write).
    // Until an upload has shown that the local store is out of reach, it is assumed
    // reachable; after that, bytes are hashed first, so stored blobs are not sent again.
    const sha256 = o.sha256 ?? (o.useLocalStore && localStoreReachable !== false ? "" : sha256Hex(bytes));
    const begin = await call("BeginUpload", () => blobs.beginUpload({ sizeBytes: BigInt(bytes.byteLength), sha256 }, opts));
    // Blob ids are the lower-case hex SHA-256 of the bytes (common.proto, MatrixRef.blob_id),
    // which is the only id there is when the coordinator already holds the blob.
    if (begin.alreadyPresent && sha256 !== "") return sha256;
    if (begin.uploadId === "") throw new ConnectError("coordinator returned an empty upload id", Code.Internal);
    const finished = (blobId: string): string => {
      if (sha256 === "" ? blobId.length !== 64 : blobId !== sha256) {
        throw dataError({
          kind: "upload-mismatch",
          message:
            sha256 === ""
              ? `coordinator named the upload ${JSON.stringify(blobId)}, which is not a blob id`
              : `coordinator stored blob ${blobId} for content with SHA-256 ${sha256}`,
        });
      }
      return blobId;
    };
    if (o.useLocalStore) localStoreReachable = await writeUploadLocally(begin, bytes);
    if (o.useLocalStore && localStoreReachable) {
      const done = await call("FinishUpload", () => blobs.finishUpload({ uploadId: begin.uploadId, writtenLocally: true }, opts));
      return finished(done.blobId);
    }
    // max_chunk_bytes 0 means the coordinator set no limit of its own.
    const limit = chunkLimit();
    const chunkBytes = begin.maxChunkBytes > 0 ? Math.min(begin.maxChunkBytes, limit) : limit;
    // Chunks go out several at once and may land in any order; each answer counts every
    // byte received so far, so the largest must be the whole upload. FinishUpload checks
    // the size and the SHA-256 of what was stored, whatever the answers said.
    let mostReceived = 0n;
    await inLanes(Math.ceil(bytes.byteLength / chunkBytes), uploadWindow.size, async (index) => {
      const offset = index * chunkBytes;
      const data = bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.byteLength));
      const res = await call("UploadChunk", () =>
        uploadWindow.run(() => {
          const req = { uploadId: begin.uploadId, offset: BigInt(offset), data };
          return bulk !== undefined ? bulkUploadChunk(bulk, req, opts) : blobs.uploadChunk(req, opts);
        }),
      );
      if (res.receivedBytes < BigInt(data.byteLength) || res.receivedBytes > BigInt(bytes.byteLength)) {
        const message = `upload ${begin.uploadId}: coordinator has ${res.receivedBytes} bytes after a ${data.byteLength}-byte chunk of a ${bytes.byteLength}-byte upload`;
        throw dataError({ kind: "upload-mismatch", message });
      }
      if (res.receivedBytes > mostReceived) mostReceived = res.receivedBytes;
    });
    if (mostReceived !== BigInt(bytes.byteLength)) {
      const message = `upload ${begin.uploadId}: coordinator has ${mostReceived} bytes after every chunk of ${bytes.byteLength} was sent`;
      throw dataError({ kind: "upload-mismatch", message });
    }
    const done = await call("FinishUpload", () => blobs.finishUpload({ uploadId: begin.uploadId }, opts));
    return finished(done.blobId);
  }

  async function readRange(
    blobId: string,
    offsetBytes: number,
    target: Uint8Array,
    totalBytes: number,
    o: ReadOptions,
  ): Promise<void> {
    if (o.localStore !== undefined) {
      try {
        await readFileRange(o.localStore.blobPath(blobId), offsetBytes, target, totalBytes);
        return;
      } catch (e) {
        // The file may have gone (or never been readable): ReadBlob still works.
        o.onLocalStoreError?.(e);
      }
    }
    await readChunks(blobId, target, totalBytes, o, (pos) => ({ offset: BigInt(offsetBytes + pos) }));
  }

  async function readStrided(
    blobId: string,
    view: StridedView,
    target: Uint8Array,
    totalBytes: number,
    o: ReadOptions,
  ): Promise<void> {
    const gatheredBytes = gatheredBytesOf(view, totalBytes);
    if (gatheredBytes === undefined || target.byteLength > gatheredBytes) {
      const { offsetBytes, strideBytes, segmentBytes } = view;
      throw new RangeError(
        `a ${target.byteLength}-byte read of the view (offset ${offsetBytes}, stride ${strideBytes}, segment ${segmentBytes}) does not fit a ${totalBytes}-byte blob`,
      );
    }
    if (o.localStore !== undefined) {
      try {
        await readFileStrided(o.localStore.blobPath(blobId), view, target, totalBytes);
        return;
      } catch (e) {
        o.onLocalStoreError?.(e);
      }
    }
    const fixed = { offset: BigInt(view.offsetBytes), strideBytes: BigInt(view.strideBytes), segmentBytes: view.segmentBytes };
    await readChunks(blobId, target, gatheredBytes, o, (pos) => ({ ...fixed, gatheredOffset: BigInt(pos) }));
  }

  /**
   * Fills `target` by ReadBlob chunks that fit a message, as many in flight at once as
   * the client's read window holds (shared with its other reads); `at(pos)` is the request
   * for the bytes from `pos` of `target` on, whose answers must say the read covers
   * `totalBytes`. `onFilled(end)` is told each time the filled prefix of `target` grows to `end`.
   */
  async function readChunks(
    blobId: string,
    target: Uint8Array,
    totalBytes: number,
    o: ReadOptions,
    at: (pos: number) => Partial<Pick<ReadBlobRequest, "offset" | "strideBytes" | "segmentBytes" | "gatheredOffset">>,
    onFilled?: (end: number) => void,
  ): Promise<void> {
    const call = o.call ?? callOnce;
    const dataError = o.dataError ?? dataLoss;
    const lengthBytes = target.byteLength;
    const strided = at(0).segmentBytes !== undefined;
    // Slots of one chunk each; a slot whose answer came short (a smaller server limit) asks again for the rest.
    const slotBytes = Math.max(1, chunkLimit());
    const slots = Math.ceil(lengthBytes / slotBytes);
    const done = new Uint8Array(slots);
    let prefixSlots = 0;
    const fill = async (slot: number): Promise<void> => {
      const end = Math.min(lengthBytes, (slot + 1) * slotBytes);
      for (let pos = slot * slotBytes; pos < end; ) {
        const maxBytes = Math.min(chunkLimit(), end - pos);
        const request = at(pos);
        const res = await call("ReadBlob", () =>
          readWindow.run(async () => {
            if (bulk === undefined) {
              const r = await blobs.readBlob({ blobId, ...request, maxBytes }, o.callOptions);
              if (r.data.byteLength <= maxBytes) target.set(r.data, pos);
              return { dataBytes: r.data.byteLength, totalBytes: r.totalBytes };
            }
            // The answer lands in place; the view ends where this chunk must, so no more is written.
            return bulkReadBlob(bulk, { blobId, ...request, maxBytes }, target.subarray(0, pos + maxBytes), pos, o.callOptions);
          }),
        );
        const where = strided ? `gathered offset ${pos} of a strided view` : `offset ${request.offset}`;
        if (res.totalBytes !== BigInt(totalBytes)) {
          const message = strided
            ? `a strided view of blob ${blobId} has ${res.totalBytes} bytes, expected ${totalBytes} (the blob's size differs)`
            : `blob ${blobId} has ${res.totalBytes} bytes, expected ${totalBytes}`;
          throw dataError({ kind: "size-mismatch", blobId, actualBytes: res.totalBytes, strided, message });
        }
        if (res.dataBytes === 0 || res.dataBytes > maxBytes) {
          const chunkBytes = res.dataBytes;
          const message = `ReadBlob returned ${chunkBytes} bytes at ${where} of blob ${blobId} (asked for at most ${maxBytes})`;
          throw dataError({
            kind: "bad-chunk",
            blobId,
            chunkBytes,
            offsetBytes: strided ? pos : Number(request.offset),
            message,
          });
        }
        pos += res.dataBytes;
      }
      done[slot] = 1;
      const before = prefixSlots;
      while (prefixSlots < slots && done[prefixSlots] === 1) prefixSlots++;
      if (prefixSlots > before) onFilled?.(Math.min(lengthBytes, prefixSlots * slotBytes));
    };
    await inLanes(slots, readWindow.size, fill);
  }

  async function readBlob(blobId: string, target: Uint8Array, o: ReadOptions): Promise<void> {
    // The digest follows the bytes as they arrive, so hashing overlaps the transfer.
    let hash = createHash("sha256");
    let hashed = 0;
    const onFilled = (end: number) => {
      hash.update(target.subarray(hashed, end));
      hashed = end;
    };
    let fromFile = false;
    if (o.localStore !== undefined) {
      try {
        await readFilePieces(o.localStore.blobPath(blobId), target, onFilled);
        fromFile = true;
      } catch (e) {
        o.onLocalStoreError?.(e);
        hash = createHash("sha256");
        hashed = 0;
      }
    }
    if (!fromFile) await readChunks(blobId, target, target.byteLength, o, (pos) => ({ offset: BigInt(pos) }), onFilled);
    const sha256 = hash.digest("hex");
    if (sha256 !== blobId) {
      throw (o.dataError ?? dataLoss)({ kind: "digest-mismatch", message: `blob ${blobId} content has SHA-256 ${sha256}` });
    }
  }

  return { upload, readRange, readStrided, readBlob };
}

/**
 * Runs `task(0)` … `task(count − 1)`, `lanes` at a time, in order of index. After a
 * failure no task starts (those under way finish), and the failure is thrown.
 */
async function inLanes(count: number, lanes: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    try {
      while (next < count && !failed) await task(next++);
    } catch (e) {
      failed = true; // the other lanes stop after their current task
      throw e;
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
}

/** Lower-case hex SHA-256 of `bytes`. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
