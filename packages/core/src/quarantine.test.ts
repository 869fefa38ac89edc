import { describe, expect, it } from "vitest";
import { asWorkerId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import { sameIdentityPeers } from "./quarantine.js";
import type { CoreConfig } from "./state.js";
import { Driver, effectsOf, matmulInput, REF_A, unwrap } from "./testing/model.js";

// The quarantine rule of quarantine.ts: a worker (registration) is shut out by its own
// rejected results; its identity only by rejected results from two or more of its workers.

const CFG: Partial<CoreConfig> = {
  spreadShards: false,
  leaseTtlMs: 1_000,
  maxAttempts: 5,
  retryBaseMs: 100,
  retryMaxMs: 1_000,
  workerTtlMs: 5_000,
  quarantineAfterRejections: 3,
};
/** 8×8 result with 2×2 tiles: 16 shards. */
const SIXTEEN = matmulInput(8, 3, 8, { tileRows: 2, tileCols: 2 });

/** Grants one shard to `id` and rejects its result; returns the outcome of the rejection. */
function rejectOne(d: Driver, id: string) {
  const [g] = d.grants(id, 1);
  if (!g) throw new Error(`no grant for ${id}`);
  d.advance(1);
  return d.reject(id, g.lease);
}

/** Grants one shard to `id` and completes it; returns the outcome of the completion. */
function completeOne(d: Driver, id: string) {
  const [g] = d.grants(id, 1);
  if (!g) throw new Error(`no grant for ${id}`);
  return d.complete(id, g.lease).outcome;
}

describe("quarantine: the worker first, the identity on evidence from two of its workers", () => {
  it("one certificate on two workers: only the one returning wrong results is shut out", () => {
    const d = new Driver(CFG);
    unwrap(d.register("bad", [REF_A], "dce-worker").outcome);
    unwrap(d.register("good", [REF_A], "dce-worker").outcome);
    const jobId = d.submitOk(SIXTEEN);
    expect(completeOne(d, "good").ok).toBe(true);
    const outcomes = [rejectOne(d, "bad"), rejectOne(d, "bad"), rejectOne(d, "bad")];
    expect(outcomes.map((r) => r.outcome)).toEqual([
      { ok: true, value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false } },
      { ok: true, value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false } },
      { ok: true, value: { leaseEnded: true, requeued: true, quarantined: true, identityQuarantined: false } },
    ]);
    // Nothing durable: a restarted coordinator has no quarantine to restore.
    expect(outcomes.flatMap((r) => effectsOf(r.effects, "persist"))).toEqual([]);
    expect(d.acquire("bad", 1).outcome).toEqual({
      ok: false,
      error: { kind: "worker-quarantined", identity: "dce-worker", rejectedResults: 3, workerId: "bad" },
    });
    expect(d.state.identities.get("dce-worker")).toMatchObject({ rejectedResults: 3, rejectingWorkers: 1, quarantinedAtMs: 0 });
    // The honest worker with the same certificate finishes the job, and more workers may register.
    for (;;) {
      const grants = d.grants("good", 16);
      if (grants.length === 0) break;
      for (const g of grants) expect(d.complete("good", g.lease).outcome.ok).toBe(true);
    }
    expect(d.job(jobId).finalizing).toBe(true);
    expect(d.register("third", [REF_A], "dce-worker").outcome.ok).toBe(true);
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("a quarantined worker that comes back under a new registration quarantines its identity at its next wrong result", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("honest", [REF_A], "alice").outcome);
    d.submitOk(SIXTEEN);
    for (let i = 0; i < 3; i++) rejectOne(d, "w1");
    unwrap(d.register("w1-again", [REF_A], "alice").outcome);
    const [held] = d.grants("honest", 1);
    const r = rejectOne(d, "w1-again");
    expect(r.outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: true, identityQuarantined: true },
    });
    expect(effectsOf(r.effects, "persist")).toEqual([
      {
        type: "persist",
        record: {
          type: "worker-quarantined",
          identity: "alice",
          rejectedResults: 4,
          reason: "result rejected: row 0 fails Freivalds' test",
          atMs: d.nowMs,
        },
      },
    ]);
    expect(effectsOf(r.effects, "log").find((l) => l.msg === "worker identity quarantined")).toMatchObject({
      level: "error",
      fields: { identity: "alice", scope: "identity", rejectedResults: 4, workersWithRejections: 2 },
    });
    // Every worker of the identity is shut out now, its leases taken back; it cannot register again.
    const refused = { ok: false, error: { kind: "worker-quarantined", identity: "alice", rejectedResults: 4 } };
    expect(d.acquire("honest", 1).outcome).toEqual(refused);
    expect(held && d.state.leases.has(held.lease.epoch)).toBe(false);
    expect(d.register("w1-third", [REF_A], "alice").outcome).toEqual(refused);
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("wrong results spread over registrations, each below the limit, still quarantine the identity", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1", [REF_A], "mallory").outcome);
    unwrap(d.register("bob", [REF_A], "bob").outcome);
    d.submitOk(SIXTEEN);
    rejectOne(d, "w1");
    rejectOne(d, "w1");
    unwrap(d.register("w2", [REF_A], "mallory").outcome);
    expect(rejectOne(d, "w2").outcome).toMatchObject({ ok: true, value: { quarantined: true, identityQuarantined: true } });
    expect(d.state.workers.get(asWorkerId("w1"))?.quarantinedAtMs).toBe(0); // shut out through its identity
    expect(d.acquire("w1", 1).outcome).toMatchObject({ ok: false, error: { kind: "worker-quarantined", identity: "mallory" } });
    expect(d.grants("bob", 1)).toHaveLength(1);
  });

  it("two workers of one identity with a wrong result each stay in until the identity reaches the limit", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1", [REF_A], "carol").outcome);
    unwrap(d.register("w2", [REF_A], "carol").outcome);
    d.submitOk(SIXTEEN);
    expect(rejectOne(d, "w1").outcome).toMatchObject({ ok: true, value: { quarantined: false } });
    expect(rejectOne(d, "w2").outcome).toMatchObject({ ok: true, value: { quarantined: false } });
    expect(completeOne(d, "w1").ok).toBe(true);
    expect(rejectOne(d, "w2").outcome).toMatchObject({ ok: true, value: { quarantined: true, identityQuarantined: true } });
  });

  it("a quarantined worker stays listed on its identity after the coordinator forgets the process", () => {
    const d = new Driver(CFG);
    unwrap(d.register("bad", [REF_A], "dce-worker").outcome);
    d.submitOk(SIXTEEN);
    for (let i = 0; i < 3; i++) rejectOne(d, "bad");
    const atMs = d.nowMs;
    d.advance(10_000);
    d.tick();
    expect(d.state.workers.has(asWorkerId("bad"))).toBe(false);
    expect(d.state.identities.get("dce-worker")?.quarantinedWorkers).toEqual([
      { workerId: "bad", name: "bad", rejectedResults: 3, atMs },
    ]);
  });

  it("quarantineAfterRejections = 0 shuts out neither the worker nor the identity", () => {
    const d = new Driver({ ...CFG, quarantineAfterRejections: 0, maxAttempts: 20 });
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_A], "alice").outcome);
    d.submitOk(SIXTEEN);
    for (let i = 0; i < 4; i++) {
      expect(rejectOne(d, "w1").outcome).toMatchObject({ ok: true, value: { quarantined: false } });
      expect(rejectOne(d, "w2").outcome).toMatchObject({ ok: true, value: { quarantined: false } });
    }
    expect(d.acquire("w1", 1).outcome.ok).toBe(true);
  });

  it("sameIdentityPeers lists the other live, unquarantined workers of an identity", () => {
    const d = new Driver(CFG);
    unwrap(d.register("a", [REF_A], "dce-worker").outcome);
    d.advance(2_000);
    unwrap(d.register("b", [REF_A], "dce-worker").outcome);
    unwrap(d.register("c", [REF_A], "dce-worker").outcome);
    unwrap(d.register("own", [REF_A], "w-own").outcome);
    const peers = (id: string, sinceMs: number) => sameIdentityPeers(d.state, asWorkerId(id), sinceMs).map((w) => w.id);
    expect(peers("c", 0)).toEqual(["a", "b"]);
    expect(peers("c", d.nowMs - 1_000)).toEqual(["b"]); // a was last heard from 2 s ago
    expect(peers("own", 0)).toEqual([]);
    expect(peers("nobody", 0)).toEqual([]);
    d.submitOk(SIXTEEN);
    for (let i = 0; i < 3; i++) rejectOne(d, "b");
    expect(peers("c", 0)).toEqual(["a"]); // b is quarantined: no longer a peer to warn about
  });
});
