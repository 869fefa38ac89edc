/**
 * The coordinator's blob store seen from a process on the same host (`@dce/runtime/local-store`,
 * Node.js only). When the coordinator offers it (`LocalStore` in RegisterWorker, BeginUpload
 * and GetResult responses) and this process can read the directory, matrix bytes move
 * through the file system instead of RPCs: a worker reads its input blocks from the blob
 * files, a client writes its uploads into the upload file and reads C from its blob file.
 * File permissions on the data dir decide who can; anyone else keeps using the RPCs.
 *
 * @packageDocumentation
 */
import { readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { basename, isAbsolute } from "node:path";
import type { BeginUploadResponse, LocalStore } from "@dce/proto";
import { blobPath, isBlobId, storeIdPath, uploadPath } from "./blob-layout.js";
import { coalesceRanges, gatheredRanges, type StridedView } from "./strided-view.js";

/** A coordinator's blob store that this process has checked it can read. */
export interface LocalStoreAccess {
  readonly dir: string;
  readonly storeId: string;
  /** Path of a blob's file. */
  blobPath(blobId: string): string;
}

const checked = new Map<string, LocalStoreAccess | undefined>();

/**
 * The store when this process can read it: `dir/store-id` holds `storeId` (so `dir` names
 * the coordinator's store, not a namesake on another machine). The answer is remembered
 * per store. Undefined when none is offered or it cannot be read here.
 */
export function accessLocalStore(store: LocalStore | undefined): LocalStoreAccess | undefined {
  if (store === undefined || store.dir === "" || store.storeId === "" || !isAbsolute(store.dir)) return undefined;
  const key = `${store.storeId}\0${store.dir}`;
  if (checked.has(key)) return checked.get(key);
  let access: LocalStoreAccess | undefined;
  try {
    if (readFileSync(storeIdPath(store.dir), "utf8").trim() === store.storeId) {
      const dir = store.dir;
      access = {
        dir,
        storeId: store.storeId,
        blobPath(blobId: string): string {
          if (!isBlobId(blobId)) throw new RangeError(`not a blob id: ${blobId.slice(0, 80)}`);
          return blobPath(dir, blobId);
        },
      };
    }
  } catch {
    access = undefined;
  }
  checked.set(key, access);
  return access;
}

/**
 * Reads `target.byteLength` bytes at `offset` of the file at `path` into `target` (which
 * may view a SharedArrayBuffer), off the event loop. Checks the file holds exactly
 * `expectedFileBytes` first; throws when it does not or ends early.
 */
export async function readFileRange(path: string, offset: number, target: Uint8Array, expectedFileBytes: number): Promise<void> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    if (size !== expectedFileBytes) throw new Error(`${path} holds ${size} bytes, expected ${expectedFileBytes}`);
    let pos = 0;
    while (pos < target.byteLength) {
      const { bytesRead } = await fh.read(target, pos, target.byteLength - pos, offset + pos);
      if (bytesRead === 0) throw new Error(`${path} ends at ${offset + pos} bytes`);
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Segments of a strided read this close are read together with the gap between them. An
 * asynchronous read costs about 20–80 µs of thread-pool round trip, the time to copy
 * 128–256 KiB from the page cache: measured on a 128 MiB file, a panel of 64–1024 columns
 * read segment by segment took 55–200 ms at a 32–128 KiB stride and 5–35 ms at 512 KiB;
 * read as covering spans, 20–60 ms either way.
 */
const LOCAL_GATHER_MAX_GAP_BYTES = 256 * 1024;
/** Largest span read at once for merged segments. */
const LOCAL_GATHER_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Reads the first `target.byteLength` gathered bytes of a strided `view` of the file at
 * `path` into `target`, off the event loop: each segment with a positioned read, except
 * that segments lying close together are read as one span and picked out of it (one
 * read of a span is cheaper than many small ones up to a gap of
 * {@link LOCAL_GATHER_MAX_GAP_BYTES}). Checks the file holds exactly `expectedFileBytes`;
 * throws when it does not or ends early. The caller keeps the read inside the view.
 */
export async function readFileStrided(
  path: string,
  view: StridedView,
  target: Uint8Array,
  expectedFileBytes: number,
  maxGapBytes: number = LOCAL_GATHER_MAX_GAP_BYTES,
): Promise<void> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    if (size !== expectedFileBytes) throw new Error(`${path} holds ${size} bytes, expected ${expectedFileBytes}`);
    const readFully = async (into: Uint8Array, at: number, length: number, position: number) => {
      for (let got = 0; got < length; ) {
        const { bytesRead } = await fh.read(into, at + got, length - got, position + got);
        if (bytesRead === 0) throw new Error(`${path} ends at ${position + got} bytes`);
        got += bytesRead;
      }
    };
    const ranges = gatheredRanges(view, 0, target.byteLength);
    let scratch: Uint8Array | undefined;
    let pos = 0;
    for (const w of coalesceRanges(ranges, maxGapBytes, LOCAL_GATHER_WINDOW_BYTES)) {
      if (w.ranges.length === 1) {
        await readFully(target, pos, w.span.lengthBytes, w.span.offsetBytes);
        pos += w.span.lengthBytes;
        continue;
      }
      scratch ??= new Uint8Array(LOCAL_GATHER_WINDOW_BYTES);
      await readFully(scratch, 0, w.span.lengthBytes, w.span.offsetBytes);
      for (const r of w.ranges) {
        const from = r.offsetBytes - w.span.offsetBytes;
        target.set(scratch.subarray(from, from + r.lengthBytes), pos);
        pos += r.lengthBytes;
      }
    }
  } finally {
    await fh.close();
  }
}

