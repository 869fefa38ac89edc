// Property tests of the core state machine.
//
// Each property logs its seed on failure (fast-check prints `{ seed, path }` together
// with the shrunk counterexample). To replay one, add it to the property's options:
//   test.prop([...], { numRuns: 300, seed: <seed>, path: "<path>", endOnFailure: true })
// The shrunk action list is the reproduction; `Run.d.events` holds the concrete events.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import type { JobId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import type { MatMulSpecInput } from "./spec.js";
import type { KernelOffer } from "./state.js";
import { Driver, effectsOf, unwrap } from "./testing/model.js";
import { CFG, OFFERS, SPECS } from "./testing/run-actions.js";

describe("core state machine properties", () => {
  test.prop(
    [
      fc.array(fc.nat(SPECS.length - 1), { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(2), { minLength: 1, maxLength: 3 }), // builds with a usable kernel: OFFERS[0..2]
      fc.array(
        fc.record({
          first: fc.nat(),
          max: fc.integer({ min: 1, max: 4 }),
          dt: fc.integer({ min: 0, max: 250 }),
          reverse: fc.boolean(),
          replyLate: fc.boolean(),
        }),
        { minLength: 1, maxLength: 10 },
      ),
    ],
    { numRuns: 300 },
  )("liveness: with no failures or cancels, acquiring and completing everything succeeds every job", (specs, builds, rounds) => {
    // Jobs are kept for the whole run: this property looks at them after they succeed.
    const d = new Driver({ ...CFG, retentionMs: 3_600_000, maxRetentionMs: 3_600_000 });
    const workers = builds.map((b, i) => {
      const id = `w${i}`;
      unwrap(d.register(id, OFFERS[b] as readonly KernelOffer[]).outcome);
      return id;
    });
    const jobs = specs.map((sp) => d.submitOk(SPECS[sp] as MatMulSpecInput));
    const pending: JobId[] = [];
    const totalShards = jobs.reduce((n, j) => n + d.job(j).plan.shardCount, 0);
    let round = 0;
    for (; round < 200 && jobs.some((j) => d.job(j).state !== "succeeded"); round++) {
      const r = rounds[round % rounds.length];
      if (!r) throw new Error("no round");
      const carried = pending.length;
      for (let k = 0; k < workers.length; k++) {
        const w = workers[(r.first + k) % workers.length] as string;
        const grants = d.grants(w, r.max);
        const order = r.reverse ? [...grants].reverse() : grants;
        for (const g of order) {
          const c = d.complete(w, g.lease);
          expect(c.outcome.ok).toBe(true);
          for (const f of effectsOf(c.effects, "finalize-result")) pending.push(f.jobId);
        }
        expect(checkInvariants(d.state)).toEqual([]);
      }
      // the shell replies now, or (replyLate) only to what was pending before this round
      const replyNow = r.replyLate ? pending.splice(0, carried) : pending.splice(0);
      for (const j of replyNow) unwrap(d.finalized(j).outcome);
      d.advance(r.dt);
      expect(unwrap(d.tick().outcome).expired).toBe(0);
    }
    for (const j of pending.splice(0)) unwrap(d.finalized(j).outcome);
    expect(jobs.map((j) => d.job(j).state)).toEqual(jobs.map(() => "succeeded"));
    expect(jobs.reduce((n, j) => n + d.job(j).doneCount, 0)).toBe(totalShards);
    expect(d.state.leases.size).toBe(0);
    expect(d.state.activeJobs).toEqual([]);
    expect(round).toBeLessThanOrEqual(totalShards + 2);
    expect(checkInvariants(d.state)).toEqual([]);
  });
});
