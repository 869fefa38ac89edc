import { Counter, Gauge, type Registry } from "prom-client";
import type { StorageStats } from "../shell/blob-gc.js";

// The data dir's gauges and the blob collector's counters, read from
// `coordinator.gc.stats()` at scrape time. A counter here follows a count the
// coordinator keeps since its start: each scrape adds what it grew by.

/**
 * Registers, in `registers`, the storage gauges and collector counters read from
 * `stats()` at scrape time. Free-space gauges read nothing when the free space is unknown
 * (memory storage), and everything reads 0 without a source.
 */
export function registerStorageMetrics(registers: Registry[], stats: () => StorageStats | undefined): void {
  const gauge = (name: string, help: string, read: (s: StorageStats) => number | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const s = stats();
        const v = s === undefined ? 0 : read(s);
        if (v !== undefined) this.set(v);
      },
    });
  gauge("dce_store_bytes", "Bytes of the blobs in the blob store (inputs, results, uploaded tiles).", (s) => s.bytes);
  gauge("dce_store_blobs", "Blobs in the blob store.", (s) => s.blobs);
  gauge("dce_data_dir_free_bytes", "Free bytes of the data dir's file system (for this process).", (s) => s.freeBytes);
  gauge(
    "dce_data_dir_min_free_bytes",
    "The --min-free-bytes watermark: below it new uploads and submits are refused.",
    (s) => s.minFreeBytes,
  );
  const counter = (name: string, help: string, read: (s: StorageStats) => number) => {
    let last = 0;
    return new Counter({
      name,
      help,
      registers,
      collect() {
        const s = stats();
        if (s === undefined) return;
        const v = read(s);
        if (v > last) this.inc(v - last);
        last = v;
      },
    });
  };
  counter("dce_gc_passes_total", "Passes of the blob garbage collector.", (s) => s.gc.passes);
  counter("dce_gc_blobs_deleted_total", "Blobs the garbage collector deleted.", (s) => s.gc.blobsDeleted);
  counter("dce_gc_bytes_deleted_total", "Bytes the garbage collector deleted.", (s) => s.gc.bytesDeleted);
  counter("dce_gc_failures_total", "Blob deletions the disk refused (tried again by a later pass).", (s) => s.gc.failures);
}
