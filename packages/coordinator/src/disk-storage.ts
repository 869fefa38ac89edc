import { join } from "node:path";
import { stagingDir } from "@dce/runtime/blob-layout";
import type { Logger } from "pino";
import { BlobStore } from "./blob-store.js";
import type { CoordinatorConfig } from "./config.js";
import { DataDirSpace } from "./disk-space.js";
import { Journal } from "./journal.js";
import { JournalBlobs, restoreJournalBlobs } from "./journal-blobs.js";
import type { StoragePorts } from "./ports/storage.js";
import { ResultSink } from "./result-sink.js";
import { type diskSpaceOf, withDataDirAsync } from "./storage-errors.js";

/**
 * The coordinator's storage on disk, in `config.dataDir`: blobs, result buffers and the
 * journal, sharing one account of free space. The journal syncs the result buffers
 * before each commit, so an accepted tile's bytes are on disk before its record.
 */
export function createDiskStorage(
  config: CoordinatorConfig,
  logger: Logger,
  opts: { readonly statfs?: typeof diskSpaceOf | undefined } = {},
): StoragePorts {
  const space = new DataDirSpace(config.dataDir, {
    ...(opts.statfs ? { statfs: opts.statfs } : {}),
    ...(config.minFreeBytes !== undefined ? { minFreeBytes: config.minFreeBytes } : {}),
  });
  const blobs = new BlobStore({
    dir: config.dataDir,
    maxBlobBytes: config.core.limits.maxMatrixBytes,
    maxOpenUploads: config.maxOpenUploads,
    uploadIdleMs: config.uploadIdleMs,
    space,
  });
  const sink = new ResultSink(config.dataDir, blobs, space);
  // Space that uploads in progress and running jobs' results will still take.
  space.promise(() => blobs.pendingUploadBytes() + sink.unwrittenBytes());
  return {
    blobs,
    sink,
    space,
    stagingDir: stagingDir(config.dataDir),
    openJournal: async () => {
      let journalBlobs: JournalBlobs | undefined;
      const opened = await Journal.open({
        dir: join(config.dataDir, "journal"),
        fsync: config.fsync,
        // Result bytes first, then the blob names that point at them (a sealed result is a
        // link to its buffer), then the records: nothing a record names can be lost.
        beforeCommit: async () => {
          await sink.syncDirty();
          await blobs.syncPending();
        },
        // Blobs whose only durable copy is a data frame become files before segments go.
        beforeSnapshot: () =>
          journalBlobs === undefined || journalBlobs.unsyncedCount === 0
            ? Promise.resolve()
            : withDataDirAsync(config.dataDir, "storing new blobs", () => (journalBlobs as JournalBlobs).syncAll()),
        onSnapshotFailed: (e) => logger.error({ err: e }, "journal snapshot failed; the segments are kept until one succeeds"),
        ...(config.onJournalCommit ? { onCommit: config.onJournalCommit } : {}),
        ...(config.crashAt ? { crashAt: config.crashAt } : {}),
      });
      const { journal } = opened;
      // A crash may have taken the files of small inline matrices and results back: write again those a job still needs.
      const named = new Set<string>();
      for (const job of journal.model.jobs.values()) {
        named.add(job.spec.a.blobId).add(job.spec.b.blobId);
        if (job.resultBlobId !== "") named.add(job.resultBlobId);
      }
      const rewritten = await withDataDirAsync(config.dataDir, "restoring blobs from the journal", () =>
        restoreJournalBlobs(
          config.dataDir,
          opened.blobs,
          (id) => named.has(id),
          (id, size) => blobs.restored(id, size),
        ),
      );
      if (rewritten > 0) logger.warn({ blobs: rewritten }, "rewrote inline matrices from the journal after a crash");
      journalBlobs = new JournalBlobs(config.dataDir, (id, data) => journal.appendBlob(id, data));
      blobs.attachJournal(journalBlobs);
      return { journal, report: opened.report };
    },
  };
}
