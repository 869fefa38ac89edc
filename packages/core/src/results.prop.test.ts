// Property tests of the core state machine.
//
// Each property logs its seed on failure (fast-check prints `{ seed, path }` together
// with the shrunk counterexample). To replay one, add it to the property's options:
//   test.prop([...], { numRuns: 300, seed: <seed>, path: "<path>", endOnFailure: true })
// The shrunk action list is the reproduction; `Run.d.events` holds the concrete events.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import type { LeaseKey } from "./events.js";
import { type TileBounds, tileSizeBytes } from "./plan.js";
import { Driver, effectsOf, matmulInput } from "./testing/model.js";
import { CFG } from "./testing/run-actions.js";

describe("core state machine properties", () => {
  const orderArb = fc
    .tuple(
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
    )
    .chain(([m, n, tr, tc]) => {
      const count = Math.ceil(m / tr) * Math.ceil(n / tc);
      const idx = Array.from({ length: count }, (_, i) => i);
      return fc.record({
        m: fc.constant(m),
        n: fc.constant(n),
        tr: fc.constant(tr),
        tc: fc.constant(tc),
        perm: fc.shuffledSubarray(idx, { minLength: count, maxLength: count }),
        owner: fc.array(fc.nat(2), { minLength: count, maxLength: count }),
        noise: fc.array(fc.nat(), { maxLength: 6 }),
      });
    });

  /** Runs one job to completion, completing shards in `perm` order; returns shardIndex → bounds of the write-tiles. */
  function aggregate(
    m: number,
    n: number,
    tr: number,
    tc: number,
    perm: readonly number[],
    owner: readonly number[],
    noise: readonly number[],
  ) {
    const d = new Driver(CFG);
    const workers = ["w0", "w1", "w2"];
    for (const w of workers) d.register(w);
    const jobId = d.submitOk(matmulInput(m, 3, n, { tileRows: tr, tileCols: tc }));
    const leases = new Map<number, { w: string; lease: LeaseKey }>();
    // owner[i] asks for the i-th grant; which tile it gets depends on the tile blocks.
    for (const o of owner) {
      const w = workers[o] as string;
      const [g] = d.grants(w, 1);
      if (!g) throw new Error("no grant");
      expect(leases.has(g.lease.shardIndex)).toBe(false);
      leases.set(g.lease.shardIndex, { w, lease: g.lease });
    }
    const writes: [number, TileBounds][] = [];
    let finalizes = 0;
    perm.forEach((shard, pos) => {
      const l = leases.get(shard);
      if (!l) throw new Error("no lease");
      // noise: duplicate or misdirected reports of already-handled shards must not add writes
      for (const x of noise) {
        const other = perm[x % Math.max(1, pos)];
        const ol = other === undefined ? undefined : leases.get(other);
        if (pos > 0 && ol) expect(d.complete(ol.w, ol.lease).outcome.ok).toBe(false);
      }
      const r = d.complete(l.w, l.lease);
      expect(r.outcome.ok).toBe(true);
      for (const f of effectsOf(r.effects, "write-tile")) writes.push([f.shardIndex, f.bounds]);
      finalizes += effectsOf(r.effects, "finalize-result").length;
      expect(finalizes).toBe(pos === perm.length - 1 ? 1 : 0);
    });
    const job = d.job(jobId);
    // the accepted tiles cover C exactly
    const cells = new Uint8Array(m * n);
    for (const [, b] of writes)
      for (let r = b.rowStart; r < b.rowEnd; r++)
        for (let c = b.colStart; c < b.colEnd; c++) cells[r * n + c] = (cells[r * n + c] ?? 0) + 1;
    expect([...cells].every((v) => v === 1)).toBe(true);
    expect(writes.reduce((bytes, [i]) => bytes + tileSizeBytes(job.plan, i), 0)).toBe(m * n * 8);
    return writes.sort((x, y) => x[0] - y[0]);
  }

  test.prop([orderArb], { numRuns: 300 })(
    "aggregation is order-independent: any completion order gives the same shardIndex → bounds writes",
    ({ m, n, tr, tc, perm, owner, noise }) => {
      const identity = perm.map((_, i) => i);
      const reference = aggregate(m, n, tr, tc, identity, owner, []);
      const shuffled = aggregate(m, n, tr, tc, perm, owner, noise);
      expect(shuffled).toEqual(reference);
      expect(reference.map(([i]) => i)).toEqual(identity);
    },
  );
});
