import { createHash, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { promisify } from "node:util";
import { blobPath, blobPrefixDir, uploadPath } from "@dce/runtime/blob-layout";
import { fsyncDir } from "./blob-sync-queue.js";

const fdatasyncAsync = promisify(fdatasync);

/**
 * Blobs up to this size (a 181 × 181 float64 matrix) are made durable by the journal
 * itself: their bytes ride in a data frame of the same group commit as the record that
 * names them, so storing them costs no fsync of their own.
 */
export const JOURNAL_BLOB_MAX_BYTES = 256 * 1024;

/**
 * Small blobs whose durability is the journal's. {@link put} writes the blob's file at
 * its name at once (page cache only) and appends the bytes to the journal as a data
 * frame, before the record that will name the blob: the commit that makes the record
 * durable makes the bytes durable too, in one fdatasync instead of three (the file's,
 * its folder's after the rename, and the journal's). A small job's submit and result
 * each wait for one.
 *
 * The frames are the only durable copy until {@link syncAll} runs, which the journal
 * calls before a snapshot lets it delete the segments holding them. After a crash,
 * {@link restoreJournalBlobs} rewrites, durably, every file that a recovered job still
 * needs and that is missing or not the frame's bytes.
 */
export class JournalBlobs {
  readonly #dir: string;
  readonly #append: (blobId: string, data: Uint8Array) => void;
  /** Blobs whose files are not synced yet: their frames are their only durable copy. */
  readonly #unsynced = new Map<string, string>();

  /** `dir` is the data dir; `append` adds a data frame to the journal's next commit. */
  constructor(dir: string, append: (blobId: string, data: Uint8Array) => void) {
    this.#dir = dir;
    this.#append = append;
  }

  /** Blobs waiting for {@link syncAll}. */
  get unsyncedCount(): number {
    return this.#unsynced.size;
  }

  /**
   * Stores `data` as blob `blobId`: its file at its name, and its frame in the journal.
   * @throws the file system's error (nothing is appended then).
   */
  put(blobId: string, data: Uint8Array): void {
    const dest = blobPath(this.#dir, blobId);
    mkdirSync(blobPrefixDir(this.#dir, blobId), { recursive: true });
    // Through a temporary name, so a reader never sees a partial file at the blob's name.
    const tmp = uploadPath(this.#dir, randomUUID());
    try {
      writeFileSync(tmp, data);
      renameSync(tmp, dest);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    this.#append(blobId, data);
    this.#unsynced.set(blobId, dest);
  }

  /**
   * Makes every blob stored so far durable as a file (fdatasync, then its folder), so
   * that the journal may drop the frames. A file deleted meanwhile (its job is gone) is
   * skipped. Blobs stored while this runs wait for the next call.
   * @throws the disk's error; the journal then keeps its segments.
   */
  async syncAll(): Promise<void> {
    const taken = [...this.#unsynced];
    const dirs = new Set<string>();
    for (const [blobId, path] of taken) {
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(path, "r");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw e;
      }
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
      dirs.add(blobPrefixDir(this.#dir, blobId));
    }
    for (const dir of dirs) await fsyncDir(dir);
    for (const [blobId, path] of taken) if (this.#unsynced.get(blobId) === path) this.#unsynced.delete(blobId);
  }
}

/**
 * After a restart: for each data frame the journal replayed whose blob a recovered job
 * still names (`wanted`), makes sure the blob's file holds exactly those bytes, writing
 * it again (durably) when it is missing, short or different. Calls `stored` for each
 * blob it leaves in place. Returns how many files it wrote.
 */
export async function restoreJournalBlobs(
  dir: string,
  frames: ReadonlyMap<string, Uint8Array>,
  wanted: (blobId: string) => boolean,
  stored: (blobId: string, sizeBytes: number) => void,
): Promise<number> {
  let written = 0;
  for (const [blobId, data] of frames) {
    if (!wanted(blobId)) continue;
    const dest = blobPath(dir, blobId);
    if (!sameBytes(dest, blobId, data.byteLength)) {
      mkdirSync(blobPrefixDir(dir, blobId), { recursive: true });
      const tmp = uploadPath(dir, randomUUID());
      const fd = openSync(tmp, "w");
      try {
        writeFileSync(fd, data);
        await fdatasyncAsync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, dest);
      await fsyncDir(blobPrefixDir(dir, blobId));
      written++;
    }
    stored(blobId, data.byteLength);
  }
  return written;
}

/** True when `path` holds `sizeBytes` bytes whose SHA-256 is `blobId`. */
function sameBytes(path: string, blobId: string, sizeBytes: number): boolean {
  if (!existsSync(path) || statSync(path).size !== sizeBytes) return false;
  return createHash("sha256").update(readFileSync(path)).digest("hex") === blobId;
}
