// Fixtures shared by the core's step unit tests (job-lifecycle, leases, retries,
// results, scheduling, workers). Test-only: not exported from index.ts.
import { expect } from "vitest";
import { checkInvariants } from "../invariants.js";
import type { CoreConfig } from "../state.js";
import { Driver, matmulInput, unwrap } from "./model.js";

// One worker often takes a whole job here, to test ordering, epochs and retries; the
// spreading of a job over workers has its own tests.
export const CFG: Partial<CoreConfig> = {
  spreadShards: false,
  leaseTtlMs: 1_000,
  maxAttempts: 3,
  retryBaseMs: 100,
  retryMaxMs: 1_000,
  workerTtlMs: 5_000,
};

/** 4×6 result with 2×4 tiles: 2 row tiles × 2 col tiles = 4 shards. */
export const FOUR = matmulInput(4, 3, 6, { tileRows: 2, tileCols: 4 });
/** A single-shard job. */
export const ONE = matmulInput(2, 2, 2);

export function setup(spec = FOUR, config: Partial<CoreConfig> = CFG) {
  const d = new Driver(config);
  unwrap(d.register("w1").outcome);
  unwrap(d.register("w2").outcome);
  const jobId = d.submitOk(spec);
  return { d, jobId };
}

export function expectInvariants(d: Driver): void {
  expect(checkInvariants(d.state)).toEqual([]);
}

export const job0Client = (d: Driver) => [...d.state.jobs.values()][0]?.clientId;
