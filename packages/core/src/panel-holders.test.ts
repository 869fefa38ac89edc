import { describe, expect, it } from "vitest";
import type { Grant, LeaseKey } from "./events.js";
import { asWorkerId } from "./ids.js";
import { addHolder, HOLDERS_PER_PANEL, namePeers, type PanelPeer } from "./panel-holders.js";
import { Driver, matmulInput, unwrap } from "./testing/model.js";
import { CFG } from "./testing/step-fixtures.js";

/** A job of 4×4 one-by-one tiles: with four workers, 2×2 blocks of 2×2 tiles. */
const GRID = matmulInput(4, 2, 4, { tileRows: 1, tileCols: 1 });
const addr = (w: string) => `${w}.example:7100`;
const ids = (peers: readonly PanelPeer[]) => peers.map((p) => p.workerId as string);

describe("panel holders named in grants", () => {
  it("names, for each panel, up to two earlier grantees of the same band that serve peers, never the requester", () => {
    const d = new Driver(CFG);
    // w3 serves no peers; the others do.
    for (const w of ["w0", "w1", "w2", "w3"]) unwrap(d.register(w, undefined, undefined, w === "w3" ? "" : addr(w)).outcome);
    const jobId = d.submitOk(GRID);
    const log: { w: string; row: number; col: number }[] = [];
    const order = ["w0", "w1", "w2", "w3", "w3", "w0", "w1", "w2", "w1", "w1", "w3", "w2", "w0", "w0", "w2", "w3"];
    for (const w of order) {
      const [g] = d.grants(w, 1) as [Grant];
      const row = Math.floor(g.lease.shardIndex / 4);
      const col = g.lease.shardIndex % 4;
      // Expected from the grant log alone: earlier grantees of the band, first grant first, once each.
      const earlier = (same: (e: { row: number; col: number }) => boolean) =>
        [...new Set(log.filter(same).map((e) => e.w))].filter((x) => x !== w && x !== "w3").slice(0, 2);
      expect(ids(g.aPeers)).toEqual(earlier((e) => e.row === row));
      expect(ids(g.bPeers)).toEqual(earlier((e) => e.col === col));
      for (const p of [...g.aPeers, ...g.bPeers])
        expect(p).toEqual({ workerId: p.workerId, address: addr(p.workerId), identity: p.workerId });
      log.push({ w, row, col });
    }
    expect(d.job(jobId).leasedCount).toBe(16);
    // The blocks put w0 and w1 side by side: w1 fetches A's rows 0-1 from w0, and w2, below w0, B's columns.
    expect(log.slice(0, 4).map((e) => [e.row, e.col])).toEqual([
      [0, 0],
      [0, 2],
      [2, 0],
      [2, 2],
    ]);
  });

  it("a forgotten worker is dropped from the holders and named no more", () => {
    const d = new Driver(CFG);
    for (const w of ["w0", "w1"]) unwrap(d.register(w, undefined, undefined, addr(w)).outcome);
    const jobId = d.submitOk(matmulInput(2, 2, 4, { tileRows: 1, tileCols: 1 })); // 2×4 tiles: 2×2 blocks side by side
    const [g0] = d.grants("w0", 1) as [Grant];
    expect(g0.lease.shardIndex).toBe(0);
    unwrap(d.complete("w0", g0.lease).outcome);
    const [g1] = d.grants("w1", 1) as [Grant];
    expect([g1.lease.shardIndex, ids(g1.aPeers)]).toEqual([2, ["w0"]]); // row 0: w0 holds it
    const keep: LeaseKey = g1.lease;
    // w0 falls silent past the worker TTL and is forgotten; w1 keeps heartbeating.
    for (let t = 0; t < 12; t++) {
      d.advance(500);
      d.heartbeat("w1", [keep]);
      d.tick();
    }
    expect(d.state.workers.has(asWorkerId("w0"))).toBe(false);
    const holders = d.job(jobId).panelHolders;
    expect([...(holders?.rows.values() ?? []), ...(holders?.cols.values() ?? [])].flat()).not.toContain("w0");
    expect(d.job(jobId).tileBlocks?.map((b) => b.owner)).toEqual([undefined, "w1"]); // its block is free
    unwrap(d.register("w2", undefined, undefined, addr("w2")).outcome);
    // w2 takes w0's block whole (its owner is gone): row 0 is held by w1 only now
    const [g2] = d.grants("w2", 1) as [Grant];
    expect([g2.lease.shardIndex, ids(g2.aPeers), ids(g2.bPeers)]).toEqual([1, ["w1"], []]);
  });

  it("a job's blocks and holders are dropped when it is cancelled", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w0", undefined, undefined, addr("w0")).outcome);
    const jobId = d.submitOk(GRID);
    expect(d.grants("w0", 1)).toHaveLength(1);
    expect(d.job(jobId).tileBlocks).not.toBeNull();
    expect(d.job(jobId).panelHolders?.rows.get(0)).toEqual(["w0"]);
    unwrap(d.cancel(jobId).outcome);
    expect([d.job(jobId).tileBlocks, d.job(jobId).panelHolders]).toEqual([null, null]);
  });

  it("a shut-out worker is not named", () => {
    const d = new Driver({ ...CFG, quarantineAfterRejections: 1 });
    for (const w of ["w0", "w1"]) unwrap(d.register(w, undefined, `id-${w}`, addr(w)).outcome);
    d.submitOk(matmulInput(2, 2, 4, { tileRows: 1, tileCols: 1 }));
    const [g0] = d.grants("w0", 1) as [Grant];
    unwrap(d.reject("w0", g0.lease).outcome); // w0 is quarantined
    const [g1] = d.grants("w1", 1) as [Grant];
    expect([g1.aPeers, g1.bPeers]).toEqual([[], []]);
  });
});

describe("holder lists", () => {
  const W = (i: number) => asWorkerId(`w${i}`);
  const known = (id: string) => (id === "w9" ? undefined : { address: `${id}:1`, identity: id });

  it("keep the earliest holders, once each, and make room only by dropping gone ones", () => {
    expect(HOLDERS_PER_PANEL).toBe(6);
    const panel = [W(9)];
    for (let i = 0; i < 10; i++) addHolder(panel, W(i % 5), known);
    expect(panel).toEqual([W(9), W(0), W(1), W(2), W(3), W(4)]);
    addHolder(panel, W(5), known); // full: w9 (gone) makes room
    expect(panel).toEqual([W(0), W(1), W(2), W(3), W(4), W(5)]);
    addHolder(panel, W(6), known); // full, nobody gone: not recorded
    expect(panel).toEqual([W(0), W(1), W(2), W(3), W(4), W(5)]);
    expect(ids(namePeers(panel, W(0), known))).toEqual(["w1", "w2"]);
    expect(ids(namePeers([W(9), W(3), W(0), W(4)], W(0), known))).toEqual(["w3", "w4"]);
  });
});
