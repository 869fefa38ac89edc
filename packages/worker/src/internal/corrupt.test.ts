import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { corruptTile } from "./corrupt.js";

describe("corruptTile (worker --chaos-corrupt-rate)", () => {
  it("changes exactly one entry, by at least 2^-10 of its row's largest magnitude", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 81, maxLength: 81 }),
        fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 4, maxLength: 4 }),
        (m, n, values, draws) => {
          const c = Float64Array.from(values.slice(0, m * n));
          const before = c.slice();
          let i = 0;
          const random = () => draws[i++ % draws.length] as number;
          const what = corruptTile(c, n, random);
          const changed = [...c.keys()].filter((j) => !Object.is(c[j], before[j]));
          expect(changed).toEqual([what.index]);
          const row = Math.floor(what.index / n);
          const rowMax = Math.max(...[...before.subarray(row * n, (row + 1) * n)].map(Math.abs));
          const delta = Math.abs((c[what.index] as number) - (before[what.index] as number));
          // NaN compares false: a NaN counts as changed beyond any bound.
          expect(Number.isNaN(delta) || delta >= 2 ** -10 * rowMax).toBe(true);
          expect(delta > 0 || Number.isNaN(delta)).toBe(true);
        },
      ),
      {
        numRuns: 500,
        // Found by a random run: the chosen row holds only a subnormal, the other row 1024.
        examples: [[2, 3, [0, 0, -5e-324, -1024.0000000000002, ...new Array<number>(77).fill(0)], [0, 2 / 3, 0, 0]]],
      },
    );
  });

  it("uses every kind of corruption", () => {
    const kinds = new Set<string>();
    let x = 1;
    const random = () => {
      x = (x * 48271) % 2147483647;
      return x / 2147483647;
    };
    for (let t = 0; t < 200; t++) kinds.add(corruptTile(Float64Array.of(1.5, -2, 3, 0.25), 2, random).kind);
    kinds.add(corruptTile(new Float64Array(4), 2, random).kind);
    expect([...kinds].sort()).toEqual(["exponent-bit", "mantissa-bit", "relative", "set"]);
  });
});
