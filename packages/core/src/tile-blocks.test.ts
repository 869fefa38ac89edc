import { describe, expect, it } from "vitest";
import { asWorkerId, type WorkerId } from "./ids.js";
import type { Plan } from "./plan.js";
import { shardAt, splitTileGrid, type TileBlock, takeFreshTile } from "./tile-blocks.js";

/** A plan of `rowTiles × colTiles` one-by-one tiles (only the grid matters here). */
function grid(rowTiles: number, colTiles: number): Plan {
  return {
    rows: rowTiles,
    cols: colTiles,
    inner: 1,
    tileRows: 1,
    tileCols: 1,
    rowTiles,
    colTiles,
    shardCount: rowTiles * colTiles,
  };
}

/** Block shapes as "rows×cols@row,col". */
const shapes = (blocks: readonly TileBlock[]) =>
  blocks.map((b) => `${b.rowEnd - b.rowStart}×${b.colEnd - b.colStart}@${b.rowStart},${b.colStart}`);

const W = (i: number): WorkerId => asWorkerId(`w${i}`);
const always = () => true;
const free = (b: TileBlock) => b.owner === undefined;

describe("splitTileGrid", () => {
  it("cuts a square grid into p compact blocks: 1 → whole, 2 → halves, 4 → 2×2", () => {
    expect(shapes(splitTileGrid(8, 8, 1))).toEqual(["8×8@0,0"]);
    expect(shapes(splitTileGrid(8, 8, 2))).toEqual(["4×8@0,0", "4×8@4,0"]);
    expect(shapes(splitTileGrid(8, 8, 4))).toEqual(["4×4@0,0", "4×4@0,4", "4×4@4,0", "4×4@4,4"]);
  });

  it("follows the grid's aspect: a tall grid is cut across, a wide one along", () => {
    expect(shapes(splitTileGrid(16, 4, 2))).toEqual(["8×4@0,0", "8×4@8,0"]);
    expect(shapes(splitTileGrid(4, 16, 2))).toEqual(["4×8@0,0", "4×8@0,8"]);
    expect(shapes(splitTileGrid(16, 4, 4))).toEqual(["4×4@0,0", "4×4@4,0", "4×4@8,0", "4×4@12,0"]);
  });

  it("p = 3 gives three blocks of near-equal size needing fewer panels than three strips", () => {
    const blocks = splitTileGrid(8, 8, 3);
    expect(shapes(blocks)).toEqual(["5×4@0,0", "5×4@0,4", "3×8@5,0"]);
    const panels = blocks.reduce((n, b) => n + (b.rowEnd - b.rowStart) + (b.colEnd - b.colStart), 0);
    expect(panels).toBeLessThan(3 * 8 + 8); // three 8-column strips: 3+3+2 rows + 3·8 columns
  });

  it("covers every tile exactly once for any grid and p, clamping p to 1..tiles", () => {
    for (let rows = 1; rows <= 9; rows++) {
      for (let cols = 1; cols <= 9; cols++) {
        for (const p of [0, 1, 2, 3, 5, 7, 12, 100]) {
          const blocks = splitTileGrid(rows, cols, p);
          expect(blocks.length).toBe(Math.max(1, Math.min(p, rows * cols)));
          const seen = new Uint8Array(rows * cols);
          for (const b of blocks) {
            for (let at = 0; at < b.end; at++) {
              const shard = shardAt(grid(rows, cols), b, at);
              seen[shard] = (seen[shard] ?? 0) + 1;
            }
          }
          expect([...seen].every((n) => n === 1)).toBe(true);
        }
      }
    }
  });
});

describe("takeFreshTile", () => {
  it("gives each worker its own block in row-major order within it, first come lowest free block", () => {
    const plan = grid(4, 4);
    const blocks = splitTileGrid(4, 4, 4); // 2×2 blocks: {0,1,4,5} {2,3,6,7} {8,9,12,13} {10,11,14,15}
    const take = (w: WorkerId) => takeFreshTile(blocks, plan, w, always, free);
    expect([take(W(2)), take(W(0)), take(W(2)), take(W(2)), take(W(2))]).toEqual([0, 2, 1, 4, 5]);
    // w2's block is done: it takes the lowest free block whole, not a half of w0's
    expect(take(W(2))).toBe(8);
    expect(blocks.map((b) => b.owner)).toEqual([W(0), W(2), undefined]);
  });

  it("a worker whose block is done steals the far half of the busiest block; the owner keeps the near half", () => {
    const plan = grid(4, 4);
    const blocks = splitTileGrid(4, 4, 2); // rows 0-1 (shards 0-7) and rows 2-3 (8-15)
    const take = (w: WorkerId) => takeFreshTile(blocks, plan, w, always, free);
    const w0 = Array.from({ length: 8 }, () => take(W(0)));
    expect(w0).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(take(W(1))).toBe(8);
    // 7 left in w1's block (9-15): w0 steals the far 3 (13-15) and goes through them in order
    expect(take(W(0))).toBe(13);
    expect([take(W(1)), take(W(1)), take(W(1)), take(W(1))]).toEqual([9, 10, 11, 12]);
    // w1 is done with its half: it steals the far half of what w0 has left (14, 15)
    expect(take(W(1))).toBe(15);
    expect([take(W(0)), take(W(0)), take(W(1))]).toEqual([14, -1, -1]);
    expect(blocks).toEqual([]);
  });

  it("a worker that joins once every block is taken steals; no tile is handed out twice", () => {
    const plan = grid(2, 4);
    const blocks = splitTileGrid(2, 4, 2); // 2×2 blocks: {0,1,4,5} and {2,3,6,7}
    const take = (w: WorkerId) => takeFreshTile(blocks, plan, w, always, free);
    const got = [take(W(0)), take(W(1))];
    expect(got).toEqual([0, 2]);
    // both have 3 left: the lowest block loses its far tile (5); then the busiest, w1's, its far tile (7)
    got.push(take(W(9)), take(W(9)));
    expect(got.slice(2)).toEqual([5, 7]);
    got.push(take(W(0)), take(W(0)), take(W(0)), take(W(1)));
    expect(got.slice(4)).toEqual([1, 4, 6, 3]);
    expect([take(W(0)), take(W(1)), take(W(9))]).toEqual([-1, -1, -1]);
    expect([...got].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("a block whose owner went away is taken whole by the next worker without one", () => {
    const plan = grid(4, 4);
    const blocks = splitTileGrid(4, 4, 2);
    const gone = new Set<WorkerId>();
    const isFree = (b: TileBlock) => b.owner === undefined || gone.has(b.owner);
    const take = (w: WorkerId) => takeFreshTile(blocks, plan, w, always, isFree);
    expect([take(W(0)), take(W(1))]).toEqual([0, 8]);
    gone.add(W(1));
    expect([take(W(2)), take(W(2))]).toEqual([9, 10]); // not a half: all of w1's block is w2's now
    expect(blocks.map((b) => b.owner)).toEqual([W(0), W(2)]);
  });

  it("skips tiles that need no execution (done before a restart)", () => {
    const plan = grid(2, 2);
    const blocks = splitTileGrid(2, 2, 1);
    const done = new Set([0, 1, 3]);
    expect(takeFreshTile(blocks, plan, W(0), (s) => !done.has(s), free)).toBe(2);
    expect(takeFreshTile(blocks, plan, W(0), (s) => !done.has(s), free)).toBe(-1);
  });
});
