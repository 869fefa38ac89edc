import type { WorkerId } from "./ids.js";
import {
  addHolder,
  createPanelHolders,
  dropHolder,
  holdersOf,
  namePeers,
  type PanelPeer,
  type PeerLookup,
} from "./panel-holders.js";
import { isShutOut } from "./quarantine.js";
import { type CoreState, type JobRecord, ShardStatus, type WorkerRecord } from "./state.js";
import { freshTilesLeft, ownBlock, releaseBlock, splitTileGrid, takeFreshTile } from "./tile-blocks.js";

// Grant placement: the scheduler's link to a job's tile blocks (tile-blocks.ts) and panel
// holders (panel-holders.ts). Both live in the JobRecord, are not durable, and are dropped
// when the job ends; a forgotten worker is dropped from both.

/**
 * The next fresh tile of `job` for `worker`, or -1 when none is left. At the job's first
 * fresh grant, cuts the grid into one block per registered, not shut-out worker that
 * `canRun` the job; a block whose owner is gone or shut out counts as free.
 */
export function nextFreshShard(s: CoreState, job: JobRecord, worker: WorkerRecord, canRun: (w: WorkerRecord) => boolean): number {
  if (job.tileBlocks === null) {
    let takers = 0;
    for (const w of s.workers.values()) if (!isShutOut(s, w) && canRun(w)) takers++;
    job.tileBlocks = splitTileGrid(job.plan.rowTiles, job.plan.colTiles, takers);
  }
  const gone = (id: WorkerId): boolean => {
    const w = s.workers.get(id);
    return w === undefined || isShutOut(s, w);
  };
  return takeFreshTile(
    job.tileBlocks,
    job.plan,
    worker.id,
    (shard) => job.shardStatus[shard] === ShardStatus.pending,
    (b) => b.owner === undefined || gone(b.owner),
  );
}

/** True when `job` may still have tiles never leased (before its first fresh grant: any tile neither done nor leased). */
export function hasFreshTiles(job: JobRecord): boolean {
  if (job.tileBlocks === null) return job.doneCount + job.leasedCount < job.plan.shardCount;
  return freshTilesLeft(job.tileBlocks) > 0;
}

/**
 * How many of the two panels `shard` needs (its A row panel, its B column panel)
 * `workerId` already holds or fetches: its block covers the tile's row (column), or it
 * was granted a shard there. Retries prefer the shard with the most.
 */
export function heldPanels(job: JobRecord, workerId: WorkerId, shard: number): number {
  const row = Math.floor(shard / job.plan.colTiles);
  const col = shard - row * job.plan.colTiles;
  const own = job.tileBlocks === null ? undefined : ownBlock(job.tileBlocks, workerId);
  const holders = job.panelHolders;
  const a = (own && row >= own.rowStart && row < own.rowEnd) || holders?.rows.get(row)?.includes(workerId);
  const b = (own && col >= own.colStart && col < own.colEnd) || holders?.cols.get(col)?.includes(workerId);
  return (a ? 1 : 0) + (b ? 1 : 0);
}

/**
 * The peers a grant of `shard` to `worker` names for its A row panel (`aPeers`) and B
 * column panel (`bPeers`): earlier grantees of the same band that are still registered,
 * not shut out and serve peers, never `worker` itself. Records `worker` as a holder of both.
 */
export function panelPeersFor(
  s: CoreState,
  job: JobRecord,
  worker: WorkerRecord,
  shard: number,
): { aPeers: PanelPeer[]; bPeers: PanelPeer[] } {
  job.panelHolders ??= createPanelHolders();
  const lookup: PeerLookup = (id) => {
    const w = s.workers.get(id);
    return w === undefined || isShutOut(s, w) ? undefined : { address: w.peerAddress, identity: w.identity };
  };
  const row = Math.floor(shard / job.plan.colTiles);
  const col = shard - row * job.plan.colTiles;
  const rowHolders = holdersOf(job.panelHolders.rows, row);
  const colHolders = holdersOf(job.panelHolders.cols, col);
  const aPeers = namePeers(rowHolders, worker.id, lookup);
  const bPeers = namePeers(colHolders, worker.id, lookup);
  addHolder(rowHolders, worker.id, lookup);
  addHolder(colHolders, worker.id, lookup);
  return { aPeers, bPeers };
}

/** Drops a forgotten worker from the blocks and panel holders of every active job. */
export function forgetPlacement(s: CoreState, workerId: WorkerId): void {
  for (const id of s.activeJobs) {
    const job = s.jobs.get(id);
    if (!job) continue;
    if (job.tileBlocks !== null) releaseBlock(job.tileBlocks, workerId);
    if (job.panelHolders !== null) dropHolder(job.panelHolders, workerId);
  }
}

/** Drops a job's blocks and panel holders (it ended, or its tiles start over). */
export function dropPlacement(job: JobRecord): void {
  job.tileBlocks = null;
  job.panelHolders = null;
}
