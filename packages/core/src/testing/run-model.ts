// One property run of the core state machine: a core state, a few worker processes
// with a model of the leases each believes it holds, and a shell that answers
// finalize-result. Every step is checked (run-checks.ts).
import { expect } from "vitest";
import type { CoreEvent, LeaseKey, OutcomeMap, StepResult } from "../events.js";
import { asWorkerId, type ClientId, type JobId, type WorkerId } from "../ids.js";
import { tileBounds } from "../plan.js";
import type { MatMulSpecInput } from "../spec.js";
import { isTerminal, type KernelOffer } from "../state.js";
import { C2, Driver } from "./model.js";
import { type Action, CFG, CLIENTS, KEYS, OFFERS, type RunInput, SLOTS, SPECS } from "./run-actions.js";
import { StepChecks, shardKey } from "./run-checks.js";

/** An `expect` that accepts everything, for runs judged only by replay (determinism). */
const lenient: typeof expect = new Proxy(() => undefined, {
  get: () => lenient,
  apply: () => lenient,
}) as unknown as typeof expect;

/**
 * One simulated run: a core state, a few worker processes with a model of the
 * leases each believes it holds, and a shell that replies to finalize-result.
 * Every step is checked against the invariants below.
 */
export class Run {
  readonly d = new Driver(CFG);
  /** `check: false` only records (the determinism property judges the run by replay alone). */
  private readonly x: typeof expect;
  constructor(private readonly check = true) {
    this.x = check ? expect : lenient;
    this.checks = new StepChecks(this.x);
  }
  readonly results: StepResult<unknown>[] = [];
  private readonly slots: (WorkerId | undefined)[] = Array.from({ length: SLOTS }, () => undefined);
  private regSeq = 0;
  /** What each live worker process believes it holds. */
  private readonly held = new Map<WorkerId, LeaseKey[]>();
  /** Every lease ever granted, with its grantee (for stale and duplicate reports). */
  private readonly granted: { key: LeaseKey; worker: WorkerId }[] = [];
  private readonly jobs: JobId[] = [];
  /** Observations over the whole run, checked after every step. */
  private readonly checks: StepChecks;
  /** Builds (kernel@fingerprint) that ran each job's grants: a job never mixes builds. */
  private readonly buildsPerJob = new Map<string, Set<string>>();
  private lastEpoch = 0;

  private apply<E extends CoreEvent>(e: E): StepResult<OutcomeMap[E["type"]]> {
    // What the core held before a completion, to judge whether accepting it was right.
    const before = this.checks.before(this.d.state, e);
    const r = this.d.apply(e);
    this.results.push(r);
    if (this.check) this.checks.after(this.d.state, e, r, before);
    return r;
  }

  private holdersList(): { key: LeaseKey; worker: WorkerId }[] {
    const out: { key: LeaseKey; worker: WorkerId }[] = [];
    for (const [worker, keys] of this.held) for (const key of keys) out.push({ key, worker });
    return out;
  }

  private drop(worker: WorkerId, key: LeaseKey): void {
    const keys = this.held.get(worker);
    if (!keys) return;
    const i = keys.findIndex((k) => k.epoch === key.epoch && k.jobId === key.jobId && k.shardIndex === key.shardIndex);
    if (i >= 0) keys.splice(i, 1);
  }

  private workerIn(slot: number): WorkerId {
    return this.slots[slot] ?? asWorkerId(`ghost-${slot}`);
  }

  /** A report target: a held lease, or (stale / nothing held) any lease ever granted. */
  private pickLease(pick: number, stale: boolean): { key: LeaseKey; worker: WorkerId } | undefined {
    const pool = stale ? this.granted : this.holdersList();
    const from = pool.length > 0 ? pool : this.granted;
    return from.length > 0 ? from[pick % from.length] : undefined;
  }

