import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { isBlobId } from "@dce/runtime/blob-layout";
import { digestFile } from "@dce/runtime/file-digest";
import { BlobError } from "./blob-error.js";
import type { BlobIndex } from "./blob-index.js";
import { gatherRanges, type StridedReadPlan } from "./strided-read.js";

// The blob store's work on single files: listing the store at start, its id, syncing a
// path, hashing a locally written upload, gathering a strided read.

/**
 * Lists the blob files under `blobsDir` into `index`. A file there that is no blob of
 * its folder (nothing the store writes; only a hand-made copy could be) is deleted, so
 * it cannot pass for a blob.
 */
export function scanBlobs(blobsDir: string, index: BlobIndex): void {
  for (const prefix of readdirSync(blobsDir)) {
    if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
    const dir = join(blobsDir, prefix);
    if (!statSync(dir).isDirectory()) continue;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (isBlobId(name) && name.startsWith(prefix)) index.stored(name, statSync(path).size);
      else rmSync(path, { force: true, recursive: true });
    }
  }
}

/** Reads the store id, creating it (durably) the first time. */
export function ensureStoreId(path: string): string {
  if (existsSync(path)) {
    const id = readFileSync(path, "utf8").trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  }
  const id = randomBytes(16).toString("hex");
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${id}\n`);
  fsyncPath(tmp);
  renameSync(tmp, path);
  return id;
}

export function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The SHA-256 (hex) of a file a peer wrote, hashed on a digest thread (two uploads hash
 * side by side, and the event loop keeps serving), after checking it has exactly
 * `sizeBytes`; the file is fdatasynced meanwhile.
 */
export async function digestLocalUpload(path: string, sizeBytes: number): Promise<string> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    if (size !== sizeBytes)
      throw new BlobError("invalid", `the locally written upload has ${size} bytes; ${sizeBytes} were declared`);
    const [digest] = await Promise.all([digestFile(path, size), fh.datasync()]);
    return digest;
  } finally {
    await fh.close();
  }
}

/** Gathers a strided read's ranges from a blob's file with positioned reads. */
export function gatherFromFile(path: string, blobId: string, plan: StridedReadPlan): Uint8Array {
  const fd = openSync(path, "r");
  try {
    return gatherRanges(plan, (target, at, length, position) => {
      let got = 0;
      while (got < length) {
        const n = readSync(fd, target, at + got, length - got, position + got);
        if (n === 0) {
          throw new BlobError("not-found", `blob ${blobId} is shorter than recorded`, { metadata: { blob_id: blobId } });
        }
        got += n;
      }
    });
  } finally {
    closeSync(fd);
  }
}
