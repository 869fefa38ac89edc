import { isBlobId } from "@dce/runtime/blob-layout";
/** One stored blob as the garbage collector sees it. */
export interface StoredBlob {
  readonly blobId: string;
  readonly sizeBytes: number;
  /**
   * Bumped each time the same bytes are stored again (an upload or inline matrix of
   * bytes already present, a result sealed to them): the collector's grace period
   * starts again when it changes.
   */
  readonly generation: number;
}

/** Blobs and bytes a store holds (tombstoned blobs not counted). */
export interface BlobUsage {
  readonly blobs: number;
  readonly bytes: number;
}

/**
 * The account a blob store keeps of what it holds, shared by the disk and the memory
 * store: each blob's size and generation, the running totals, and the tombstones.
 *
 * A tombstone is set by the garbage collector, synchronously, the moment it decides to
 * delete a blob: from then on the store answers as if the blob were gone (a submit
 * naming it gets BLOB_NOT_FOUND, an upload of the same bytes is not deduplicated but
 * received in full), so no new job can come to depend on bytes about to be deleted.
 * Storing the bytes again clears the tombstone, and the deletion then leaves them be.
 */
export class BlobIndex {
  readonly #entries = new Map<string, { sizeBytes: number; generation: number }>();
  readonly #tombstones = new Set<string>();
  #bytes = 0;

  /** Size of a live blob; undefined when absent or tombstoned. */
  sizeOf(blobId: string): number | undefined {
    return this.#tombstones.has(blobId) ? undefined : this.#entries.get(blobId)?.sizeBytes;
  }

  /** Generation of a live blob (bumped each time its bytes are stored again); undefined when absent or tombstoned. */
  generationOf(blobId: string): number | undefined {
    return this.#tombstones.has(blobId) ? undefined : this.#entries.get(blobId)?.generation;
  }

  /** True when the blob is tombstoned (its file may still exist until it is removed). */
  isTombstoned(blobId: string): boolean {
    return this.#tombstones.has(blobId);
  }

  /**
   * Records that the store holds these bytes (now, or again): a new blob, or a new
   * generation of a known one, and no tombstone.
   */
  stored(blobId: string, sizeBytes: number): void {
    const e = this.#entries.get(blobId);
    this.#tombstones.delete(blobId);
    if (e === undefined) {
      this.#entries.set(blobId, { sizeBytes, generation: 1 });
      this.#bytes += sizeBytes;
      return;
    }
    this.#bytes += sizeBytes - e.sizeBytes;
    e.sizeBytes = sizeBytes;
    e.generation++;
  }

  /** Tombstones a live blob; false when it is not stored (or already tombstoned). */
  tombstone(blobId: string): boolean {
    if (!this.#entries.has(blobId) || this.#tombstones.has(blobId)) return false;
    this.#tombstones.add(blobId);
    return true;
  }

  /**
   * Forgets a tombstoned blob, once its file is deleted; returns its size. A blob that is
   * not tombstoned (stored again meanwhile, or never tombstoned) is kept and 0 returned.
   */
  forget(blobId: string): number {
    if (!this.#tombstones.delete(blobId)) return 0;
    const e = this.#entries.get(blobId);
    this.#entries.delete(blobId);
    if (e === undefined) return 0;
    this.#bytes -= e.sizeBytes;
    return e.sizeBytes;
  }

  /** Every live blob, in no particular order. */
  list(): StoredBlob[] {
    const out: StoredBlob[] = [];
    for (const [blobId, e] of this.#entries) {
      if (!this.#tombstones.has(blobId)) out.push({ blobId, sizeBytes: e.sizeBytes, generation: e.generation });
    }
    return out;
  }

  /** Live blobs and their bytes. */
  usage(): BlobUsage {
    let tombBytes = 0;
    for (const id of this.#tombstones) tombBytes += this.#entries.get(id)?.sizeBytes ?? 0;
    return { blobs: this.#entries.size - this.#tombstones.size, bytes: this.#bytes - tombBytes };
  }
}

/**
 * What both blob stores (disk and memory) answer from their {@link BlobIndex} alone: sizes,
 * generations, the listing, usage and tombstones. A store extends it and updates `index`
 * as it stores and removes bytes.
 */
export abstract class IndexedBlobStore {
  protected readonly index = new BlobIndex();

  /** Size of a stored blob, or undefined when it is not stored (or tombstoned by the collector). */
  sizeOf(blobId: string): number | undefined {
    return isBlobId(blobId) ? this.index.sizeOf(blobId) : undefined;
  }

  /** Generation of a stored blob (it grows each time the same bytes are stored again), or undefined. */
  generationOf(blobId: string): number | undefined {
    return isBlobId(blobId) ? this.index.generationOf(blobId) : undefined;
  }

  /** Every blob stored (not tombstoned). */
  list(): StoredBlob[] {
    return this.index.list();
  }

  /** Blobs stored and their bytes. */
  usage(): BlobUsage {
    return this.index.usage();
  }

  /** Makes a blob absent at once, ahead of its removal (see {@link BlobIndex}); false when not stored. */
  tombstone(blobId: string): boolean {
    return this.index.tombstone(blobId);
  }
}