/** Piece of {@link readFilePieces}: large enough to keep syscalls few, small enough to overlap. */
const FILE_PIECE_BYTES = 8 * 1024 * 1024;

/**
 * Fills `target` with the whole file at `path` (which must hold exactly
 * `target.byteLength` bytes), off the event loop, one piece ahead: `onFilled(end)` is
 * told as each piece lands, in order, while the next one is being read (a caller hashing
 * the bytes overlaps its work with the reads).
 */
export async function readFilePieces(path: string, target: Uint8Array, onFilled: (end: number) => void): Promise<void> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    if (size !== target.byteLength) throw new Error(`${path} holds ${size} bytes, expected ${target.byteLength}`);
    const readPiece = async (from: number): Promise<number> => {
      const end = Math.min(size, from + FILE_PIECE_BYTES);
      for (let pos = from; pos < end; ) {
        const { bytesRead } = await fh.read(target, pos, end - pos, pos);
        if (bytesRead === 0) throw new Error(`${path} ends at ${pos} bytes`);
        pos += bytesRead;
      }
      return end;
    };
    let pending = size > 0 ? readPiece(0) : undefined;
    while (pending !== undefined) {
      const end = await pending;
      pending = end < size ? readPiece(end) : undefined;
      onFilled(end);
    }
  } finally {
    await fh.close();
  }
}

/** Writes all of `data` into the existing file at `path` (an upload the coordinator created, which syncs it). */
export async function writeWholeFile(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.truncate(0);
    let pos = 0;
    while (pos < data.byteLength) {
      const { bytesWritten } = await fh.write(data, pos, data.byteLength - pos, pos);
      pos += bytesWritten;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Writes an upload's bytes straight into its file when BeginUpload offered the local
 * store and it is reachable from here. True when written: finish the upload with
 * `written_locally`. False (nothing lost) when it cannot: send the chunks, which rewrite
 * the file from offset 0, so a partial write here does no harm.
 */
export async function writeUploadLocally(begin: BeginUploadResponse, bytes: Uint8Array): Promise<boolean> {
  if (begin.localPath === "") return false;
  const store = accessLocalStore(begin.localStore);
  // The upload file must lie inside the store that proved itself (`dir/uploads/<id>`), in
  // normal form: not any `dir/<folder>/<file>` such as a journal segment or a blob.
  // Covered by local-store.test.ts "writes nothing outside <dir>/uploads of the proven store".
  if (store === undefined || begin.localPath !== uploadPath(store.dir, basename(begin.localPath))) return false;
  try {
    await writeWholeFile(begin.localPath, bytes);
    return true;
  } catch {
    return false;
  }
}
