import { describe, expect, it } from "vitest";
import type { Result } from "./errors.js";
import {
  autoTile,
  DEFAULT_SPEC_LIMITS,
  type MatMulSpec,
  type MatMulSpecInput,
  type SpecLimits,
  sameSpec,
  validateMatMulSpec,
} from "./spec.js";
import { BLOB_A, BLOB_B, matmulInput } from "./testing/model.js";

/** The invalid-spec message of a rejected spec (fails the test if it was accepted or refused otherwise). */
function rejection(r: Result<MatMulSpec>): string {
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error("unreachable");
  expect(r.error.kind).toBe("invalid-spec");
  if (r.error.kind !== "invalid-spec") throw new Error("unreachable");
  return r.error.message;
}

/** The message of a spec refused as over a limit, checking that the limit is named. */
function overLimit(limit: string, r: Result<MatMulSpec>): string {
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error("unreachable");
  expect(r.error).toMatchObject({ kind: "over-limit", limit });
  if (r.error.kind !== "over-limit") throw new Error("unreachable");
  expect(r.error.message).toContain(`${limit}=`);
  return r.error.message;
}

function accepted(r: Result<MatMulSpec>): MatMulSpec {
  if (!r.ok) throw new Error(`rejected: ${JSON.stringify(r.error)}`);
  return r.value;
}

const limits = (over: Partial<SpecLimits>): SpecLimits => ({ ...DEFAULT_SPEC_LIMITS, ...over });

