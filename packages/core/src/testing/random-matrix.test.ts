import { describe, expect, it } from "vitest";
import { randomMatrix, xorshift32Words } from "./random-matrix.js";

// The values the tests, scripts and benchmark have always used (scripts/random-matrix.mjs,
// test/support/cluster.ts and freivalds.test.ts each carried a copy before): any change
// here changes every figure compared against them.
describe("randomMatrix and xorshift32Words (pinned values)", () => {
  it("gives the same first values for a seed", () => {
    expect(randomMatrix(2, 3, 1)).toEqual({
      rows: 2,
      cols: 3,
      data: Float64Array.from([
        -0.9998740996234119, -0.9685051436536014, 0.23280820483341813, -0.856762730050832, 0.11697671608999372,
        -0.6528516039252281,
      ]),
    });
    expect([...randomMatrix(1, 3, -7).data]).toEqual([-0.99917210964486, 0.7814457383938134, -0.8900468624196947]);
  });

  it("takes a seed's low 32 bits, and seed 0 as 1", () => {
    const one = [...randomMatrix(1, 4, 1).data];
    expect([...randomMatrix(1, 4, 0).data]).toEqual(one);
    expect([...randomMatrix(1, 4, 2 ** 32 + 1).data]).toEqual(one);
  });

  it("keeps a large matrix identical (the benchmark's 300 × 300, seed 7)", () => {
    const { data } = randomMatrix(300, 300, 7);
    expect(data[89_999]).toBe(-0.06514986511319876);
    expect(data.reduce((s, v) => s + v, 0)).toBe(216.98864204343408);
    expect(data.every((v) => v >= -1 && v < 1)).toBe(true);
  });

  it("the words are the stream the matrix values are scaled from", () => {
    expect([...xorshift32Words(4, 1)]).toEqual([270369, 67634689, 2647435461, 307599695]);
    expect([...xorshift32Words(3, 7919)]).toEqual([2019696417, 1262648994, 2521932233]);
    expect([...randomMatrix(1, 4, 1).data]).toEqual([...xorshift32Words(4, 1)].map((w) => (w / 2 ** 32) * 2 - 1));
  });
});
