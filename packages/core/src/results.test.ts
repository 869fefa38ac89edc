import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import { asWorkerId } from "./ids.js";
import { checkCompletion } from "./queries.js";
import type { CoreConfig } from "./state.js";
import { Driver, effectsOf, matmulInput, REF_A, REF_B, unwrap } from "./testing/model.js";
import { CFG, expectInvariants, FOUR, ONE } from "./testing/step-fixtures.js";

describe("verified results: rejection, requeue and quarantine", () => {
  /** w1 and w2 registered as identities "alice" and "bob"; a 4-shard job. */
  function pair(config: Partial<CoreConfig> = CFG) {
    const d = new Driver(config);
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_A], "bob").outcome);
    const jobId = d.submitOk(FOUR);
    return { d, jobId };
  }

  it("a rejected result ends the lease and re-queues the shard at once, for another identity", () => {
    const { d, jobId } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const r = d.reject("w1", g.lease);
    expect(r.outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
    });
    expect(effectsOf(r.effects, "log")[0]).toMatchObject({ level: "warn", msg: "shard result rejected" });
    expect(effectsOf(r.effects, "persist")).toEqual([]);
    expect(d.state.leases.has(g.lease.epoch)).toBe(false);
    expect(d.state.identities.get("alice")?.rejectedResults).toBe(1);
    expectInvariants(d);
    // alice is not offered the shard again while bob can take it: she gets fresh shards instead.
    const again = d.grants("w1", 4).map((x) => x.lease.shardIndex);
    expect(again).not.toContain(g.lease.shardIndex);
    // bob gets it at once (no retry backoff), with a higher epoch.
    const [b] = d.grants("w2", 1);
    expect(b?.lease.shardIndex).toBe(g.lease.shardIndex);
    expect(b?.lease.epoch).toBeGreaterThan(g.lease.epoch);
    expect(b?.attempt).toBe(2);
    if (!b) throw new Error("no grant");
    expect(d.complete("w2", b.lease).outcome.ok).toBe(true);
    expect(d.job(jobId).shardAvoid.size).toBe(0);
    expectInvariants(d);
  });

  it("the same identity under a new registration is still avoided, and still charged", () => {
    const { d } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.reject("w1", g.lease);
    unwrap(d.register("w1-again", [REF_A], "alice").outcome);
    expect(d.grants("w1-again", 4).map((x) => x.lease.shardIndex)).not.toContain(g.lease.shardIndex);
  });

  it("with no other identity able to run the job, the shard goes back to the one that failed it", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_B], "bob").outcome); // another build: cannot take a job pinned to fp-a
    d.submitOk(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.reject("w1", g.lease);
    expect(d.grants("w2", 1)).toEqual([]);
    expect(d.grants("w1", 1)[0]?.lease.shardIndex).toBe(0);
  });

  it("after quarantineAfterRejections rejections the worker is quarantined: logged at error, no more work", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 2, maxAttempts: 5 });
    const [g1, g2, g3] = d.grants("w1", 3);
    if (!g1 || !g2 || !g3) throw new Error("no grants");
    expect(d.reject("w1", g1.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
    });
    d.advance(10);
    const r = d.reject("w1", g2.lease);
    expect(r.outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: true, identityQuarantined: false },
    });
    // One process's results are no evidence about its identity: nothing durable (quarantine.test.ts has the identity rule).
    expect(effectsOf(r.effects, "persist")).toEqual([]);
    expect(effectsOf(r.effects, "log").find((l) => l.msg === "worker quarantined")).toMatchObject({
      level: "error",
      fields: { workerId: "w1", identity: "alice", scope: "worker", rejectedResults: 2 },
    });
    // Its third lease was taken back at once, without charging an attempt.
    expect(d.state.leases.has(g3.lease.epoch)).toBe(false);
    expect(d.job(g3.lease.jobId).shardAttempts[g3.lease.shardIndex]).toBe(0);
    expectInvariants(d);
    expect(d.acquire("w1", 1).outcome).toEqual({
      ok: false,
      error: { kind: "worker-quarantined", identity: "alice", rejectedResults: 2, workerId: "w1" },
    });
    // Its late report about the revoked lease is stale; bob finishes everything.
    expect(d.complete("w1", g3.lease).outcome).toMatchObject({ ok: false, error: { kind: "lease-lost" } });
    for (const g of d.grants("w2", 4)) expect(d.complete("w2", g.lease).outcome.ok).toBe(true);
    expect(d.job(g1.lease.jobId).finalizing).toBe(true);
    expectInvariants(d);
  });

  it("quarantineAfterRejections = 0 never quarantines", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 0, maxAttempts: 10 });
    for (let i = 0; i < 4; i++) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      expect(d.reject("w1", g.lease).outcome).toEqual({
        ok: true,
        value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
      });
    }
    expect(d.state.identities.get("alice")).toMatchObject({ rejectedResults: 4, quarantinedAtMs: 0 });
    // Every shard now waits for bob; alice still may ask (she is not quarantined) but gets none of them.
    expect(d.grants("w1", 4)).toEqual([]);
  });

  it("a wrong result for a lease that is no longer live is still charged, and changes nothing else", () => {
    const { d, jobId } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(CFG.leaseTtlMs ?? 0);
    d.tick();
    const before = d.job(jobId).version;
    expect(d.reject("w1", g.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: false, requeued: false, quarantined: false, identityQuarantined: false },
    });
    expect(d.job(jobId).version).toBe(before);
    expect(d.state.identities.get("alice")?.rejectedResults).toBe(1);
    expect(d.reject("ghost", g.lease).outcome).toEqual({ ok: false, error: { kind: "worker-not-found", workerId: "ghost" } });
  });

  it("a rejected straggler result leaves its twin running", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 60_000, stragglerMinDoneFraction: 0.5 });
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_A], "bob").outcome);
    d.submitOk(matmulInput(2, 1, 2, { tileRows: 1, tileCols: 2 })); // 2 shards
    const [slow] = d.grants("w1", 1);
    const [fast] = d.grants("w2", 1);
    if (!slow || !fast) throw new Error("no grants");
    d.advance(10);
    d.complete("w2", fast.lease);
    d.advance(1_000);
    d.tick();
    const [backup] = d.grants("w2", 1);
    expect(backup?.lease.shardIndex).toBe(slow.lease.shardIndex);
    if (!backup) throw new Error("no backup");
    expect(d.reject("w1", slow.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: false, quarantined: false, identityQuarantined: false },
    });
    expectInvariants(d);
    expect(d.complete("w2", backup.lease).outcome.ok).toBe(true);
  });

  it("a shard whose results keep being rejected fails its job after maxAttempts", () => {
    const d = new Driver({ ...CFG, quarantineAfterRejections: 0 });
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    const jobId = d.submitOk(ONE);
    for (let i = 0; i < 3; i++) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      d.reject("w1", g.lease, "bad");
    }
    expect(d.job(jobId).state).toBe("failed");
    expect(d.job(jobId).error).toContain("result rejected: bad");
  });

  it("checkCompletion answers like shard-completed without changing anything", () => {
    const { d } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const versionBefore = d.job(g.lease.jobId).version;
    expect(checkCompletion(d.state, asWorkerId("w1"), g.lease, d.nowMs)).toMatchObject({ ok: true });
    expect(checkCompletion(d.state, asWorkerId("w2"), g.lease, d.nowMs)).toMatchObject({
      ok: false,
      error: { kind: "not-lease-holder" },
    });
    expect(checkCompletion(d.state, asWorkerId("nobody"), g.lease, d.nowMs)).toMatchObject({
      ok: false,
      error: { kind: "worker-not-found" },
    });
    expect(d.job(g.lease.jobId).version).toBe(versionBefore);
  });

  it("an identity quarantine survives a restart through the durable model; counts below the limit do not", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 1 });
    unwrap(d.register("w3", [REF_A], "bob").outcome);
    const [g2] = d.grants("w2", 1);
    const [g3] = d.grants("w3", 1);
    if (!g2 || !g3) throw new Error("no grant");
    const model = createDurableModel();
    // Two workers of bob each return a wrong result: the second one quarantines the identity.
    for (const r of [d.reject("w2", g2.lease), d.reject("w3", g3.lease)]) {
      for (const fx of effectsOf(r.effects, "persist")) applyRecord(model, fx.record);
    }
    const snap = JSON.parse(JSON.stringify(toSnapshot(model)));
    const restored = restoreCoreState(CFG, fromSnapshot(snap)).state;
    expect(restored.identities.get("bob")).toMatchObject({ rejectedResults: 2 });
    expect(restored.identities.get("bob")?.quarantinedAtMs).toBeGreaterThan(0);
    expect(restored.identities.has("alice")).toBe(false);
    // A snapshot from before quarantines existed still loads.
    const { quarantined: _, ...old } = snap;
    expect(fromSnapshot(old).quarantined.size).toBe(0);
  });
});
