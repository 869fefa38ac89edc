import { closeSync, existsSync, fdatasync, mkdirSync, renameSync, rmSync, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { promisify } from "node:util";

const fdatasyncAsync = promisify(fdatasync);

/** An inline matrix written to a temporary file, to be synced and named at the next commit. */
interface PendingFile {
  readonly blobId: string;
  readonly tmp: string;
  readonly fd: number;
  readonly dest: string;
  readonly dir: string;
  readonly sizeBytes: number;
  /** Taken by a {@link BlobSyncQueue.sync} in progress. */
  syncing: boolean;
}

/** A name linked into the store (a sealed result) whose folder is not synced yet. */
interface PendingLink {
  readonly blobId: string;
  readonly sizeBytes: number;
  readonly dir: string;
}

/**
 * Blobs whose durability is deferred to the next journal commit (group commit of the
 * data the records name). The journal calls {@link sync} before it writes each batch,
 * so a record that names one of these blobs is on disk only after the blob's bytes and
 * its name are; until then nobody outside the coordinator has been told of it (the
 * handlers reply after the commit). This turns the fsyncs of a small job's inputs and of
 * its sealed result, which ran one by one on the event loop, into a few fsyncs run side
 * by side off it, inside the commit that needs them.
 *
 * Order of effects for an inline matrix: write a temporary file (`put`), then at the
 * commit fdatasync it, rename it to its name, fsync the folder, and only then count it
 * as stored; for a sealed result (already synced by the result sink before this runs):
 * link it at once, fsync the folder at the commit, then count it as stored.
 */
export class BlobSyncQueue {
  readonly #files = new Map<string, PendingFile>();
  #links: PendingLink[] = [];
  /** Links a {@link sync} in progress took: still this queue's until they are counted as stored. */
  readonly #syncingLinks = new Set<PendingLink>();
  readonly #onDurable: (blobId: string, sizeBytes: number) => void;

  /** `onDurable` is called for each blob once its bytes and name are on disk. */
  constructor(onDurable: (blobId: string, sizeBytes: number) => void) {
    this.#onDurable = onDurable;
  }

  /** Queues a written temporary file (its `fd` still open) to become blob `blobId` at `dest`. */
  addFile(blobId: string, tmp: string, fd: number, dest: string, dir: string, sizeBytes: number): void {
    this.#files.set(blobId, { blobId, tmp, fd, dest, dir, sizeBytes, syncing: false });
  }

  /** Queues the folder of a name just linked, so the name survives a crash. */
  addLink(blobId: string, sizeBytes: number, dir: string): void {
    this.#links.push({ blobId, sizeBytes, dir });
  }

  /** Size of a blob queued here, or undefined. */
  sizeOf(blobId: string): number | undefined {
    const link = (l: PendingLink) => l.blobId === blobId;
    return this.#files.get(blobId)?.sizeBytes ?? (this.#links.find(link) ?? [...this.#syncingLinks].find(link))?.sizeBytes;
  }

  /** The temporary file of a queued inline matrix, or undefined. */
  pathOf(blobId: string): string | undefined {
    return this.#files.get(blobId)?.tmp;
  }

  /** True when nothing waits for a sync. */
  get empty(): boolean {
    return this.#files.size === 0 && this.#links.length === 0;
  }

  /**
   * Makes everything queued so far durable. Blobs queued meanwhile wait for the next
   * call (the journal chains its commits, so that is the next batch's).
   * @throws the disk's error; the journal then fails, and the coordinator stops.
   */
  async sync(): Promise<void> {
    const files = [...this.#files.values()].filter((f) => !f.syncing);
    const links = this.#links;
    this.#links = [];
    if (files.length === 0 && links.length === 0) return;
    // Readable (sizeOf) all along: a client told of a sealed result may read it while its folder syncs.
    for (const l of links) this.#syncingLinks.add(l);
    for (const f of files) f.syncing = true;
    const named: PendingFile[] = [];
    const dirs = new Set(links.map((l) => l.dir));
    try {
      await Promise.all(files.map((f) => fdatasyncAsync(f.fd)));
      for (const f of files) {
        closeSync(f.fd);
        mkdirSync(f.dir, { recursive: true });
        if (existsSync(f.dest)) {
          // The same bytes are stored already (an upload of them won the race, or a
          // tombstoned copy): keep those and count them now, in the same synchronous
          // step as the check, so the collector cannot delete them in between.
          unlinkSync(f.tmp);
          this.#files.delete(f.blobId);
          this.#onDurable(f.blobId, f.sizeBytes);
        } else {
          renameSync(f.tmp, f.dest);
          named.push(f);
          dirs.add(f.dir);
        }
      }
      await Promise.all([...dirs].map(fsyncDir));
    } catch (e) {
      // The journal fails with this error and the coordinator stops: the files taken
      // here stay marked, and a restart removes their temporary files.
      for (const l of links) this.#syncingLinks.delete(l);
      this.#links.unshift(...links);
      throw e;
    }
    for (const f of named) {
      this.#files.delete(f.blobId);
      this.#onDurable(f.blobId, f.sizeBytes);
    }
    for (const l of links) {
      this.#onDurable(l.blobId, l.sizeBytes);
      this.#syncingLinks.delete(l);
    }
  }

  /** Drops what is queued (closing files); their temporary files are removed at the next start. */
  close(): void {
    for (const f of this.#files.values()) {
      if (f.syncing) continue;
      closeSync(f.fd);
      rmSync(f.tmp, { force: true });
    }
    this.#files.clear();
    this.#links = [];
    this.#syncingLinks.clear();
  }
}

/** fsyncs a folder, so the names made in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
