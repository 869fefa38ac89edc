import { fc, test as propTest } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { type Plan, planMatMul, tileBounds, tileSizeBytes } from "./plan.js";
import { type MatMulSpec, validateMatMulSpec } from "./spec.js";
import { blobOf, matmulInput, unwrap } from "./testing/model.js";

const specFor = (m: number, k: number, n: number, tr: number, tc: number): MatMulSpec =>
  unwrap(validateMatMulSpec(matmulInput(m, k, n, { tileRows: tr, tileCols: tc })));

/** Paints every tile into a cell-count grid; returns the grid (each cell must end at exactly 1). */
function coverage(plan: Plan): Uint32Array {
  const grid = new Uint32Array(plan.rows * plan.cols);
  for (let i = 0; i < plan.shardCount; i++) {
    const t = tileBounds(plan, i);
    expect(t.rowStart).toBeGreaterThanOrEqual(0);
    expect(t.colStart).toBeGreaterThanOrEqual(0);
    expect(t.rowEnd).toBeLessThanOrEqual(plan.rows);
    expect(t.colEnd).toBeLessThanOrEqual(plan.cols);
    expect(t.rowEnd).toBeGreaterThan(t.rowStart);
    expect(t.colEnd).toBeGreaterThan(t.colStart);
    expect(t.rowEnd - t.rowStart).toBeLessThanOrEqual(plan.tileRows);
    expect(t.colEnd - t.colStart).toBeLessThanOrEqual(plan.tileCols);
    expect(tileSizeBytes(plan, i)).toBe((t.rowEnd - t.rowStart) * (t.colEnd - t.colStart) * 8);
    for (let r = t.rowStart; r < t.rowEnd; r++) {
      for (let c = t.colStart; c < t.colEnd; c++) {
        const idx = r * plan.cols + c;
        grid[idx] = (grid[idx] ?? 0) + 1;
      }
    }
  }
  return grid;
}

function expectExactCover(plan: Plan): void {
  const grid = coverage(plan);
  let bad = 0;
  for (const v of grid) if (v !== 1) bad++;
  expect(bad).toBe(0);
  let bytes = 0;
  for (let i = 0; i < plan.shardCount; i++) bytes += tileSizeBytes(plan, i);
  expect(bytes).toBe(plan.rows * plan.cols * 8);
}

describe("planMatMul", () => {
  it.each([
    // m, k, n, tileRows, tileCols, rowTiles, colTiles
    [1, 1, 1, 1, 1, 1, 1],
    [1, 5, 9, 4, 4, 1, 3],
    [9, 5, 1, 4, 4, 3, 1],
    [257, 10, 383, 64, 64, 5, 6],
    [256, 3, 256, 64, 64, 4, 4],
    [10, 3, 10, 3, 7, 4, 2],
    [7, 2, 5, 100, 100, 1, 1],
    [1000, 1, 1000, 0, 0, 2, 2], // automatic: 512×512 tiles (2 MiB at most)
  ])("plans A %ix%i, B …x%i, tiles %i×%i into %i×%i tiles", (m, k, n, tr, tc, rowTiles, colTiles) => {
    const plan = planMatMul(specFor(m, k, n, tr, tc));
    expect(plan.rows).toBe(m);
    expect(plan.cols).toBe(n);
    expect(plan.inner).toBe(k);
    expect(plan.rowTiles).toBe(rowTiles);
    expect(plan.colTiles).toBe(colTiles);
    expect(plan.shardCount).toBe(rowTiles * colTiles);
    expectExactCover(plan);
  });

  it("orders tiles row-major with exact bounds (257×383, tile 64)", () => {
    const plan = planMatMul(specFor(257, 3, 383, 64, 64));
    expect(plan.shardCount).toBe(30);
    expect(tileBounds(plan, 0)).toEqual({ rowStart: 0, rowEnd: 64, colStart: 0, colEnd: 64 });
    expect(tileBounds(plan, 1)).toEqual({ rowStart: 0, rowEnd: 64, colStart: 64, colEnd: 128 });
    expect(tileBounds(plan, 5)).toEqual({ rowStart: 0, rowEnd: 64, colStart: 320, colEnd: 383 });
    expect(tileBounds(plan, 6)).toEqual({ rowStart: 64, rowEnd: 128, colStart: 0, colEnd: 64 });
    expect(tileBounds(plan, 29)).toEqual({ rowStart: 256, rowEnd: 257, colStart: 320, colEnd: 383 });
    expect(tileSizeBytes(plan, 29)).toBe(1 * 63 * 8);
    expect(tileSizeBytes(plan, 0)).toBe(64 * 64 * 8);
  });

  it("1×n and n×1 results are a single row / column of tiles", () => {
    const row = planMatMul(specFor(1, 4, 10, 3, 3));
    expect([row.rowTiles, row.colTiles]).toEqual([1, 4]);
    expect(tileBounds(row, 3)).toEqual({ rowStart: 0, rowEnd: 1, colStart: 9, colEnd: 10 });
    const col = planMatMul(specFor(10, 4, 1, 3, 3));
    expect([col.rowTiles, col.colTiles]).toEqual([4, 1]);
    expect(tileBounds(col, 3)).toEqual({ rowStart: 9, rowEnd: 10, colStart: 0, colEnd: 1 });
  });

  it("depends only on shapes and tile sizes, not on blobs or kernel", () => {
    const a = planMatMul(specFor(50, 7, 40, 8, 9));
    const b = planMatMul(
      unwrap(
        validateMatMulSpec(
          matmulInput(50, 7, 40, { tileRows: 8, tileCols: 9, kernel: "reference", blobA: blobOf("1"), blobB: blobOf("2") }),
        ),
      ),
    );
    expect(b).toEqual(a);
    expect(planMatMul(specFor(50, 7, 40, 8, 9))).toEqual(a);
  });

  propTest.prop(
    [
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 0, max: 70 }),
      fc.integer({ min: 0, max: 70 }),
    ],
    { numRuns: 300 },
  )("tiles cover C exactly once for any shape and tile", (m, k, n, tr, tc) => {
    const spec = specFor(m, k, n, tr, tc);
    const plan = planMatMul(spec);
    const etr = tr === 0 ? Math.min(256, m) : Math.min(tr, m);
    const etc = tc === 0 ? Math.min(256, n) : Math.min(tc, n);
    expect([plan.tileRows, plan.tileCols]).toEqual([etr, etc]);
    expect(plan.shardCount).toBe(Math.ceil(m / etr) * Math.ceil(n / etc));
    expectExactCover(plan);
  });
});
