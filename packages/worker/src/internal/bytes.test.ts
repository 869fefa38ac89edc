import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { bytesToFloat64, float64ToBytes, sha256Hex } from "./bytes.js";
import { extractColumns } from "./matrix.js";

describe("bytes", () => {
  it("round-trips float64 through little-endian bytes", () => {
    const x = Float64Array.of(1.5, -0, Number.NaN, Number.POSITIVE_INFINITY, 1e-310);
    const bytes = float64ToBytes(x);
    // 1.5 = 0x3FF8000000000000, little-endian: low byte first
    expect([...bytes.subarray(0, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
    const back = bytesToFloat64(bytes.slice());
    expect(new Uint8Array(back.buffer)).toEqual(new Uint8Array(x.buffer));
  });

  it("copies unaligned views", () => {
    const raw = new Uint8Array(17);
    raw.set(float64ToBytes(Float64Array.of(2.25, 3)), 1);
    expect([...bytesToFloat64(raw.subarray(1))]).toEqual([2.25, 3]);
    expect(() => bytesToFloat64(new Uint8Array(7))).toThrow(RangeError);
  });

  it("hashes in slices to the same digest", async () => {
    const data = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
    const want = createHash("sha256").update(data).digest("hex");
    expect(await sha256Hex(data, 64)).toBe(want);
    expect(await sha256Hex(data)).toBe(want);
  });

  it("extracts a column panel into a fresh buffer", () => {
    // 3×4: rows [0 1 2 3] [4 5 6 7] [8 9 10 11]
    const x = Float64Array.from({ length: 12 }, (_, i) => i);
    expect([...extractColumns(x, 3, 4, 1, 3)]).toEqual([1, 2, 5, 6, 9, 10]);
    const all = extractColumns(x, 3, 4, 0, 4);
    expect([...all]).toEqual([...x]);
    expect(all.buffer).not.toBe(x.buffer);
  });
});
