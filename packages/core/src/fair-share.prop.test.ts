// Property tests of weighted fair share and priorities (fair-share.ts, scheduling.ts).
// A failure prints `{ seed, path }`; add them to the property's options to replay it.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { shardCost } from "./fair-share.js";
import { asClientId, type ClientId, type JobId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import type { MatMulSpecInput } from "./spec.js";
import { type JobRecord, ShardStatus } from "./state.js";
import { Driver, matmulInput, unwrap } from "./testing/model.js";

/** Job shapes of different shard costs: 4×4 tiles with k = 4..32, and 8×8 tiles with k = 8. */
const SHAPES: readonly MatMulSpecInput[] = [
  matmulInput(32, 4, 32, { tileRows: 4, tileCols: 4 }),
  matmulInput(32, 16, 32, { tileRows: 4, tileCols: 4 }),
  matmulInput(32, 32, 32, { tileRows: 4, tileCols: 4 }),
  matmulInput(32, 8, 32, { tileRows: 8, tileCols: 8 }),
];

const clientArb = fc.record({
  weight: fc.integer({ min: 1, max: 8 }),
  shape: fc.nat(SHAPES.length - 1),
});
const roundArb = fc.record({ worker: fc.nat(2), max: fc.integer({ min: 1, max: 4 }), completeLate: fc.boolean() });

interface Run {
  readonly d: Driver;
  readonly clients: ClientId[];
  /** Whose job each grant went to, and its cost, in grant order. */
  readonly grants: { clientId: ClientId; jobId: JobId; cost: number }[];
}

/**
 * Three workers serve the clients' jobs; each round one worker asks for up to `max`
 * shards and completes them now or in the next round. Every client keeps `backlog` jobs
 * queued (a finished job is replaced at once), so all stay backlogged.
 */
function serve(
  clients: { weight: number; shape: number; priority?: number }[],
  rounds: { worker: number; max: number; completeLate: boolean }[],
  totalRounds: number,
  opts: { spread: boolean; backlog: number },
): Run {
  const d = new Driver({ spreadShards: opts.spread, leaseTtlMs: 1e12 });
  for (const w of ["w0", "w1", "w2"]) unwrap(d.register(w).outcome);
  const ids = clients.map((_, i) => asClientId(`c${i}`));
  const submit = (i: number) => {
    const c = clients[i] as { weight: number; shape: number };
    d.submitOk(SHAPES[c.shape] as MatMulSpecInput, { clientId: ids[i] as ClientId, weight: c.weight });
  };
  for (let i = 0; i < clients.length; i++) for (let k = 0; k < opts.backlog; k++) submit(i);
  const grants: Run["grants"] = [];
  let late: { w: string; lease: Parameters<Driver["complete"]>[1] }[] = [];
  for (let r = 0; r < totalRounds; r++) {
    const round = rounds[r % rounds.length] as { worker: number; max: number; completeLate: boolean };
    const w = `w${round.worker}`;
    const now = late;
    late = [];
    for (const g of d.grants(w, round.max)) {
      const job = d.job(g.lease.jobId);
      grants.push({ clientId: job.clientId, jobId: job.id, cost: shardCost(job, g.lease.shardIndex) });
      (round.completeLate ? late : now).push({ w, lease: g.lease });
    }
    for (const x of now) unwrap(d.complete(x.w, x.lease).outcome);
    for (const jobId of [...d.state.activeJobs]) {
      const job = d.job(jobId);
      if (!job.finalizing) continue;
      unwrap(d.finalized(jobId).outcome);
      submit(ids.indexOf(job.clientId));
    }
  }
  expect(checkInvariants(d.state)).toEqual([]);
  return { d, clients: ids, grants };
}

describe("weighted fair share properties", () => {
  test.prop([fc.array(clientArb, { minLength: 2, maxLength: 4 }), fc.array(roundArb, { minLength: 1, maxLength: 8 })], {
    numRuns: 60,
  })("each backlogged client's share of granted work is within ±10% of its weight share", (clients, rounds) => {
    const run = serve(clients, rounds, 600, { spread: true, backlog: 2 });
    const total = run.grants.reduce((n, g) => n + g.cost, 0);
    const weights = clients.reduce((n, c) => n + c.weight, 0);
    clients.forEach((c, i) => {
      const got = run.grants.filter((g) => g.clientId === run.clients[i]).reduce((n, g) => n + g.cost, 0);
      const want = c.weight / weights;
      expect(Math.abs(got / total - want) / want).toBeLessThanOrEqual(0.1);
    });
  });

  test.prop([fc.array(clientArb, { minLength: 2, maxLength: 5 }), fc.array(roundArb, { minLength: 1, maxLength: 8 })], {
    numRuns: 60,
  })("no starvation: between two grants to a backlogged client, each other client gets a bounded number", (clients, rounds) => {
    const run = serve(clients, rounds, 200, { spread: false, backlog: 2 });
    const probe = new Driver();
    const costs = SHAPES.map((s) => shardCost(probe.job(probe.submitOk(s)), 0));
    const [lo, hi] = [Math.min(...costs), Math.max(...costs)];
    clients.forEach((c, i) => {
      // SFQ: while client i waits for its next grant, client j gets at most hi·w_j / (lo·w_i) + 1 grants.
      const bound = clients.reduce((n, o, j) => (j === i ? n : n + Math.floor((hi * o.weight) / (lo * c.weight)) + 1), 1);
      let gap = 0;
      for (const g of run.grants) {
        gap = g.clientId === run.clients[i] ? 0 : gap + 1;
        expect(gap).toBeLessThanOrEqual(bound);
      }
    });
  });

  test.prop(
    [
      fc.array(fc.record({ client: fc.nat(1), priority: fc.integer({ min: -3, max: 3 }), shape: fc.nat(SHAPES.length - 1) }), {
        minLength: 2,
        maxLength: 8,
      }),
      fc.array(roundArb, { minLength: 1, maxLength: 8 }),
    ],
    { numRuns: 100 },
  )(
    "within a client, a job is granted only when no higher-priority or older same-priority job has a shard left",
    (jobs, rounds) => {
      const d = new Driver({ spreadShards: false, leaseTtlMs: 1e12 });
      for (const w of ["w0", "w1", "w2"]) unwrap(d.register(w).outcome);
      const ids = jobs.map((j) =>
        d.submitOk(SHAPES[j.shape] as MatMulSpecInput, { clientId: asClientId(`c${j.client}`), priority: j.priority }),
      );
      const grantable = (job: JobRecord) => job.retryQueue.length > 0 || job.shardStatus.includes(ShardStatus.pending);
      for (let r = 0; r < 5_000 && d.state.activeJobs.length > 0; r++) {
        const round = rounds[r % rounds.length] as { worker: number; max: number };
        const w = `w${round.worker}`;
        for (let k = 0; k < round.max; k++) {
          // One at a time, so each grant is checked against the jobs as they were just before it.
          const before = new Map(ids.map((id) => [id, grantable(d.job(id))]));
          const [g] = d.grants(w, 1);
          if (!g) break;
          const got = d.job(g.lease.jobId);
          const gi = ids.indexOf(got.id);
          for (const [k2, other] of ids.entries()) {
            const o = d.job(other);
            if (o.clientId !== got.clientId || !before.get(other)) continue;
            expect(o.priority > got.priority || (o.priority === got.priority && k2 < gi)).toBe(false);
          }
          unwrap(d.complete(w, g.lease).outcome);
        }
        for (const jobId of [...d.state.activeJobs]) if (d.job(jobId).finalizing) unwrap(d.finalized(jobId).outcome);
      }
      expect(ids.map((id) => d.job(id).state)).toEqual(ids.map(() => "succeeded"));
    },
  );
});
