import { join } from "node:path";
import { stagingDir } from "@dce/runtime/blob-layout";
import type { Logger } from "pino";
import { BlobStore } from "./blob-store.js";
import type { CoordinatorConfig } from "./config.js";
import { DataDirSpace } from "./disk-space.js";
import { Journal } from "./journal.js";
import type { StoragePorts } from "./ports/storage.js";
import { ResultSink } from "./result-sink.js";
import type { diskSpaceOf } from "./storage-errors.js";

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
    openJournal: () =>
      Journal.open({
        dir: join(config.dataDir, "journal"),
        fsync: config.fsync,
        // Result bytes first, then the blob names that point at them (a sealed result is a
        // link to its buffer), then the records: nothing a record names can be lost.
        beforeCommit: async () => {
          await sink.syncDirty();
          await blobs.syncPending();
        },
        onSnapshotFailed: (e) => logger.error({ err: e }, "journal snapshot failed; the segments are kept until one succeeds"),
        ...(config.onJournalCommit ? { onCommit: config.onJournalCommit } : {}),
        ...(config.crashAt ? { crashAt: config.crashAt } : {}),
      }),
  };
}
