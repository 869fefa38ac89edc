// The simulated worker processes: they register, long-poll for leases, "compute" each tile
// with the naive kernel of their build, heartbeat every TTL/3, complete (retrying until their
// own view of the lease runs out), sometimes fail or hand a lease back, register again on
// worker-not-found, and stop for good once quarantined, like the real worker. A corrupting
// slot changes some of its tiles; crashes and pauses come from the fault schedule.
import type { LeaseKey, WorkerId } from "@dce/core";
import type { Fingerprint } from "../matrix.js";
import type { Req, SimEvent, SimGrant, SimLeaseCheck, WireError } from "./messages.js";
import { leaseKeyOf } from "./messages.js";
import { onComputed } from "./worker-compute.js";
import type { World } from "./world.js";

export interface Run {
  readonly key: string;
  readonly lease: LeaseKey;
  readonly grant: SimGrant;
  /** The worker's own view of when the lease runs out (renewed by ACTIVE heartbeat answers). */
  expiresAtMs: number;
  tile: Float64Array | undefined;
  /** A completion waits for the worker to register again (NOT_FOUND answered). */
  waitingForRegistration: boolean;
}

interface Pending {
  readonly req: Req;
  readonly sentAtMs: number;
  /** The worker id the request was sent under. */
  readonly workerId: WorkerId | undefined;
}

export interface SimWorker {
  readonly slot: number;
  /** It (or its identity) was quarantined: like the real worker, it stops for good. */
  quarantined: boolean;
  readonly build: Fingerprint;
  readonly threads: number;
  inc: number;
  up: boolean;
  pausedUntilMs: number;
  id: WorkerId | undefined;
  registering: boolean;
  polling: boolean;
  readonly runs: Map<string, Run>;
  readonly pending: Map<number, Pending>;
}

export class SimWorkers {
  readonly all: SimWorker[];

  constructor(private readonly world: World) {
    this.all = world.sc.workers.map((w, slot) => ({
      slot,
      quarantined: false,
      build: w.build,
      threads: w.threads,
      inc: 0,
      up: false,
      pausedUntilMs: 0,
      id: undefined,
      registering: false,
      polling: false,
      runs: new Map(),
      pending: new Map(),
    }));
  }

  /** The worker an event is for, if that process is still alive; paused workers get it later. */
  workerFor(slot: number, inc: number, e: SimEvent): SimWorker | undefined {
    const w = this.all[slot];
    if (!w?.up || w.inc !== inc) return undefined;
    if (w.pausedUntilMs > this.world.nowMs) {
      // SIGSTOP: timers and sockets fire after the pause, in their original order.
      this.world.q.push(w.pausedUntilMs, e);
      return undefined;
    }
    return w;
  }

  send(w: SimWorker, req: Req, timeoutMs: number): number {
    const world = this.world;
    const reqId = ++world.reqSeq;
    const workerId = req.t === "register" || req.t === "submit" ? undefined : req.workerId;
    w.pending.set(reqId, { req, sentAtMs: world.nowMs, workerId });
    world.net.transmit(
      { k: "to-coord", env: { reqId, from: { kind: "worker", slot: w.slot, inc: w.inc }, req } },
      `w${w.slot} ${req.t} #${reqId}`,
    );
    world.at(timeoutMs, { k: "worker-timeout", slot: w.slot, inc: w.inc, reqId });
    return reqId;
  }

  start(w: SimWorker): void {
    if (w.up || w.quarantined) return;
    w.inc++;
    w.up = true;
    w.pausedUntilMs = 0;
    w.id = undefined;
    w.registering = false;
    w.polling = false;
    w.runs.clear();
    w.pending.clear();
    if (this.world.trace) this.world.log(`worker w${w.slot} starts (process ${w.inc}, ${w.build}, ${w.threads} threads)`);
    this.register(w);
    this.world.at(this.world.sc.heartbeatMs, { k: "worker-heartbeat", slot: w.slot, inc: w.inc });
  }

  register(w: SimWorker): void {
    if (w.registering) return;
    w.registering = true;
    const identity = this.world.quarantine.identityOf(`w${w.slot}.0` as WorkerId);
    this.send(w, { t: "register", build: w.build, threads: w.threads, identity }, this.world.sc.rpcTimeoutMs);
  }

