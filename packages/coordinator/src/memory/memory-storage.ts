import type { OpenedJournal, StoragePorts } from "../ports/storage.js";
import { MemoryBlobStore, type MemoryBlobStoreOptions } from "./memory-blob-store.js";
import { MemoryJournal } from "./memory-journal.js";
import { MemoryResultSink, type MemoryResultSinkOptions } from "./memory-result-sink.js";

/** A coordinator's whole storage in memory: pass it as `ports.storage`, and again to restart. */
export interface MemoryStorage extends StoragePorts {
  readonly journal: MemoryJournal;
  readonly blobs: MemoryBlobStore;
  readonly sink: MemoryResultSink;
}

/**
 * Creates storage held in memory for `Coordinator.open(config, logger, { storage })`.
 * A coordinator opened again on the same storage recovers what the journal committed,
 * with the blobs and result buffers written before.
 */
export function createMemoryStorage(options: MemoryBlobStoreOptions & MemoryResultSinkOptions = {}): MemoryStorage {
  const journal = new MemoryJournal();
  const blobs = new MemoryBlobStore(options);
  const sink = new MemoryResultSink(blobs, options);
  return { journal, blobs, sink, openJournal: (): Promise<OpenedJournal> => journal.open() };
}
