import { raceAbort } from "../internal/abort.js";

/**
 * An LRU cache of whole input matrices keyed by blob id, bounded by a byte budget,
 * that also merges concurrent loads of the same blob: with several shards of one
 * job running, matrix B crosses the wire once per worker, not once per shard.
 * Blob ids are content addresses, so an entry never goes stale.
 */
export interface BlobCache {
  /** Bytes currently held. */
  readonly sizeBytes: number;
  /** The cached matrix, marking it most recently used; `undefined` if absent. */
  get(blobId: string): Float64Array | undefined;
  /**
   * Returns the cached matrix, or joins a load already under way, or starts `load`.
   * A successful load is cached (unless larger than the whole budget).
   *
   * Aborting `signal` rejects this call with `signal.reason`; the shared load is
   * aborted (through the signal passed to `load`) only when every caller waiting for
   * it has aborted.
   */
  getOrLoad(blobId: string, load: (signal: AbortSignal) => Promise<Float64Array>, signal: AbortSignal): Promise<Float64Array>;
  /**
   * The cached matrix, or the result of a load already under way (joined like another
   * caller of {@link BlobCache.getOrLoad}); `undefined` at once when neither: it never
   * starts a load. The panel server answers peers with it.
   */
  join(blobId: string, signal: AbortSignal): Promise<Float64Array> | undefined;
}

/** Options for {@link createBlobCache}. */
export interface BlobCacheOptions {
  /** Most bytes to keep; least recently used entries are evicted beyond it. 0 disables caching. */
  readonly budgetBytes: number;
}

interface Load {
  readonly promise: Promise<Float64Array>;
  readonly controller: AbortController;
  waiters: number;
}

/** Creates an empty {@link BlobCache}. */
export function createBlobCache(options: BlobCacheOptions): BlobCache {
  // Map iteration order is insertion order: re-inserting on use makes the first key the LRU.
  const entries = new Map<string, Float64Array>();
  const loads = new Map<string, Load>();
  let sizeBytes = 0;

  const put = (blobId: string, value: Float64Array) => {
    if (value.byteLength > options.budgetBytes || entries.has(blobId)) return;
    for (const [key, old] of entries) {
      if (sizeBytes + value.byteLength <= options.budgetBytes) break;
      entries.delete(key);
      sizeBytes -= old.byteLength;
    }
    entries.set(blobId, value);
    sizeBytes += value.byteLength;
  };

  const get = (blobId: string) => {
    const value = entries.get(blobId);
    if (value !== undefined) {
      entries.delete(blobId);
      entries.set(blobId, value);
    }
    return value;
  };

  return {
    get sizeBytes() {
      return sizeBytes;
    },
    get,
    join(blobId, signal) {
      const hit = get(blobId);
      if (hit !== undefined) return Promise.resolve(hit);
      const current = loads.get(blobId);
      return current === undefined ? undefined : wait(blobId, current, signal);
    },
    async getOrLoad(blobId, load, signal) {
      const hit = get(blobId);
      if (hit !== undefined) return hit;
      let current = loads.get(blobId);
      if (current === undefined) {
        const controller = new AbortController();
        const promise = load(controller.signal).then(
          (value) => {
            if (loads.get(blobId) === entry) loads.delete(blobId);
            put(blobId, value);
            return value;
          },
          (e: unknown) => {
            if (loads.get(blobId) === entry) loads.delete(blobId);
            throw e;
          },
        );
        promise.catch(() => {}); // a load nobody waits for any more must not be an unhandled rejection
        const entry: Load = { promise, controller, waiters: 0 };
        current = entry;
        loads.set(blobId, entry);
      }
      return wait(blobId, current, signal);
    },
  };

  /** Waits for a shared load as one of its callers. */
  async function wait(blobId: string, shared: Load, signal: AbortSignal): Promise<Float64Array> {
    shared.waiters++;
    try {
      return await raceAbort(shared.promise, signal);
    } finally {
      shared.waiters--;
      if (shared.waiters === 0 && loads.get(blobId) === shared) {
        // Everyone left before the load finished: stop it, and let the next caller start afresh.
        loads.delete(blobId);
        shared.controller.abort(signal.reason);
      }
    }
  }
}
