import type { WorkerId } from "./ids.js";
import type { Plan } from "./plan.js";

// Tile blocks: the order in which a job's fresh (never leased) tiles are granted.
//
// A tile of C needs one row panel of A and one column panel of B. Granting tiles in
// row-major order hands each of p workers tiles scattered over every column band, so
// each one fetches all of B. Instead, at the job's first fresh grant the tile grid is cut
// into about p compact rectangles (blocks), one per worker that can run the job:
//
// - a worker takes a block at its first fresh grant of the job (first come, lowest free
//   block), then the block's tiles in row-major order within the block;
// - when its block has no fresh tile left, it takes the lowest free block if there is one
//   (never claimed, or left by a worker that went away), else it steals the far half of
//   the fresh tiles of the block with the most left, as a block of its own: the owner
//   keeps the near half, whose panels it already holds;
// - a worker that joins once every block is taken steals the same way.
//
// The plan (shard index ↔ tile) does not depend on any of this, so the result is the same
// whatever the grant order. State is O(blocks) per job, blocks ≤ workers + the first
// split; it is not durable (after a restart blocks are cut afresh).

/** One compact rectangle of a job's tile grid and the part of it not yet handed out. */
export interface TileBlock {
  /** Tile rows [rowStart, rowEnd) of the grid. */
  readonly rowStart: number;
  readonly rowEnd: number;
  /** Tile columns [colStart, colEnd) of the grid. */
  readonly colStart: number;
  readonly colEnd: number;
  /** The tiles not yet handed out: offsets [next, end) in the rectangle's row-major order. */
  next: number;
  end: number;
  /** The worker working through it; undefined while the block is free. */
  owner: WorkerId | undefined;
}

/** How long one grid cut of `parts` blocks is: its panels (Σ block heights + widths), then its imbalance. */
interface Cut {
  readonly blocks: TileBlock[];
  readonly panels: number;
  readonly imbalance: number;
}

/**
 * Cuts a `rowTiles × colTiles` grid into `parts` compact blocks (clamped to 1..tiles),
 * listed block-row by block-row. The blocks stand in `gr` block-rows, block-row i cut into
 * p_i ≈ parts/gr blocks with its height in proportion to p_i, so every block has about
 * the same number of tiles (p = 4 → 2×2; p = 3 → two blocks over one). Of the candidate
 * `gr` it picks the cut needing the fewest panels (the sum of every block's height and
 * width: the A row panels plus B column panels its workers fetch), then the best balanced,
 * then the most block-rows. Pure and deterministic.
 */
export function splitTileGrid(rowTiles: number, colTiles: number, parts: number): TileBlock[] {
  const p = Math.max(1, Math.min(Math.floor(parts), rowTiles * colTiles));
  const lo = Math.ceil(p / colTiles);
  const hi = Math.min(p, rowTiles);
  // The panel count is close to convex in gr around this estimate; a window keeps the search O(p).
  const guess = Math.min(hi, Math.max(lo, Math.round(Math.sqrt((p * rowTiles) / colTiles))));
  let best: Cut | undefined;
  for (let gr = Math.max(lo, guess - 4); gr <= Math.min(hi, guess + 4); gr++) {
    const cut = cutGrid(rowTiles, colTiles, p, gr);
    // On a tie the later (more block-rows) wins: blocks then follow the plan's row-major order.
    if (!best || cut.panels < best.panels || (cut.panels === best.panels && cut.imbalance <= best.imbalance)) best = cut;
  }
  return (best as Cut).blocks;
}

