import { describe, expect, it } from "vitest";
import { asJobId, asWorkerId } from "./ids.js";
import { ShardStatus } from "./state.js";
import { effectsOf, matmulInput, unwrap } from "./testing/model.js";
import { expectInvariants, ONE, setup } from "./testing/step-fixtures.js";

describe("fencing", () => {
  it("every grant gets a strictly larger epoch, re-grants included", () => {
    const { d } = setup(matmulInput(3, 1, 3, { tileRows: 1, tileCols: 1 }));
    const epochs: number[] = [];
    const first = d.grants("w1", 3);
    epochs.push(...first.map((g) => g.lease.epoch));
    for (const g of first) unwrap(d.fail("w1", g.lease, { release: true }).outcome);
    epochs.push(...d.grants("w2", 9).map((g) => g.lease.epoch));
    expect(epochs).toHaveLength(12); // 3 released, then all 9 shards
    for (let i = 1; i < epochs.length; i++) expect(epochs[i]).toBeGreaterThan(epochs[i - 1] as number);
    expect(d.state.nextEpoch).toBe((epochs.at(-1) as number) + 1);
  });

  it("an expired lease is lost; once re-granted the old holder's completion is stale", () => {
    const { d, jobId } = setup(ONE);
    const [old] = d.grants("w1", 1);
    if (!old) throw new Error("no grant");
    d.advance(999);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    d.advance(1); // exactly at expiresAtMs
    const t = d.tick();
    expect(t.outcome).toEqual({ ok: true, value: { expired: 1 } });
    expect(effectsOf(t.effects, "log")[0]).toMatchObject({
      level: "warn",
      msg: "lease expired",
      fields: { jobId, shard: 0, epoch: old.lease.epoch, workerId: "w1" },
    });
    expect(d.state.leases.size).toBe(0);
    expect(d.state.workers.get(asWorkerId("w1"))?.leases.size).toBe(0);
    expectInvariants(d);

    expect(d.complete("w1", old.lease).outcome).toEqual({
      ok: false,
      error: { kind: "lease-lost", jobId, shardIndex: 0, epoch: old.lease.epoch },
    });

    d.advance(1_000); // past any backoff
    const [next] = d.grants("w2", 1);
    if (!next) throw new Error("no re-grant");
    expect(next.lease.shardIndex).toBe(0);
    expect(next.lease.epoch).toBeGreaterThan(old.lease.epoch);
    expect(next.attempt).toBe(1); // a death is not a failed attempt (poison.ts)
    const stale = d.complete("w1", old.lease);
    expect(stale).toEqual({
      outcome: {
        ok: false,
        error: { kind: "stale-fence", jobId, shardIndex: 0, epoch: old.lease.epoch, currentEpoch: next.lease.epoch },
      },
      effects: [],
    });
    expect(d.fail("w1", old.lease).outcome).toMatchObject({ ok: false, error: { kind: "stale-fence" } });
    expect(d.job(jobId).shardStatus[0]).toBe(ShardStatus.leased);
    const good = d.complete("w2", next.lease);
    expect(good.outcome.ok).toBe(true);
    expect(effectsOf(good.effects, "write-tile")).toHaveLength(1);
    // after the new holder's win, the old epoch is still stale
    expect(d.complete("w1", old.lease).outcome).toEqual({
      ok: false,
      error: { kind: "stale-fence", jobId, shardIndex: 0, epoch: old.lease.epoch, currentEpoch: next.lease.epoch },
    });
    expectInvariants(d);
  });

  it("a duplicate completion of the same lease → already-completed, without effects", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
    const dup = d.complete("w1", g.lease);
    expect(dup).toEqual({
      outcome: { ok: false, error: { kind: "already-completed", jobId, shardIndex: 0, epoch: g.lease.epoch } },
      effects: [],
    });
    expect(d.job(jobId).doneCount).toBe(1);
    expect(d.fail("w1", g.lease).outcome).toMatchObject({ ok: false, error: { kind: "already-completed" } });
  });

  it("a completion from another worker → not-lease-holder, and the holder can still complete", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const r = d.complete("w2", g.lease);
    expect(r).toEqual({
      outcome: { ok: false, error: { kind: "not-lease-holder", jobId, shardIndex: 0, epoch: g.lease.epoch, workerId: "w2" } },
      effects: [],
    });
    expect(d.fail("w2", g.lease).outcome).toMatchObject({ ok: false, error: { kind: "not-lease-holder" } });
    expect(d.state.leases.get(g.lease.epoch)?.workerId).toBe("w1");
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
  });

  it("a wrong result size → invalid-result, and the lease stays valid", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const need = 2 * 4 * 8;
    for (const size of [0, need - 8, need + 8]) {
      const r = d.complete("w1", g.lease, size);
      expect(r).toEqual({
        outcome: {
          ok: false,
          error: { kind: "invalid-result", jobId, shardIndex: 0, message: `result is ${size} bytes; the tile needs ${need}` },
        },
        effects: [],
      });
    }
    expect(d.state.leases.has(g.lease.epoch)).toBe(true);
    expect(d.job(jobId).shardStatus[0]).toBe(ShardStatus.leased);
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)[0]?.state).toBe("active");
    expect(d.complete("w1", g.lease, need).outcome.ok).toBe(true);
  });

  it("reports about unknown jobs or out-of-range shards → job-not-found", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    for (const lease of [
      { ...g.lease, jobId: asJobId("ghost") },
      { ...g.lease, shardIndex: 4 },
      { ...g.lease, shardIndex: -1 },
      { ...g.lease, shardIndex: 0.5 },
    ]) {
      expect(d.complete("w1", lease, 8).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: lease.jobId } });
    }
    expect(d.job(jobId).doneCount).toBe(0);
  });

  it("a future (never granted) epoch is not accepted", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(d.complete("w1", { ...g.lease, epoch: g.lease.epoch + 100 }).outcome).toEqual({
      ok: false,
      error: { kind: "lease-lost", jobId, shardIndex: 0, epoch: g.lease.epoch + 100 },
    });
    expect(d.complete("w1", { jobId, shardIndex: 1, epoch: 1 }).outcome).toMatchObject({
      ok: false,
      error: { kind: "lease-lost" },
    });
  });
});

