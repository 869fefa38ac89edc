import { describe, expect, it } from "vitest";
import { createRateEstimator } from "./rate-estimator.js";

describe("createRateEstimator", () => {
  it("has no rate from a single observation", () => {
    const e = createRateEstimator();
    expect(e.observe(1_000, 0, 10, false)).toEqual({});
  });

  it("computes rate and ETA from shards done over time", () => {
    const e = createRateEstimator();
    e.observe(0, 0, 100, false);
    const est = e.observe(2_000, 10, 100, false);
    expect(est.rateShardsPerSec).toBe(5);
    expect(est.etaMs).toBe(18_000);
  });

  it("reports rate 0 and no ETA while nothing finishes", () => {
    const e = createRateEstimator();
    e.observe(0, 3, 10, false);
    expect(e.observe(5_000, 3, 10, false)).toEqual({ rateShardsPerSec: 0 });
  });

  it("forgets samples older than the window, keeping one baseline", () => {
    const e = createRateEstimator({ windowMs: 10_000 });
    e.observe(0, 0, 1000, false);
    e.observe(60_000, 0, 1000, false); // stalled for a minute
    e.observe(61_000, 10, 1000, false);
    // Baseline is the sample at 60 s, not the one at 0: 20 shards in 2 s.
    const est = e.observe(62_000, 20, 1000, false);
    expect(est.rateShardsPerSec).toBe(10);
    expect(est.etaMs).toBe(98_000);
  });

  it("ETA is 0 once the job is terminal", () => {
    const e = createRateEstimator();
    e.observe(0, 0, 4, false);
    expect(e.observe(1_000, 4, 4, true)).toEqual({ rateShardsPerSec: 4, etaMs: 0 });
  });
});
