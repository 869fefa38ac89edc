// Property tests of the core state machine.
//
// Each property logs its seed on failure (fast-check prints `{ seed, path }` together
// with the shrunk counterexample). To replay one, add it to the property's options:
//   test.prop([...], { numRuns: 300, seed: <seed>, path: "<path>", endOnFailure: true })
// The shrunk action list is the reproduction; `Run.d.events` holds the concrete events.
import { test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { replay } from "./testing/model.js";
import { CFG, runArb } from "./testing/run-actions.js";
import { execute } from "./testing/run-model.js";
import { viewJob } from "./views.js";

// The run model (testing/run-model.ts) drives random actions against the core and
// checks every step (testing/run-checks.ts).

describe("core state machine properties", () => {
  test.prop([runArb], { numRuns: 300 })(
    "safety: invariants, one live lease per shard, one accepted tile per shard, one finalize per job, increasing epochs, terminal states are final",
    (input) => {
      execute(input);
    },
  );

  test.prop([runArb], { numRuns: 200 })(
    "determinism: replaying the event list on a fresh state gives deep-equal outcomes and effects",
    (input) => {
      const run = execute(input, false);
      const again = replay(CFG, run.d.events);
      expect(again.results).toEqual(run.results);
      const third = replay(CFG, run.d.events);
      expect(third.results).toEqual(again.results);
      // and the same final state
      const summary = (st: typeof run.d.state) => ({
        views: [...st.jobs.values()].map((j) => viewJob(j, st.config)),
        leases: [...st.leases.values()],
        workers: [...st.workers.values()].map((w) => ({ ...w, leases: [...w.leases] })),
        nextEpoch: st.nextEpoch,
        activeJobs: st.activeJobs,
      });
      expect(summary(again.state)).toEqual(summary(run.d.state));
    },
  );
});
