import { describe, expect, it } from "vitest";
import { asWorkerId } from "./ids.js";
import { Driver, effectsOf, unwrap } from "./testing/model.js";
import { CFG, ONE, setup } from "./testing/step-fixtures.js";

describe("workers", () => {
  it("unknown worker ids → worker-not-found for every worker request", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const ghost = "ghost";
    const nf = { ok: false, error: { kind: "worker-not-found", workerId: ghost } };
    expect(d.acquire(ghost, 1).outcome).toEqual(nf);
    expect(d.heartbeat(ghost, [g.lease]).outcome).toEqual(nf);
    expect(d.complete(ghost, g.lease).outcome).toEqual(nf);
    expect(d.fail(ghost, g.lease).outcome).toEqual(nf);
    expect(d.job(jobId).doneCount).toBe(0);
    expect(d.state.leases.get(g.lease.epoch)?.workerId).toBe("w1");
  });

  it("registering a used worker id is refused", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1").outcome);
    expect(d.register("w1").outcome).toEqual({
      ok: false,
      error: { kind: "invalid-spec", message: "worker id w1 is already in use" },
    });
  });

  it("ticked forgets silent workers with no leases after workerTtlMs", () => {
    const d = new Driver(CFG);
    d.register("idle");
    d.register("busy");
    d.register("chatty");
    d.submitOk(ONE);
    d.advance(4_000);
    d.heartbeat("chatty", []);
    d.advance(1_000); // idle: exactly workerTtlMs silent → kept
    expect(d.tick().effects.filter((f) => f.type === "log")).toEqual([]);
    d.advance(1);
    const t = d.tick();
    expect(effectsOf(t.effects, "log")).toEqual([
      { type: "log", level: "info", msg: "worker forgotten", fields: { workerId: "idle", name: "idle" } },
      { type: "log", level: "info", msg: "worker forgotten", fields: { workerId: "busy", name: "busy" } },
    ]);
    expect([...d.state.workers.keys()]).toEqual(["chatty"]);
    expect(d.acquire("idle", 1).outcome).toEqual({ ok: false, error: { kind: "worker-not-found", workerId: "idle" } });
    // a forgotten id may register again
    expect(d.register("idle").outcome.ok).toBe(true);
  });

  it("a silent worker that still holds a lease is not forgotten", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 60_000 });
    d.register("w");
    d.submitOk(ONE);
    const [g] = d.grants("w", 1);
    if (!g) throw new Error("no grant");
    d.advance(10_000);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    expect(d.state.workers.has(asWorkerId("w"))).toBe(true);
    expect(d.complete("w", g.lease).outcome.ok).toBe(true);
  });

  it("acquire refreshes lastSeen", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.advance(4_000);
    d.acquire("w", 0);
    d.advance(4_000);
    d.tick();
    expect(d.state.workers.has(asWorkerId("w"))).toBe(true);
  });
});