describe("heartbeat", () => {
  it("renews: a lease heart-beaten before expiry survives a tick past its original expiry", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(900);
    const hb = d.heartbeat("w1", [g.lease]);
    expect(hb).toEqual({ outcome: { ok: true, value: [{ lease: g.lease, state: "active", ttlMs: 1_000 }] }, effects: [] });
    expect(d.state.leases.get(g.lease.epoch)?.expiresAtMs).toBe(d.nowMs + 1_000);
    d.advance(200); // 1100 ms after the grant
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
  });

  it("without a heartbeat the same tick expires it", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_100);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 1 } });
  });

  it("reports cancelled after the job is cancelled", () => {
    const { d, jobId } = setup();
    const gs = d.grants("w1", 2);
    unwrap(d.cancel(jobId).outcome);
    const checks = unwrap(
      d.heartbeat(
        "w1",
        gs.map((g) => g.lease),
      ).outcome,
    );
    expect(checks).toEqual(gs.map((g) => ({ lease: g.lease, state: "cancelled", ttlMs: 0 })));
  });

  it("reports lost after expiry, and after a re-grant", () => {
    const { d } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_000);
    d.tick();
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    d.advance(1_000);
    const [again] = d.grants("w2", 1);
    if (!again) throw new Error("no re-grant");
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    // the stale heartbeat must not renew the new holder's lease
    expect(d.state.leases.get(again.lease.epoch)?.expiresAtMs).toBe(d.nowMs + 1_000);
    expect(d.state.leases.get(g.lease.epoch)).toBeUndefined();
  });

  it("reports cancelled when another epoch already completed the shard, or this one did", () => {
    const { d } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_000);
    d.tick();
    d.advance(1_000);
    const [again] = d.grants("w2", 1);
    if (!again) throw new Error("no re-grant");
    unwrap(d.complete("w2", again.lease).outcome);
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "cancelled", ttlMs: 0 }]);
    expect(unwrap(d.heartbeat("w2", [again.lease]).outcome)).toEqual([{ lease: again.lease, state: "cancelled", ttlMs: 0 }]);
  });

  it("reports lost for another worker's lease and does not renew it", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(500);
    expect(unwrap(d.heartbeat("w2", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    expect(d.state.leases.get(g.lease.epoch)?.expiresAtMs).toBe(d.nowMs - 500 + 1_000);
  });

  it("answers per lease, in order, for a mixed batch", () => {
    const { d, jobId } = setup();
    const [a, b, c] = d.grants("w1", 3);
    if (!a || !b || !c) throw new Error("no grants");
    unwrap(d.complete("w1", b.lease).outcome);
    unwrap(d.fail("w1", c.lease, { release: true }).outcome);
    const checks = unwrap(
      d.heartbeat("w1", [
        a.lease,
        b.lease,
        c.lease,
        { jobId: asJobId("x"), shardIndex: 0, epoch: 1 },
        { jobId, shardIndex: 9, epoch: 1 },
      ]).outcome,
    );
    expect(checks.map((x) => x.state)).toEqual(["active", "cancelled", "lost", "lost", "lost"]);
  });
});