  do(a: Action): void {
    const s = this.d.state;
    this.d.advance(a.dt);
    switch (a.t) {
      case "submit": {
        const clientId = CLIENTS[a.client] as ClientId;
        const r = this.apply({
          ...this.nextSubmit(),
          clientId,
          idempotencyKey: KEYS[a.key] ?? "",
          spec: SPECS[a.spec] as MatMulSpecInput,
          retentionMs: a.retention ?? 0,
        });
        if ((a.retention ?? 0) > (CFG.maxRetentionMs as number)) this.x(r.outcome.ok).toBe(false);
        if (r.outcome.ok) {
          const { jobId, created } = r.outcome.value;
          this.x(s.jobs.get(jobId)?.clientId).toBe(clientId);
          if (created) this.jobs.push(jobId);
          else this.x(r.effects).toEqual([]);
        }
        return;
      }
      case "register": {
        const id = asWorkerId(`w${a.slot}-${++this.regSeq}`);
        const kernels = OFFERS[a.offer] as readonly KernelOffer[];
        const r = this.apply({
          type: "worker-registered",
          nowMs: this.d.nowMs,
          workerId: id,
          name: id,
          kernels,
          threads: 1,
          peerAddress: "",
        });
        if (!r.outcome.ok && kernels.some((k) => k.fingerprint === "")) {
          // refusing a build without a fingerprint is acceptable
          this.x(r.outcome.error.kind).toBe("invalid-spec");
          return;
        }
        this.x(r.outcome).toEqual({ ok: true, value: { workerId: id } });
        const old = this.slots[a.slot];
        if (old !== undefined) this.held.delete(old); // the old process is gone; its leases will expire
        this.slots[a.slot] = id;
        this.held.set(id, []);
        return;
      }
      case "acquire": {
        const workerId = this.workerIn(a.slot);
        const r = this.apply({ type: "shards-requested", nowMs: this.d.nowMs, workerId, maxShards: a.max });
        if (!r.outcome.ok) {
          const kind = r.outcome.error.kind;
          this.x(["worker-not-found", "draining"]).toContain(kind);
          if (kind === "draining") this.x(s.draining).toBe(true);
          if (kind === "worker-not-found") {
            this.held.delete(workerId);
            this.slots[a.slot] = undefined;
          }
          return;
        }
        const grants = r.outcome.value;
        this.x(grants.length).toBeLessThanOrEqual(a.max);
        const worker = s.workers.get(workerId);
        for (const g of grants) {
          this.x(g.lease.epoch, "epochs strictly increase across grants").toBeGreaterThan(this.lastEpoch);
          this.lastEpoch = g.lease.epoch;
          const job = s.jobs.get(g.lease.jobId);
          this.x(job && !isTerminal(job.state)).toBe(true);
          if (!job) continue;
          this.x(g.bounds).toEqual(tileBounds(job.plan, g.lease.shardIndex));
          this.x(g.attempt).toBeGreaterThanOrEqual(1);
          this.x(g.attempt).toBeLessThanOrEqual(CFG.maxAttempts as number);
          // the worker runs exactly the pinned build
          this.x(worker?.kernels.some((k) => k.name === job.kernel && k.fingerprint === job.fingerprint)).toBe(true);
          this.x(g.kernel).toBe(job.kernel);
          const offer = worker?.kernels.find((o) => o.name === g.kernel && o.fingerprint === job.fingerprint);
          const used = this.buildsPerJob.get(job.id) ?? new Set<string>();
          used.add(`${g.kernel}@${offer?.fingerprint}`);
          this.buildsPerJob.set(job.id, used);
          this.x([...used], `job ${job.id} mixes builds`).toHaveLength(1);
          const k = shardKey(g.lease.jobId, g.lease.shardIndex);
          this.x(this.checks.accepted.has(k), `granted ${k} after it was accepted`).toBe(false);
          this.checks.maxGranted.set(k, g.lease.epoch);
          this.granted.push({ key: g.lease, worker: workerId });
          this.held.get(workerId)?.push(g.lease);
        }
        return;
      }
      case "heartbeat": {
        const workerId = this.workerIn(a.slot);
        const mine = this.held.get(workerId) ?? [];
        const leases = mine.filter((_, i) => (a.mask >> i) & 1);
        if (a.stale) {
          const old = this.granted.filter((g) => g.worker === workerId);
          const pick = old[a.mask % Math.max(1, old.length)];
          if (pick) leases.push(pick.key);
        }
        const r = this.apply({ type: "heartbeat-received", nowMs: this.d.nowMs, workerId, leases });
        if (!r.outcome.ok) {
          this.x(r.outcome.error.kind).toBe("worker-not-found");
          return;
        }
        this.x(r.outcome.value).toHaveLength(leases.length);
        for (const check of r.outcome.value) {
          if (check.state === "active") {
            const lease = s.leases.get(check.lease.epoch);
            this.x(lease?.workerId).toBe(workerId);
            this.x(lease?.expiresAtMs).toBe(this.d.nowMs + (CFG.leaseTtlMs as number));
          } else {
            // Not active: the worker does not hold it, or it expired and awaits the next tick.
            const held = s.leases.get(check.lease.epoch);
            if (held?.workerId === workerId) this.x(held.expiresAtMs <= this.d.nowMs).toBe(true);
            this.drop(workerId, check.lease);
          }
        }
        return;
      }
      case "complete": {
        const target = this.pickLease(a.pick, a.mode === "stale");
        if (!target) return;
        const { key, worker } = target;
        let sender = worker;
        if (a.mode === "wrong-worker") {
          sender = this.slots.find((w) => w !== undefined && w !== worker) ?? asWorkerId("ghost-x");
        }
        const correct = this.d.sizeOf(key);
        const size = a.mode === "wrong-size" ? correct + 8 : correct;
        const r = this.apply({ type: "shard-completed", nowMs: this.d.nowMs, workerId: sender, lease: key, sizeBytes: size });
        if (a.mode === "wrong-worker") {
          this.x(r.outcome.ok).toBe(false);
          return;
        }
        if (!r.outcome.ok && r.outcome.error.kind === "invalid-result") {
          this.x(s.leases.get(key.epoch)?.workerId, "invalid-result keeps the lease").toBe(sender);
          return;
        }
        if (a.mode === "wrong-size") this.x(r.outcome.ok).toBe(false);
        this.drop(sender, key);
        return;
      }
      case "fail": {
        const target = this.pickLease(a.pick, a.stale);
        if (!target) return;
        const r = this.apply({
          type: "shard-failed",
          nowMs: this.d.nowMs,
          workerId: target.worker,
          lease: target.key,
          error: "e",
          release: a.release,
          jitter: a.jitter,
        });
        if (r.outcome.ok) this.x(s.leases.has(target.key.epoch)).toBe(false);
        this.drop(target.worker, target.key);
        return;
      }
      case "cancel": {
        if (this.jobs.length === 0) return;
        const jobId = this.jobs[a.job % this.jobs.length] as JobId;
        const owner = s.jobs.get(jobId)?.clientId as ClientId;
        const clientId = a.owner ? owner : ((CLIENTS.find((c) => c !== owner) ?? C2) as ClientId);
        const r = this.apply({ type: "job-cancel-requested", nowMs: this.d.nowMs, clientId, jobId, reason: "" });
        if (!a.owner) this.x(r.outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
        if (r.outcome.ok) {
          this.x(s.jobs.get(jobId)?.state).toBe("cancelled");
          for (const lease of s.leases.values()) this.x(lease.jobId).not.toBe(jobId);
        }
        return;
      }
      case "delete": {
        if (this.jobs.length === 0) return;
        const jobId = this.jobs[a.job % this.jobs.length] as JobId;
        const owner = s.jobs.get(jobId)?.clientId;
        const clientId = a.owner && owner ? owner : ((CLIENTS.find((c) => c !== owner) ?? C2) as ClientId);
        const r = this.apply({ type: "job-delete-requested", nowMs: this.d.nowMs, clientId, jobId });
        // Another client's job, or one deleted already, answers exactly like a missing one.
        if (!a.owner || !owner) this.x(r.outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
        else this.x(r.outcome.ok).toBe(true);
        return;
      }
      case "tick": {
        const r = this.apply({ type: "ticked", nowMs: this.d.nowMs, jitter: a.jitter });
        this.x(r.outcome.ok).toBe(true);
        for (const lease of s.leases.values()) this.x(lease.expiresAtMs).toBeGreaterThan(this.d.nowMs);
        return;
      }
      case "shell": {
        const jobId = this.checks.pendingFinal.shift();
        if (jobId === undefined) return;
        this.reply(jobId, a.ok);
        return;
      }
      case "drain": {
        this.apply({ type: "drain-started", nowMs: this.d.nowMs });
        return;
      }
    }
  }

  private submitSeq = 0;
  private nextSubmit() {
    return { type: "job-submitted" as const, nowMs: this.d.nowMs, jobId: `job-${++this.submitSeq}` as JobId };
  }

  private reply(jobId: JobId, ok: boolean): void {
    if (ok) {
      this.apply({ type: "result-finalized", nowMs: this.d.nowMs, jobId, resultBlobId: "c".repeat(64) });
      const job = this.d.state.jobs.get(jobId);
      // Either it succeeded now, or it had been cancelled/failed (or deleted) meanwhile.
      this.x(job ? isTerminal(job.state) : this.checks.deleted.has(jobId)).toBe(true);
    } else {
      this.apply({ type: "result-failed", nowMs: this.d.nowMs, jobId, message: "disk full" });
    }
  }

  /** The shell answers every outstanding finalize-result. */
  flush(): void {
    for (let jobId = this.checks.pendingFinal.shift(); jobId !== undefined; jobId = this.checks.pendingFinal.shift())
      this.reply(jobId, true);
  }
}

/** Runs `input` from a fresh state; `check: false` only records (for replay). */
export function execute({ builds, jobs, actions, drainAt }: RunInput, check = true): Run {
  const run = new Run(check);
  builds.forEach((offer, slot) => {
    run.do({ t: "register", dt: 0, slot, offer });
  });
  for (const spec of jobs) run.do({ t: "submit", dt: 0, spec, client: 0, key: 0 });
  actions.forEach((a, i) => {
    if (drainAt === i) run.do({ t: "drain", dt: 0 });
    run.do(a);
  });
  run.flush();
  return run;
}
