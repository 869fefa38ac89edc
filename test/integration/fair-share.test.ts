import { createClient, type JobHandle } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Cluster, randomMatrix, startCluster } from "../support/cluster.js";

// Weighted fair share through the bins, as an operator sets it up: a coordinator and two
// workers; two clients whose tokens weigh 1 and 3 (`coordinator tokens add --weight`)
// each submit a big job of the same shape side by side. While both are backlogged, the
// shards granted to each (done + leased; equal shapes, so equal cost a shard) must split
// 1:3 within ±10%. Every process is stopped by the cluster's close, even on failure.

// 256 shards a job of 64×64×1024 multiply-adds each: large enough that a worker holds
// only a spare or two ahead (its prefetch grows as shards get small, up to 256 spares,
// and what a worker holds it has been granted already), so grants track worker time.
const DIM = { m: 1024, k: 1024, n: 1024, tile: 64 };
const TIME_LIMIT_MS = 90_000;

let cluster: Cluster;
beforeAll(async () => {
  // No workers yet: both jobs are queued before the first grant, so neither gets a head start.
  cluster = await startCluster({ workers: 0, threadsPerWorker: 1 });
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

interface Sample {
  readonly atMs: number;
  /** Shards granted so far (done + leased), light then heavy. */
  readonly granted: readonly [number, number];
  /** Shards done so far, light then heavy. */
  readonly done: readonly [number, number];
  /** Whether each still has a shard no worker holds. */
  readonly backlogged: readonly [boolean, boolean];
}

describe("weighted fair share between clients (real processes)", () => {
  test(
    "clients with tokens of weights 1 and 3 get worker time 1:3 within ±10% while both are backlogged",
    async () => {
      const [lightToken, heavyToken] = [
        await cluster.tokens("add", "light", "--weight", "1"),
        await cluster.tokens("add", "heavy", "--weight", "3"),
      ];
      expect(await cluster.tokens("list")).toMatch(/^heavy\tclient\t\S+\t3$/m);
      const light = createClient({ ...cluster.clientOptions, token: lightToken });
      const heavy = createClient({ ...cluster.clientOptions, token: heavyToken });
      const submit = (client: typeof light, seed: number): Promise<JobHandle> =>
        client.submitMatMul(randomMatrix(DIM.m, DIM.k, seed), randomMatrix(DIM.k, DIM.n, seed + 1), {
          tileSize: DIM.tile,
        });
      const jobs = await Promise.all([submit(light, 1), submit(heavy, 3)]);
      await Promise.all([cluster.addWorker("w1"), cluster.addWorker("w2")]);

      const t0 = performance.now();
      const samples: Sample[] = [];
      for (;;) {
        const [a, b] = await Promise.all(jobs.map((j) => j.status()));
        if (!a || !b) throw new Error("no status");
        const granted = [a.shardsDone + a.shardsLeased, b.shardsDone + b.shardsLeased] as const;
        samples.push({
          atMs: performance.now() - t0,
          granted,
          done: [a.shardsDone, b.shardsDone],
          backlogged: [granted[0] < a.shardsTotal, granted[1] < b.shardsTotal],
        });
        if (!samples.at(-1)?.backlogged.every(Boolean)) break;
        if (performance.now() - t0 > TIME_LIMIT_MS) throw new Error(`still running after ${TIME_LIMIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
      // The last sample at which both still had unleased shards: every grant up to it was made
      // while both were backlogged.
      const both = samples.filter((s) => s.backlogged.every(Boolean));
      const last = both.at(-1);
      expect(last, "no sample with both jobs backlogged").toBeDefined();
      const [l, h] = last?.granted ?? [0, 0];
      const [dl, dh] = last?.done ?? [0, 0];
      const pct = (x: number, y: number) => ((100 * x) / (x + y)).toFixed(1);
      console.log(
        `fair share over ${last?.atMs.toFixed(0)} ms while both were backlogged (${samples.length} samples): ` +
          `granted light ${l} / heavy ${h} shards (heavy ${pct(h, l)}%), ` +
          `done light ${dl} / heavy ${dh} (heavy ${pct(dh, dl)}%); want heavy 75% ± 7.5%`,
      );
      expect(l + h).toBeGreaterThanOrEqual(100);
      // Equal shapes, so equal cost a shard: the shards granted are the worker time given to
      // each. (Shards done lag behind by what the workers hold ahead, in an order that also
      // depends on when each job's inputs reached them, so they are reported, not asserted.)
      expect(Math.abs(h / (l + h) - 0.75) / 0.75).toBeLessThanOrEqual(0.1);
      expect(Math.abs(l / (l + h) - 0.25) / 0.25).toBeLessThanOrEqual(0.1);
      // Both jobs still finish.
      const results = await Promise.all(jobs.map((j) => j.result({ timeoutMs: TIME_LIMIT_MS })));
      expect(results.map((c) => [c.rows, c.cols])).toEqual([
        [DIM.m, DIM.n],
        [DIM.m, DIM.n],
      ]);
    },
    3 * TIME_LIMIT_MS,
  );
});
