import { describe, expect, it } from "vitest";
import { formatDurationMs, parseDurationMs } from "./duration.js";

describe("durations", () => {
  it("parses a whole number with a unit", () => {
    expect(parseDurationMs("500ms")).toBe(500);
    expect(parseDurationMs("5s")).toBe(5_000);
    expect(parseDurationMs("30m")).toBe(1_800_000);
    expect(parseDurationMs("1h")).toBe(3_600_000);
    expect(parseDurationMs("7d")).toBe(604_800_000);
    expect(parseDurationMs("0s")).toBe(0);
  });

  it("refuses anything else", () => {
    for (const bad of ["", "5", "-5s", "1.5h", "5 s", "5w", "s", "9999999999999999d"]) {
      expect(parseDurationMs(bad), bad).toBeUndefined();
    }
  });

  it("formats with the largest unit that divides it", () => {
    expect(formatDurationMs(604_800_000)).toBe("7d");
    expect(formatDurationMs(90_000)).toBe("90s");
    expect(formatDurationMs(1_500)).toBe("1500ms");
    expect(formatDurationMs(2_592_000_000)).toBe("30d");
  });
});
