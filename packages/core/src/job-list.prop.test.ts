import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { asJobId, type JobId } from "./ids.js";
import { type JobCursor, listJobs } from "./job-list.js";
import { C1, C2, Driver, matmulInput, unwrap } from "./testing/model.js";

// Paging through a client's jobs while jobs are created and deleted between pages: every
// job that exists for the whole walk is seen exactly once, nothing is seen twice, no other
// client's job and no job newer than the walk is seen, and what is seen is newest first.

const ONE = matmulInput(1, 1, 1);

const between = fc.array(
  fc.oneof(
    fc.record({ t: fc.constant("submit" as const), client: fc.constantFrom(C1, C2), dt: fc.nat(3) }),
    fc.record({ t: fc.constant("delete" as const), pick: fc.nat() }),
  ),
  { maxLength: 4 },
);

describe("job pages", () => {
  test.prop([fc.nat(25), fc.integer({ min: 1, max: 7 }), fc.array(between, { minLength: 1, maxLength: 30 })], {
    numRuns: 300,
  })("a walk under concurrent submits and deletes sees each surviving job once, newest first", (initial, limit, moves) => {
    const d = new Driver({ maxActiveJobs: 1_000, maxActiveJobsPerClient: 1_000 });
    let seq = 0;
    const submit = (clientId = C1) => d.submitOk(ONE, { clientId, jobId: asJobId(`j${String(++seq).padStart(3, "0")}`) });
    for (let i = 0; i < initial; i++) {
      submit(i % 3 === 0 ? C2 : C1);
      if (i % 4 === 0) d.advance(1); // some share a created time: the id breaks the tie
    }
    const atStart = new Set([...d.state.jobs.values()].filter((j) => j.clientId === C1).map((j) => j.id));
    const deleted = new Set<JobId>();
    const seen: JobId[] = [];
    let after: JobCursor | undefined;
    for (let page = 0; ; page++) {
      const p = listJobs(d.state, { owner: C1, states: [], limit, ...(after ? { after } : {}) });
      for (const job of p.jobs) {
        expect(job.clientId).toBe(C1);
        seen.push(job.id);
      }
      if (!p.next) break;
      // Each page moves the cursor strictly on: a walk over n jobs ends within n pages.
      expect(page, "the walk does not end").toBeLessThan(initial + 1);
      after = p.next;
      for (const m of moves[page % moves.length] ?? []) {
        if (m.t === "submit") {
          d.advance(m.dt);
          submit(m.client);
        } else {
          const ids = [...d.state.jobs.keys()];
          const id = ids[m.pick % Math.max(1, ids.length)];
          if (id === undefined) continue;
          const owner = d.job(id).clientId;
          unwrap(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: owner, jobId: id }).outcome);
          deleted.add(id);
        }
      }
    }
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of atStart) if (!deleted.has(id)) expect(seen).toContain(id);
    // Jobs created during the walk are newer than every cursor: never seen by it.
    for (const id of seen) expect(atStart.has(id)).toBe(true);
    // Newest first: here ids rise with creation, and created times never go back.
    expect(seen).toEqual([...seen].sort().reverse());
  });
});
