import type { CoreState } from "./state.js";

/**
 * Every blob id that a job in `state` still needs: its inputs A and B (whatever its
 * state, so a retried submit or a restart finds them), and its result C once it has one.
 * The blob garbage collector keeps exactly these (and blobs younger than its grace period).
 *
 * Tiles are not blobs the core knows: an accepted tile is written into its job's result
 * buffer before the core accepts it, so a tile a worker uploaded as a blob is needed only
 * until its CompleteShards is read, which the grace period covers. The same bytes may be
 * A of one job, B of another and C of a third: a blob is listed once, whoever names it.
 * Pure and read-only.
 */
export function referencedBlobs(state: Readonly<CoreState>): Set<string> {
  const ids = new Set<string>();
  for (const job of state.jobs.values()) {
    ids.add(job.spec.a.blobId);
    ids.add(job.spec.b.blobId);
    if (job.resultBlobId !== "") ids.add(job.resultBlobId);
  }
  return ids;
}