describe("validateMatMulSpec: matrices", () => {
  it("rejects a missing A or B", () => {
    const base = matmulInput(2, 3, 4);
    expect(rejection(validateMatMulSpec({ ...base, a: undefined }))).toBe("matrix A is missing");
    expect(rejection(validateMatMulSpec({ ...base, b: undefined }))).toBe("matrix B is missing");
  });

  it.each([
    ["rows", 0],
    ["rows", -3],
    ["rows", 1.5],
    ["rows", Number.NaN],
    ["cols", 0],
    ["cols", -1],
    ["cols", 2.25],
  ] as const)("rejects A with %s=%s", (field, v) => {
    const base = matmulInput(2, 3, 4);
    const a = { ...(base.a as NonNullable<MatMulSpecInput["a"]>), [field]: v };
    expect(rejection(validateMatMulSpec({ ...base, a }))).toBe(`matrix A has ${field}=${v}; it must be at least 1`);
  });

  it("rejects B with non-positive or fractional dims", () => {
    const base = matmulInput(2, 3, 4);
    const b = base.b as NonNullable<MatMulSpecInput["b"]>;
    expect(rejection(validateMatMulSpec({ ...base, b: { ...b, cols: 0 } }))).toBe("matrix B has cols=0; it must be at least 1");
    expect(rejection(validateMatMulSpec({ ...base, b: { ...b, rows: 0.5 } }))).toBe(
      "matrix B has rows=0.5; it must be at least 1",
    );
  });

  it("rejects a dimension over maxDim, and accepts exactly maxDim", () => {
    const lim = limits({ maxDim: 100 });
    expect(overLimit("maxDim", validateMatMulSpec(matmulInput(101, 3, 4), lim))).toBe(
      "matrix A has rows=101, over the limit maxDim=100",
    );
    expect(overLimit("maxDim", validateMatMulSpec(matmulInput(2, 3, 101), lim))).toBe(
      "matrix B has cols=101, over the limit maxDim=100",
    );
    expect(validateMatMulSpec(matmulInput(100, 100, 100), lim).ok).toBe(true);
    const big = DEFAULT_SPEC_LIMITS.maxDim + 1;
    expect(overLimit("maxDim", validateMatMulSpec(matmulInput(2, big, 1)))).toBe(
      `matrix A has cols=${big}, over the limit maxDim=${DEFAULT_SPEC_LIMITS.maxDim}`,
    );
  });

  it("rejects A or B over maxMatrixBytes", () => {
    // 2^15 x 2^15 x 8 = 8 GiB > 1 GiB
    const n = 1 << 15;
    const msg = overLimit("maxMatrixBytes", validateMatMulSpec(matmulInput(n, n, 1)));
    expect(msg).toBe(
      `matrix A is ${n}x${n} (${n * n * 8} bytes), over the limit maxMatrixBytes=${DEFAULT_SPEC_LIMITS.maxMatrixBytes}`,
    );
    const lim = limits({ maxMatrixBytes: 800 });
    expect(overLimit("maxMatrixBytes", validateMatMulSpec(matmulInput(1, 10, 11), lim))).toMatch(
      /^matrix B is 10x11 \(880 bytes\), over the limit maxMatrixBytes=800$/,
    );
    // exactly the limit is fine: 10 x 10 x 8 = 800
    expect(validateMatMulSpec(matmulInput(10, 10, 10), lim).ok).toBe(true);
  });

  it("rejects a result C over maxMatrixBytes even when A and B fit", () => {
    const lim = limits({ maxMatrixBytes: 800 });
    // A 11x1 (88 B), B 1x11 (88 B), C 11x11 (968 B)
    expect(overLimit("maxMatrixBytes", validateMatMulSpec(matmulInput(11, 1, 11), lim))).toBe(
      "result C would be 11x11 (968 bytes), over the limit maxMatrixBytes=800",
    );
  });

  it("rejects a job whose A, B and C together exceed maxJobBytes", () => {
    const lim = limits({ maxJobBytes: 1000 });
    // A 10x5 (400 B) + B 5x5 (200 B) + C 10x5 (400 B) = 1000 B fits; one more row of A and C does not
    expect(validateMatMulSpec(matmulInput(10, 5, 5), lim).ok).toBe(true);
    expect(overLimit("maxJobBytes", validateMatMulSpec(matmulInput(11, 5, 5), lim))).toBe(
      "A, B and C total 1080 bytes, over the limit maxJobBytes=1000",
    );
  });

  it.each([
    ["too short", "a".repeat(63)],
    ["too long", "a".repeat(65)],
    ["upper case", "A".repeat(64)],
    ["not hex", "g".repeat(64)],
    ["empty", ""],
    ["with a path", `../${"a".repeat(61)}`],
  ])("rejects a blob id that is %s", (_why, blobId) => {
    expect(rejection(validateMatMulSpec(matmulInput(2, 2, 2, { blobA: blobId })))).toBe(
      "matrix A has an invalid blob id (expected 64 lower-case hex characters)",
    );
    expect(rejection(validateMatMulSpec(matmulInput(2, 2, 2, { blobB: blobId })))).toBe(
      "matrix B has an invalid blob id (expected 64 lower-case hex characters)",
    );
  });

  it("rejects mismatched inner dimensions, naming both shapes", () => {
    const input: MatMulSpecInput = {
      a: { rows: 2, cols: 3, blobId: BLOB_A },
      b: { rows: 4, cols: 5, blobId: BLOB_B },
      tileRows: 0,
      tileCols: 0,
      kernel: "",
    };
    const msg = rejection(validateMatMulSpec(input));
    expect(msg).toBe("inner dimensions do not match: A is 2x3, B is 4x5");
    expect(msg).toContain("2x3");
    expect(msg).toContain("4x5");
  });
});