/** The cut of `p` blocks in `gr` block-rows (lo ≤ gr ≤ hi, so every block has a tile). */
function cutGrid(rowTiles: number, colTiles: number, p: number, gr: number): Cut {
  const blocks: TileBlock[] = [];
  const base = Math.floor(p / gr);
  const extra = p - base * gr;
  let before = 0;
  let rowStart = 0;
  for (let i = 0; i < gr; i++) {
    const count = base + (i < extra ? 1 : 0);
    before += count;
    // Height in proportion to the blocks in this block-row, at least one row, leaving one for each later block-row.
    const want = Math.round((rowTiles * before) / p);
    const rowEnd = i === gr - 1 ? rowTiles : Math.min(rowTiles - (gr - 1 - i), Math.max(rowStart + 1, want));
    for (let j = 0; j < count; j++) {
      // count ≤ colTiles, so consecutive bounds differ by at least one column.
      const colStart = Math.round((colTiles * j) / count);
      const colEnd = Math.round((colTiles * (j + 1)) / count);
      const size = (rowEnd - rowStart) * (colEnd - colStart);
      blocks.push({ rowStart, rowEnd, colStart, colEnd, next: 0, end: size, owner: undefined });
    }
    rowStart = rowEnd;
  }
  let panels = 0;
  let most = 0;
  let least = Number.POSITIVE_INFINITY;
  for (const b of blocks) {
    panels += b.rowEnd - b.rowStart + (b.colEnd - b.colStart);
    most = Math.max(most, b.end);
    least = Math.min(least, b.end);
  }
  return { blocks, panels, imbalance: most - least };
}

/** The shard index of offset `at` of `block` (row-major within the block). */
export function shardAt(plan: Plan, block: TileBlock, at: number): number {
  const width = block.colEnd - block.colStart;
  const row = block.rowStart + Math.floor(at / width);
  return row * plan.colTiles + block.colStart + (at % width);
}

/** Tiles not yet handed out over all blocks (an upper bound on the fresh tiles: some may be done after a restart). */
export function freshTilesLeft(blocks: readonly TileBlock[]): number {
  let n = 0;
  for (const b of blocks) n += b.end - b.next;
  return n;
}

/** The block `workerId` works through, if any (a worker owns at most one block of a job). */
export function ownBlock(blocks: readonly TileBlock[], workerId: WorkerId): TileBlock | undefined {
  return blocks.find((b) => b.owner === workerId);
}

/** Frees the block of a worker that went away: the next worker without a block takes it whole. */
export function releaseBlock(blocks: readonly TileBlock[], workerId: WorkerId): void {
  for (const b of blocks) if (b.owner === workerId) b.owner = undefined;
}

/**
 * Takes the next fresh tile for `workerId` from `blocks` (updated in place), or -1 when
 * none is left: from its own block, else the lowest free block (`isFree`: no owner, or
 * an owner that can no longer take work), else the far half of the busiest block.
 * `isPending` skips tiles that need no execution (done before a restart).
 */
export function takeFreshTile(
  blocks: TileBlock[],
  plan: Plan,
  workerId: WorkerId,
  isPending: (shard: number) => boolean,
  isFree: (block: TileBlock) => boolean,
): number {
  // Each pass returns a tile or drops a block that has none left, so the loop ends.
  for (;;) {
    const own = ownBlock(blocks, workerId);
    if (own) {
      while (own.next < own.end) {
        const shard = shardAt(plan, own, own.next++);
        if (isPending(shard)) return shard;
      }
      blocks.splice(blocks.indexOf(own), 1);
      continue;
    }
    dropEmpty(blocks);
    const free = blocks.find(isFree);
    if (free) {
      free.owner = workerId;
      continue;
    }
    const victim = busiest(blocks);
    if (!victim) return -1;
    blocks.push(stealFarHalf(victim, workerId));
  }
}

/** Drops blocks with nothing left to hand out. */
function dropEmpty(blocks: TileBlock[]): void {
  for (let i = blocks.length - 1; i >= 0; i--)
    if ((blocks[i] as TileBlock).next >= (blocks[i] as TileBlock).end) blocks.splice(i, 1);
}

/** The block with the most tiles left (the lowest on a tie), or undefined when every block is empty. */
function busiest(blocks: readonly TileBlock[]): TileBlock | undefined {
  let best: TileBlock | undefined;
  for (const b of blocks) if (b.end > b.next && (!best || b.end - b.next > best.end - best.next)) best = b;
  return best;
}

/** Cuts the far half of `victim`'s tiles left (at least one) into a new block owned by `thief`. */
function stealFarHalf(victim: TileBlock, thief: WorkerId): TileBlock {
  const take = Math.max(1, Math.floor((victim.end - victim.next) / 2));
  const stolen: TileBlock = { ...victim, next: victim.end - take, owner: thief };
  victim.end -= take;
  return stolen;
}