  /**
   * NOT_FOUND for the worker id: the coordinator forgot us (restart or worker TTL), so
   * register again. Returns true if a newer registration already exists (retry at once).
   */
  reregister(w: SimWorker, staleId: WorkerId | undefined): boolean {
    if (w.id !== undefined && w.id !== staleId) return true;
    if (w.id !== undefined) this.world.stats.reregistrations++;
    w.id = undefined;
    this.register(w);
    return false;
  }

  /** Refused as quarantined: like the real worker, this one stops and does not come back. */
  quarantineStop(w: SimWorker, error: WireError): void {
    const wrong = this.world.quarantine.onRefused(w.slot, {
      kind: "worker-quarantined",
      ...(error.workerId === undefined ? {} : { workerId: error.workerId }),
    } as Parameters<World["quarantine"]["onRefused"]>[1]);
    if (wrong !== undefined) this.world.oracle.fail(wrong);
    if (this.world.trace) this.world.log(`worker w${w.slot} quarantined: stops`);
    w.quarantined = true;
    this.#stop(w);
  }

  poll(w: SimWorker): void {
    if (!w.up || w.id === undefined || w.polling) return;
    const free = w.threads - w.runs.size;
    if (free <= 0) return;
    w.polling = true;
    const sc = this.world.sc;
    this.send(w, { t: "acquire", workerId: w.id, maxShards: free, waitMs: sc.longPollMs }, sc.longPollMs + sc.rpcTimeoutMs);
  }

  sendComplete(w: SimWorker, run: Run): void {
    if (w.id === undefined || !run.tile) {
      run.waitingForRegistration = true;
      this.register(w);
      return;
    }
    run.waitingForRegistration = false;
    this.send(w, { t: "complete", workerId: w.id, lease: run.lease, tile: run.tile }, this.world.sc.rpcTimeoutMs);
  }

  endRun(w: SimWorker, key: string): void {
    if (w.runs.delete(key)) this.poll(w);
  }

  /** Reports the run failed (or handed back) and frees its thread. */
  failRun(w: SimWorker, run: Run, error: string, release: boolean): void {
    if (w.id !== undefined)
      this.send(w, { t: "fail", workerId: w.id, lease: run.lease, error, release }, this.world.sc.rpcTimeoutMs);
    this.endRun(w, run.key);
  }

  /** A kernel finished the tile of `key` (see worker-compute.ts). */
  onComputed(w: SimWorker, key: string): void {
    onComputed(this.world, this, w, key);
  }

  onReply(w: SimWorker, reqId: number, outcome: import("./messages.js").Outcome): void {
    const p = w.pending.get(reqId);
    if (!p) return; // timed out already, or a duplicate: the RPC layer drops it
    w.pending.delete(reqId);
    const req = p.req;
    const err = outcome.ok ? undefined : outcome.error;
    const notFound = err?.kind === "worker-not-found";
    switch (req.t) {
      case "register": {
        w.registering = false;
        if (err?.kind === "worker-quarantined") {
          this.quarantineStop(w, err);
          return;
        }
        if (!outcome.ok) {
          this.world.at(50, { k: "worker-register", slot: w.slot, inc: w.inc });
          return;
        }
        w.id = (outcome.value as { workerId: WorkerId }).workerId;
        for (const run of w.runs.values()) if (run.waitingForRegistration) this.sendComplete(w, run);
        this.poll(w);
        return;
      }
      case "acquire": {
        w.polling = false;
        if (notFound) {
          if (this.reregister(w, p.workerId)) this.poll(w);
          return;
        }
        if (err?.kind === "worker-quarantined") {
          this.quarantineStop(w, err);
          return;
        }
        if (!outcome.ok) {
          this.world.at(50, { k: "worker-poll", slot: w.slot, inc: w.inc });
          return;
        }
        this.#onGrants(w, outcome.value as SimGrant[]);
        return;
      }
      case "heartbeat": {
        if (notFound) {
          this.reregister(w, p.workerId);
          return;
        }
        if (!outcome.ok) return;
        for (const ch of outcome.value as SimLeaseCheck[]) {
          const key = leaseKeyOf(ch.lease);
          const run = w.runs.get(key);
          if (!run) continue;
          if (ch.state === "active") run.expiresAtMs = p.sentAtMs + ch.ttlMs;
          else this.endRun(w, key); // the kernel is aborted; its result is dropped
        }
        return;
      }
      case "complete": {
        const key = leaseKeyOf(req.lease);
        const run = w.runs.get(key);
        if (!run) return;
        if (notFound) {
          // Register again, then retry under the new id (the real worker does the same).
          run.waitingForRegistration = true;
          if (this.reregister(w, p.workerId)) this.sendComplete(w, run);
          return;
        }
        this.endRun(w, key); // accepted, ALREADY_EXISTS or refused: either way the run is over
        return;
      }
      case "fail":
      case "submit":
        return;
    }
  }