describe("validateMatMulSpec: tiles, shards and kernels", () => {
  it("resolves defaults: tile 0 → the automatic tile, kernel '' → auto", () => {
    const spec = accepted(validateMatMulSpec(matmulInput(1000, 7, 900, { kernel: "" })));
    expect(spec).toEqual({
      a: { rows: 1000, cols: 7, blobId: BLOB_A },
      b: { rows: 7, cols: 900, blobId: BLOB_B },
      ...autoTile(1000, 7, 900, DEFAULT_SPEC_LIMITS.maxTileBytes),
      kernel: "auto",
    });
    expect(DEFAULT_SPEC_LIMITS.defaultTile).toBe(0);
    const custom = accepted(validateMatMulSpec(matmulInput(100, 7, 100), limits({ defaultTile: 16 })));
    expect([custom.tileRows, custom.tileCols]).toEqual([16, 16]);
  });

  it("defaults each tile edge independently", () => {
    const spec = accepted(validateMatMulSpec(matmulInput(1000, 7, 900, { tileRows: 10 })));
    expect([spec.tileRows, spec.tileCols]).toEqual([10, autoTile(1000, 7, 900, DEFAULT_SPEC_LIMITS.maxTileBytes).tileCols]);
    const fixed = accepted(validateMatMulSpec(matmulInput(1000, 7, 900, { tileRows: 10 }), limits({ defaultTile: 256 })));
    expect([fixed.tileRows, fixed.tileCols]).toEqual([10, 256]);
  });

  it("automatic tiles: one shard for small work, up to 64 square-ish tiles of at most 2 MiB for large work", () => {
    const max = DEFAULT_SPEC_LIMITS.maxTileBytes;
    expect(autoTile(64, 64, 64, max)).toEqual({ tileRows: 64, tileCols: 64 });
    expect(autoTile(4096, 4096, 4096, max)).toEqual({ tileRows: 512, tileCols: 512 });
    expect(autoTile(2048, 2048, 2048, max)).toEqual({ tileRows: 256, tileCols: 256 });
    expect(autoTile(1024, 1024, 1024, max)).toEqual({ tileRows: 344, tileCols: 344 }); // 8 shards worth, as 3x3 even tiles
    for (const [m, k, n] of [
      [1, 1, 1],
      [7, 3, 5],
      [1000, 1000, 1],
      [1, 100000, 1000],
      [8192, 8192, 8192],
      [100003, 17, 3],
      [16, 4, 1 << 20],
      [3, 5000, 90001],
    ] as const) {
      const t = autoTile(m, k, n, max);
      expect(t.tileRows).toBeGreaterThanOrEqual(1);
      expect(t.tileRows).toBeLessThanOrEqual(m);
      expect(t.tileCols).toBeGreaterThanOrEqual(1);
      expect(t.tileCols).toBeLessThanOrEqual(n);
      expect(t.tileRows * t.tileCols * 8).toBeLessThanOrEqual(2 * 1024 * 1024);
      const shards = Math.ceil(m / t.tileRows) * Math.ceil(n / t.tileCols);
      expect(shards).toBeLessThanOrEqual(Math.max(64, Math.ceil((m * n) / (256 * 1024))) * 2);
    }
    // a tiny tile limit is respected
    expect(autoTile(100, 100, 100, 800).tileRows * autoTile(100, 100, 100, 800).tileCols).toBeLessThanOrEqual(100);
  });

  it("clamps tile sizes to the matrix", () => {
    const spec = accepted(validateMatMulSpec(matmulInput(5, 3, 7, { tileRows: 64, tileCols: 1000 })));
    expect([spec.tileRows, spec.tileCols]).toEqual([5, 7]);
    const dflt = accepted(validateMatMulSpec(matmulInput(1, 1, 1)));
    expect([dflt.tileRows, dflt.tileCols]).toEqual([1, 1]);
    const partial = accepted(validateMatMulSpec(matmulInput(300, 3, 20, { tileRows: 128, tileCols: 64 })));
    expect([partial.tileRows, partial.tileCols]).toEqual([128, 20]);
  });

  it.each([
    ["tileRows", -1],
    ["tileCols", -64],
    ["tileRows", 2.5],
    ["tileCols", Number.NaN],
  ] as const)("rejects %s=%s", (field, v) => {
    const input = { ...matmulInput(10, 10, 10), [field]: v };
    expect(rejection(validateMatMulSpec(input))).toBe(`${field}=${v}; it must be at least 1 (or 0 for the default)`);
  });

  it("rejects a tile over maxTileBytes, measured after clamping", () => {
    const lim = limits({ maxTileBytes: 8 * 100 });
    expect(overLimit("maxTileBytes", validateMatMulSpec(matmulInput(50, 2, 50, { tileRows: 10, tileCols: 11 }), lim))).toBe(
      "tile 10x11 is 880 bytes, over the limit maxTileBytes=800",
    );
    expect(validateMatMulSpec(matmulInput(50, 2, 50, { tileRows: 10, tileCols: 10 }), lim).ok).toBe(true);
    // a huge requested tile on a small C clamps to 5x5 = 200 bytes, which fits
    expect(validateMatMulSpec(matmulInput(5, 2, 5, { tileRows: 1 << 20, tileCols: 1 << 20 }), lim).ok).toBe(true);
    // default limits: 4096x4096 tile is 128 MiB > 64 MiB
    const n = 4096;
    expect(overLimit("maxTileBytes", validateMatMulSpec(matmulInput(n, 1, n, { tileRows: n, tileCols: n })))).toBe(
      `tile ${n}x${n} is ${n * n * 8} bytes, over the limit maxTileBytes=${DEFAULT_SPEC_LIMITS.maxTileBytes}`,
    );
  });

  it("rejects a plan with too many shards", () => {
    const lim = limits({ maxShardsPerJob: 8 });
    expect(overLimit("maxShardsPerJob", validateMatMulSpec(matmulInput(3, 1, 3, { tileRows: 1, tileCols: 1 }), lim))).toBe(
      "the plan has 9 shards, over the limit maxShardsPerJob=8; use a larger tile",
    );
    expect(validateMatMulSpec(matmulInput(2, 1, 4, { tileRows: 1, tileCols: 1 }), lim).ok).toBe(true);
    // default limits: 2048 x 2048 tiles of 1x1 = 4Mi shards > 1Mi
    expect(overLimit("maxShardsPerJob", validateMatMulSpec(matmulInput(2048, 1, 2048, { tileRows: 1, tileCols: 1 })))).toBe(
      `the plan has ${2048 * 2048} shards, over the limit maxShardsPerJob=${1 << 20}; use a larger tile`,
    );
  });

  it("rejects an unknown kernel and accepts registered ones", () => {
    expect(rejection(validateMatMulSpec(matmulInput(2, 2, 2, { kernel: "turbo" })))).toBe(
      "unknown kernel 'turbo'; known kernels: auto, native-avx512, native-blas, wasm-simd, reference",
    );
    const long = "x".repeat(500);
    expect(rejection(validateMatMulSpec(matmulInput(2, 2, 2, { kernel: long })))).toBe(
      `unknown kernel '${"x".repeat(63)}…'; known kernels: auto, native-avx512, native-blas, wasm-simd, reference`,
    );
    expect(accepted(validateMatMulSpec(matmulInput(2, 2, 2, { kernel: "reference" }))).kernel).toBe("reference");
    expect(accepted(validateMatMulSpec(matmulInput(2, 2, 2, { kernel: "auto" }))).kernel).toBe("auto");
    expect(accepted(validateMatMulSpec(matmulInput(2, 2, 2, { kernel: "turbo" }), limits({ kernels: ["turbo"] }))).kernel).toBe(
      "turbo",
    );
  });

  it("copies matrix descriptors (no extra fields leak through)", () => {
    const input = matmulInput(2, 3, 4);
    const a = { ...(input.a as NonNullable<MatMulSpecInput["a"]>), extra: "x" };
    const spec = accepted(validateMatMulSpec({ ...input, a }));
    expect(spec.a).toEqual({ rows: 2, cols: 3, blobId: BLOB_A });
  });
});

