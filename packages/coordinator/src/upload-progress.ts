import { BlobError } from "./blob-error.js";

/**
 * Most chunks of one upload held ahead of its first missing byte. Clients send a few
 * chunks at once (`CHUNKS_IN_FLIGHT` in `@dce/runtime/blob-transfer`), which may land in
 * any order; a chunk further out of order is refused, so one upload's bookkeeping stays
 * small (docs/limits.md).
 */
export const MAX_CHUNKS_AHEAD = 64;

/**
 * Most bytes of one upload kept in memory, ahead of its first missing byte, to be hashed
 * in order when the gap before them fills. Past it they are dropped and the whole file
 * is hashed when the upload finishes (on the digest threads): slower, never wrong.
 */
export const MAX_HELD_BYTES = 32 * 1024 * 1024;

interface Ahead {
  readonly end: number;
  /** The chunk's bytes, for the hash; dropped when too many are held. */
  data: Uint8Array | undefined;
}

/** Limits of one {@link UploadProgress}; the defaults are the constants above. */
export interface UploadProgressLimits {
  readonly maxChunksAhead?: number;
  readonly maxHeldBytes?: number;
}

/**
 * Which bytes of an upload have arrived, for chunks that may come in any order and more
 * than once. The bytes from 0 up to the first gap (the prefix) are handed out in order
 * for the running SHA-256; those past a gap wait, in memory while they fit. Pure
 * bookkeeping: the store writes each new chunk at its offset and hashes what
 * {@link add} hands back.
 *
 * A chunk either lies wholly inside bytes already received (a resent chunk: nothing
 * happens) or wholly outside them. Bytes are never written twice, so the bytes hashed
 * are the bytes in the file.
 */
export class UploadProgress {
  #prefix = 0;
  #received = 0;
  #heldBytes = 0;
  #hashInOrder = true;
  /** Chunks past the prefix, by offset. */
  readonly #ahead = new Map<number, Ahead>();
  readonly #maxChunksAhead: number;
  readonly #maxHeldBytes: number;

  constructor(
    readonly sizeBytes: number,
    limits: UploadProgressLimits = {},
  ) {
    this.#maxChunksAhead = limits.maxChunksAhead ?? MAX_CHUNKS_AHEAD;
    this.#maxHeldBytes = limits.maxHeldBytes ?? MAX_HELD_BYTES;
  }

  /** Bytes received so far, in every chunk together. */
  get received(): number {
    return this.#received;
  }

  /** Every declared byte has arrived. */
  get complete(): boolean {
    return this.#prefix === this.sizeBytes;
  }

  /** Every byte so far was handed out by {@link add} in order: the running hash covers the prefix. */
  get hashedInOrder(): boolean {
    return this.#hashInOrder;
  }

  /**
   * Whether `[offset, offset + lengthBytes)` is new: false for a chunk received before.
   *
   * @throws BlobError `invalid` for a chunk past the declared size or overlapping bytes
   *   received in part, `out-of-order` for one that would hold more than
   *   {@link MAX_CHUNKS_AHEAD} chunks past a gap.
   */
  admit(offset: number, lengthBytes: number): boolean {
    const end = offset + lengthBytes;
    if (!Number.isSafeInteger(offset) || offset < 0 || end > this.sizeBytes) {
      throw new BlobError("invalid", `chunk [${offset}, ${end}) lies past the declared size ${this.sizeBytes}`);
    }
    if (lengthBytes === 0) return false;
    if (end <= this.#prefix) return false;
    const same = this.#ahead.get(offset);
    if (same !== undefined && same.end === end) return false;
    if (offset < this.#prefix) throw overlap(offset, end, 0, this.#prefix);
    for (const [from, a] of this.#ahead) {
      if (offset < a.end && from < end) throw overlap(offset, end, from, a.end);
    }
    if (offset > this.#prefix && this.#ahead.size >= this.#maxChunksAhead) {
      throw new BlobError(
        "out-of-order",
        `chunk at offset ${offset}: ${this.#ahead.size} chunks already wait past the first missing byte ${this.#prefix}, the limit`,
      );
    }
    return true;
  }

  /**
   * Records a chunk that {@link admit} called new and the store has written. Returns the
   * bytes that now extend the prefix, in order, for the running hash (none when the chunk
   * lies past a gap, or once bytes had to be dropped and the file is hashed at the end).
   */
  add(offset: number, data: Uint8Array): Uint8Array[] {
    const end = offset + data.byteLength;
    this.#received += data.byteLength;
    if (offset !== this.#prefix) {
      this.#ahead.set(offset, { end, data: this.#hashInOrder ? data : undefined });
      if (this.#hashInOrder) this.#heldBytes += data.byteLength;
      if (this.#heldBytes > this.#maxHeldBytes) this.#dropHeld();
      return [];
    }
    const inOrder: Uint8Array[] = this.#hashInOrder ? [data] : [];
    this.#prefix = end;
    for (let next = this.#ahead.get(this.#prefix); next !== undefined; next = this.#ahead.get(this.#prefix)) {
      this.#ahead.delete(this.#prefix);
      if (next.data !== undefined) {
        inOrder.push(next.data);
        this.#heldBytes -= next.data.byteLength;
      }
      this.#prefix = next.end;
    }
    return inOrder;
  }

  #dropHeld(): void {
    this.#hashInOrder = false;
    for (const a of this.#ahead.values()) a.data = undefined;
    this.#heldBytes = 0;
  }
}

function overlap(offset: number, end: number, from: number, to: number): BlobError {
  return new BlobError("invalid", `chunk [${offset}, ${end}) overlaps bytes [${from}, ${to}) already received`);
}
