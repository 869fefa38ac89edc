import { type CoreState, checkCompletion, type LeaseKey, tileBounds, tileSizeBytes, type WorkerId } from "@dce/core";
import type { ResultSinkPort } from "./ports/storage.js";
import { DataDirError } from "./storage-errors.js";

/** A worker's result for one lease, about to be handed to the core; without `data`, or with a failed verdict, it is not written. */
export interface TileReport {
  readonly lease: LeaseKey;
  readonly data?: Uint8Array | undefined;
  readonly verdict?: { readonly ok: boolean } | undefined;
}

/**
 * What staging did with one tile: `written` (its bytes are in the job's result file,
 * to be synced before the journal records the acceptance), a {@link DataDirError} (the
 * disk refused them: the tile must not reach the core, the worker retries), or
 * `skipped` (the core will refuse it anyway: nothing was written).
 */
export type Staged = "written" | "skipped" | DataDirError;

/**
 * Writes the tiles of one CompleteShards call into their jobs' result buffers before
 * the core sees them. The core's acceptance is final (it is journaled and the shard is
 * never computed again), so the bytes must be on their way to disk first: a full disk
 * then refuses the tile, and the job waits for space instead of losing an accepted
 * tile. A tile is written only if the core would accept it now (the same
 * `checkCompletion` at the same `nowMs`), so an accepted tile's bytes are never
 * overwritten, and within one call only the first report of a shard is written (a
 * later one is refused by the core after the first is accepted).
 *
 * Small results live in memory until `ResultSinkPort.flush`: that happens once per
 * job here, so a call with many tiny tiles still costs one write per job.
 * @returns what happened to each report, in their order.
 * @throws anything that is not a disk fault (a bug).
 */
export function stageTiles(
  state: Readonly<CoreState>,
  sink: ResultSinkPort,
  workerId: WorkerId,
  reports: readonly TileReport[],
  nowMs: number,
): Staged[] {
  const out: Staged[] = reports.map(() => "skipped");
  const written = new Map<string, number[]>();
  const seen = new Set<string>();
  for (const [i, r] of reports.entries()) {
    if (r.data === undefined || r.verdict?.ok === false) continue;
    const pre = checkCompletion(state, workerId, r.lease, nowMs);
    if (!pre.ok) continue;
    const { job } = pre.value;
    const shard = r.lease.shardIndex;
    const key = `${job.id}\u0000${shard}`;
    if (seen.has(key) || r.data.byteLength !== tileSizeBytes(job.plan, shard)) continue;
    seen.add(key);
    try {
      // Normally open since the job was submitted; opened here if that failed (disk full then).
      sink.prepare(job.id, job.plan.rows, job.plan.cols);
      sink.writeTile(job.id, tileBounds(job.plan, shard), r.data);
    } catch (e) {
      if (!(e instanceof DataDirError)) throw e;
      out[i] = e;
      continue;
    }
    out[i] = "written";
    const list = written.get(job.id);
    if (list) list.push(i);
    else written.set(job.id, [i]);
  }
  for (const [jobId, indexes] of written) {
    try {
      sink.flush(jobId);
    } catch (e) {
      if (!(e instanceof DataDirError)) throw e;
      for (const i of indexes) out[i] = e;
    }
  }
  return out;
}
