// Properties of the grant order in tile blocks (tile-blocks.ts), driven through the
// whole core: every shard granted exactly once whatever order workers pull in, and few
// panels fetched per worker. Replay a failure with the `{ seed, path }` fast-check prints.
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { checkInvariants } from "./invariants.js";
import { Driver, matmulInput, unwrap } from "./testing/model.js";
import { CFG } from "./testing/run-actions.js";
import { splitTileGrid } from "./tile-blocks.js";

/** A job of `rowTiles × colTiles` tiles (one-by-one tiles of a small C). */
const gridJob = (rowTiles: number, colTiles: number) => matmulInput(rowTiles, 2, colTiles, { tileRows: 1, tileCols: 1 });

/** Panels fetched: distinct (worker, tile row) pairs (A row panels) plus (worker, tile column) pairs (B column panels). */
function panelsFetched(grants: readonly (readonly [string, number])[], colTiles: number): number {
  const seen = new Set<string>();
  for (const [w, shard] of grants) {
    seen.add(`${w} r${Math.floor(shard / colTiles)}`);
    seen.add(`${w} c${shard % colTiles}`);
  }
  return seen.size;
}

/** The grants of `p` workers pulling one tile at a time in round-robin, completing each at once. */
function roundRobin(rowTiles: number, colTiles: number, p: number): [string, number][] {
  const d = new Driver(CFG);
  const workers = Array.from({ length: p }, (_, i) => `w${i}`);
  for (const w of workers) unwrap(d.register(w).outcome);
  const jobId = d.submitOk(gridJob(rowTiles, colTiles));
  const grants: [string, number][] = [];
  for (let turn = 0; d.job(jobId).doneCount < rowTiles * colTiles; turn++) {
    if (turn > 4 * rowTiles * colTiles) throw new Error("no progress");
    const w = workers[turn % p] as string;
    for (const g of d.grants(w, 1)) {
      grants.push([w, g.lease.shardIndex]);
      unwrap(d.complete(w, g.lease).outcome);
    }
  }
  return grants;
}

/** The same pulls under the row-major order blocks replaced: tile k went to the k-th request, worker k mod p. */
function rowMajor(rowTiles: number, colTiles: number, p: number): [string, number][] {
  return Array.from({ length: rowTiles * colTiles }, (_, k) => [`w${k % p}`, k]);
}

/** Panels of the ideal p-block cut: Σ block height + width. */
function idealPanels(rowTiles: number, colTiles: number, p: number): number {
  return splitTileGrid(rowTiles, colTiles, p).reduce((n, b) => n + (b.rowEnd - b.rowStart) + (b.colEnd - b.colStart), 0);
}

describe("tile block grant order", () => {
  test.prop(
    [
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 6 }),
      fc.nat(6), // workers registered only after this many pulls (they join mid-job)
      fc.array(fc.record({ worker: fc.nat(5), max: fc.integer({ min: 1, max: 3 }), complete: fc.boolean() }), {
        minLength: 1,
        maxLength: 40,
      }),
    ],
    { numRuns: 300 },
  )("whatever order workers pull in, every shard is granted exactly once and the job succeeds", (rows, cols, p, late, pulls) => {
    const d = new Driver({ ...CFG, leaseTtlMs: 1_000_000 });
    const workers = Array.from({ length: p }, (_, i) => `w${i}`);
    const early = Math.max(1, p - 1 - (late % p));
    for (const w of workers.slice(0, early)) unwrap(d.register(w).outcome);
    const jobId = d.submitOk(gridJob(rows, cols));
    const granted = new Uint8Array(rows * cols);
    const held: { w: string; lease: { jobId: typeof jobId; shardIndex: number; epoch: number } }[] = [];
    for (let i = 0; d.job(jobId).doneCount < rows * cols; i++) {
      if (i > 40 * rows * cols) throw new Error("no progress");
      if (i === late) for (const w of workers.slice(early)) unwrap(d.register(w).outcome);
      const pull = pulls[i % pulls.length] as (typeof pulls)[number];
      const w = workers[pull.worker % (i >= late ? p : early)] as string;
      for (const g of d.grants(w, pull.max)) {
        expect(g.attempt).toBe(1);
        granted[g.lease.shardIndex] = (granted[g.lease.shardIndex] ?? 0) + 1;
        held.push({ w, lease: g.lease });
      }
      // Complete now, or leave the lease held a while (others keep pulling meanwhile).
      if (pull.complete || i % 5 === 0) for (const h of held.splice(0)) unwrap(d.complete(h.w, h.lease).outcome);
      expect(checkInvariants(d.state)).toEqual([]);
    }
    expect([...granted].every((n) => n === 1)).toBe(true);
    expect(d.job(jobId).retriedCount).toBe(0);
    unwrap(d.finalized(jobId).outcome);
    expect(d.job(jobId).state).toBe("succeeded");
    // dropped when the job ended
    expect([d.job(jobId).tileBlocks, d.job(jobId).panelHolders]).toEqual([null, null]);
  });

  test.prop([fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 8 })], {
    numRuns: 200,
  })("p workers pulling in round-robin fetch about the panels of the ideal p-block cut", (rows, cols, p) => {
    const grants = roundRobin(rows, cols, p);
    expect(grants.map(([, s]) => s).sort((x, y) => x - y)).toEqual(Array.from({ length: rows * cols }, (_, i) => i));
    // Stealing at the tail (blocks of unequal size) costs a few panels per worker. Checked
    // over every grid up to 16×16 and p ≤ 8 (this property's whole domain): the most is
    // 2p + 4 (14×16, p = 5); summed over them all, 8.9% over the ideal cuts.
    expect(panelsFetched(grants, cols)).toBeLessThanOrEqual(idealPanels(rows, cols, p) + 2 * p + 4);
  });

  it("fetches the ideal cut's panels in round-robin, fewer than row-major order from p = 4", () => {
    const table = [8, 16].flatMap((n) =>
      [1, 2, 4].map((p) => ({
        grid: `${n}×${n}`,
        p,
        rowMajor: panelsFetched(rowMajor(n, n, p), n),
        blocks: panelsFetched(roundRobin(n, n, p), n),
        ideal: idealPanels(n, n, p),
      })),
    );
    expect(table).toEqual([
      { grid: "8×8", p: 1, rowMajor: 16, blocks: 16, ideal: 16 },
      { grid: "8×8", p: 2, rowMajor: 24, blocks: 24, ideal: 24 }, // round-robin row-major = column strips
      { grid: "8×8", p: 4, rowMajor: 40, blocks: 32, ideal: 32 },
      { grid: "16×16", p: 1, rowMajor: 32, blocks: 32, ideal: 32 },
      { grid: "16×16", p: 2, rowMajor: 48, blocks: 48, ideal: 48 },
      { grid: "16×16", p: 4, rowMajor: 80, blocks: 64, ideal: 64 },
    ]);
  });
});