  #onGrants(w: SimWorker, grants: SimGrant[]): void {
    const { world } = this;
    const { sc, rng, stats } = world;
    for (const g of grants) {
      const key = leaseKeyOf(g.lease);
      if (w.runs.size >= w.threads || w.id === undefined) {
        // More grants than idle threads (a late reply after a re-poll): hand the extra back.
        stats.releases++;
        if (w.id !== undefined)
          this.send(w, { t: "fail", workerId: w.id, lease: g.lease, error: "no idle thread", release: true }, sc.rpcTimeoutMs);
        continue;
      }
      w.runs.set(key, {
        key,
        lease: g.lease,
        grant: g,
        expiresAtMs: world.nowMs + g.ttlMs,
        tile: undefined,
        waitingForRegistration: false,
      });
      const [lo, hi] = sc.computeMs;
      let ms = rng.int(lo, hi);
      if (!world.calm && rng.chance(sc.slowComputeP)) ms += rng.int(hi, sc.ttlMs * 3);
      world.at(ms, { k: "worker-computed", slot: w.slot, inc: w.inc, key });
    }
    if (grants.length === 0) world.at(rng.int(1, 20), { k: "worker-poll", slot: w.slot, inc: w.inc });
    else this.poll(w);
  }

  onTimeout(w: SimWorker, reqId: number): void {
    const p = w.pending.get(reqId);
    if (!p) return;
    w.pending.delete(reqId);
    const req = p.req;
    switch (req.t) {
      case "register":
        w.registering = false;
        this.register(w);
        return;
      case "acquire":
        w.polling = false;
        this.poll(w);
        return;
      case "complete": {
        const key = leaseKeyOf(req.lease);
        const run = w.runs.get(key);
        if (!run) return;
        // Retrying is safe (a repeat is ALREADY_EXISTS); it is pointless once the lease has surely run out.
        if (this.world.nowMs < run.expiresAtMs) this.sendComplete(w, run);
        else this.endRun(w, key);
        return;
      }
      default:
        return;
    }
  }

  onHeartbeatTimer(w: SimWorker): void {
    const sc = this.world.sc;
    this.world.at(sc.heartbeatMs, { k: "worker-heartbeat", slot: w.slot, inc: w.inc });
    if (w.id === undefined) return;
    const leases = [...w.runs.values()].map((r) => r.lease);
    this.send(w, { t: "heartbeat", workerId: w.id, leases }, Math.max(sc.heartbeatMs, 100));
  }

  /** The process of `slot` dies (its runs and calls are lost); it comes back after `comebackMs`, if given. */
  crash(slot: number, comebackMs: number | undefined): void {
    const w = this.all[slot];
    if (!w?.up) return;
    this.world.stats.workerCrashes++;
    if (this.world.trace) this.world.log(`WORKER w${w.slot} CRASH (${w.runs.size} runs lost)`);
    this.#stop(w);
    if (comebackMs !== undefined) this.world.at(comebackMs, { k: "worker-start", slot: w.slot });
  }

  /** The process of `slot` stops for `pauseMs` (SIGSTOP): its timers and sockets fire afterwards. */
  pause(slot: number, pauseMs: number): void {
    const w = this.all[slot];
    const now = this.world.nowMs;
    if (!w?.up || w.pausedUntilMs > now) return;
    this.world.stats.workerPauses++;
    w.pausedUntilMs = now + pauseMs;
    if (this.world.trace) this.world.log(`WORKER w${w.slot} PAUSED until t=${w.pausedUntilMs}`);
  }

  #stop(w: SimWorker): void {
    w.up = false;
    w.inc++;
    w.runs.clear();
    w.pending.clear();
  }
}
