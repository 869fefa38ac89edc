/** How {@link corruptTile} changed a tile. */
export interface Corruption {
  /** `exponent-bit`: one of bits 52–62 flipped; `mantissa-bit`: one of bits 44–51 flipped; `relative`: scaled by 1 ± 2^-9…2^-8; `set`: a tile of zeros (or of values below 2^-900) got a 1. */
  readonly kind: "exponent-bit" | "mantissa-bit" | "relative" | "set";
  /** Index of the changed entry in the tile (row-major). */
  readonly index: number;
  readonly before: number;
  readonly after: number;
}

/**
 * Corrupts one entry of a tile in place, for `worker --chaos-corrupt-rate`: it picks a
 * random row, takes that row's largest entry (so the change is large next to everything
 * the row sums, far above float rounding), and flips a high exponent bit, flips a high
 * mantissa bit, or scales it by 1 ± (2^-9 … 2^-8). Every corruption changes the value by
 * at least 2^-10 of the row's largest magnitude (or turns it into Inf/NaN).
 * @param n columns of the tile; `random` returns uniform numbers in [0, 1).
 */
export function corruptTile(c: Float64Array, n: number, random: () => number): Corruption {
  const m = Math.max(1, Math.floor(c.length / Math.max(1, n)));
  const row = Math.min(m - 1, Math.floor(random() * m));
  let index = -1;
  let best = 0;
  const scan = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const v = Math.abs(c[i] as number);
      if (v > best) {
        best = v;
        index = i;
      }
    }
  };
  scan(row * n, Math.min(c.length, (row + 1) * n));
  // A row of zeros or of values below 2^-900: take the largest entry of the whole tile.
  if (index < 0 || best < 2 ** -900) scan(0, c.length);
  if (index < 0 || best < 2 ** -900) {
    // Nothing but zeros (or values so tiny that scaling them rounds back): a 1 is wrong by far more than rounding.
    index = Math.min(c.length - 1, Math.floor(random() * c.length));
    const was = c[index] as number;
    c[index] = 1;
    return { kind: "set", index, before: was, after: 1 };
  }
  const before = c[index] as number;
  const pick = random();
  if (pick < 1 / 3) {
    flipBit(c, index, 52 + Math.min(10, Math.floor(random() * 11)));
    return { kind: "exponent-bit", index, before, after: c[index] as number };
  }
  if (pick < 2 / 3) {
    flipBit(c, index, 44 + Math.min(7, Math.floor(random() * 8)));
    return { kind: "mantissa-bit", index, before, after: c[index] as number };
  }
  const sign = random() < 0.5 ? -1 : 1;
  c[index] = before * (1 + sign * 2 ** -9 * (1 + random()));
  return { kind: "relative", index, before, after: c[index] as number };
}

function flipBit(c: Float64Array, index: number, bit: number): void {
  const view = new DataView(c.buffer, c.byteOffset + index * 8, 8);
  view.setBigUint64(0, view.getBigUint64(0, true) ^ (1n << BigInt(bit)), true);
}
