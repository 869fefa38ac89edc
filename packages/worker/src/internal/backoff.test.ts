import { describe, expect, it } from "vitest";
import { backoffCapMs, backoffDelayMs } from "./backoff.js";

describe("backoffDelayMs", () => {
  it("starts near 100 ms, doubles, and caps at 5 s", () => {
    expect(backoffDelayMs(0, () => 0)).toBe(50);
    expect(backoffDelayMs(0, () => 0.999999)).toBeCloseTo(100, 3);
    expect(backoffDelayMs(1, () => 0.999999)).toBeCloseTo(200, 3);
    expect(backoffDelayMs(3, () => 0.5)).toBe(600);
    expect(backoffDelayMs(50, () => 0.999999)).toBeCloseTo(backoffCapMs, 2);
    expect(backoffDelayMs(1_000, () => 0)).toBe(backoffCapMs / 2);
  });
});