describe("sameSpec", () => {
  it("is true for equal specs and false when any field differs", () => {
    const base = accepted(validateMatMulSpec(matmulInput(8, 4, 6, { tileRows: 2, tileCols: 3 })));
    expect(sameSpec(base, accepted(validateMatMulSpec(matmulInput(8, 4, 6, { tileRows: 2, tileCols: 3 }))))).toBe(true);
    const variants: MatMulSpecInput[] = [
      matmulInput(9, 4, 6, { tileRows: 2, tileCols: 3 }),
      matmulInput(8, 5, 6, { tileRows: 2, tileCols: 3 }),
      matmulInput(8, 4, 7, { tileRows: 2, tileCols: 3 }),
      matmulInput(8, 4, 6, { tileRows: 1, tileCols: 3 }),
      matmulInput(8, 4, 6, { tileRows: 2, tileCols: 2 }),
      matmulInput(8, 4, 6, { tileRows: 2, tileCols: 3, kernel: "reference" }),
      matmulInput(8, 4, 6, { tileRows: 2, tileCols: 3, blobA: "1".repeat(64) }),
      matmulInput(8, 4, 6, { tileRows: 2, tileCols: 3, blobB: "2".repeat(64) }),
    ];
    for (const v of variants) expect(sameSpec(base, accepted(validateMatMulSpec(v)))).toBe(false);
  });

  it("treats inputs that resolve to the same spec as the same (default tile vs explicit, clamped tile)", () => {
    const x = accepted(validateMatMulSpec(matmulInput(10, 2, 10)));
    const y = accepted(validateMatMulSpec(matmulInput(10, 2, 10, { tileRows: 500, tileCols: 10 })));
    expect(sameSpec(x, y)).toBe(true);
  });
});
