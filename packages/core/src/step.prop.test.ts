// Property tests of the core state machine.
//
// Each property logs its seed on failure (fast-check prints `{ seed, path }` together
// with the shrunk counterexample). To replay one, add it to the property's options:
//   test.prop([...], { numRuns: 300, seed: <seed>, path: "<path>", endOnFailure: true })
// The shrunk action list is the reproduction; `Run.d.events` holds the concrete events.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import type { CoreEvent, LeaseKey, OutcomeMap, StepResult } from "./events.js";
import type { ClientId, JobId, WorkerId } from "./ids.js";
import { asWorkerId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import { type TileBounds, tileBounds, tileSizeBytes } from "./plan.js";
import type { MatMulSpecInput } from "./spec.js";
import { type CoreConfig, isTerminal, type JobStateName, type KernelOffer } from "./state.js";
import { C1, C2, Driver, effectsOf, FOREIGN, matmulInput, REF_A, REF_B, replay, unwrap } from "./testing/model.js";
import { viewJob } from "./views.js";

const CFG: Partial<CoreConfig> = {
  leaseTtlMs: 300,
  maxAttempts: 3,
  retryBaseMs: 20,
  retryMaxMs: 100,
  workerTtlMs: 2_000,
  maxActiveJobs: 4,
};

/** Small jobs: 4, 1, 8 and 1 shards; one names its kernel. */
const SPECS: readonly MatMulSpecInput[] = [
  matmulInput(3, 2, 3, { tileRows: 2, tileCols: 2 }),
  matmulInput(1, 1, 1),
  matmulInput(4, 1, 5, { tileRows: 1, tileCols: 3, kernel: "reference" }),
  matmulInput(2, 3, 2),
];
const CLIENTS: readonly ClientId[] = [C1, C2];
const KEYS = ["", "k1", "k2"] as const;
/**
 * Worker builds: two fingerprints of the reference kernel, one listing a foreign kernel first,
 * one with nothing usable, and one with an empty fingerprint (proto3's default; the shell passes it through).
 */
const OFFERS: readonly (readonly KernelOffer[])[] = [
  [REF_A],
  [REF_B],
  [FOREIGN, REF_A],
  [FOREIGN],
  [{ name: "reference", fingerprint: "" }],
];
const SLOTS = 3;

// ---------------------------------------------------------------------------
// Actions: abstract moves, turned into concrete events against the run's state.
// ---------------------------------------------------------------------------

type Action =
  | { t: "submit"; dt: number; spec: number; client: number; key: number }
  | { t: "register"; dt: number; slot: number; offer: number }
  | { t: "acquire"; dt: number; slot: number; max: number }
  | { t: "heartbeat"; dt: number; slot: number; mask: number; stale: boolean }
  | { t: "complete"; dt: number; pick: number; mode: "holder" | "wrong-size" | "wrong-worker" | "stale" }
  | { t: "fail"; dt: number; pick: number; release: boolean; jitter: number; stale: boolean }
  | { t: "cancel"; dt: number; job: number; owner: boolean }
  | { t: "tick"; dt: number; jitter: number }
  | { t: "shell"; dt: number; ok: boolean }
  | { t: "drain"; dt: number };

const dtArb = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 400 }));
const jitterArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

function actionArb(opts: { faults: boolean }): fc.Arbitrary<Action> {
  const slot = fc.nat(SLOTS - 1);
  const base: fc.WeightedArbitrary<Action>[] = [
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("submit" as const),
        dt: dtArb,
        spec: fc.nat(SPECS.length - 1),
        client: fc.nat(1),
        key: fc.nat(2),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ t: fc.constant("register" as const), dt: dtArb, slot, offer: fc.nat(OFFERS.length - 1) }),
    },
    {
      weight: 6,
      arbitrary: fc.record({ t: fc.constant("acquire" as const), dt: dtArb, slot, max: fc.integer({ min: 0, max: 4 }) }),
    },
    {
      weight: 3,
      arbitrary: fc.record({ t: fc.constant("heartbeat" as const), dt: dtArb, slot, mask: fc.nat(), stale: fc.boolean() }),
    },
    {
      weight: 8,
      arbitrary: fc.record({
        t: fc.constant("complete" as const),
        dt: dtArb,
        pick: fc.nat(),
        mode: fc.constantFrom(
          "holder" as const,
          "holder" as const,
          "wrong-size" as const,
          "wrong-worker" as const,
          "stale" as const,
        ),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("tick" as const), dt: dtArb, jitter: jitterArb }) },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("shell" as const),
        dt: dtArb,
        ok: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      }),
    },
  ];
  if (opts.faults) {
    base.push(
      {
        weight: 3,
        arbitrary: fc.record({
          t: fc.constant("fail" as const),
          dt: dtArb,
          pick: fc.nat(),
          release: fc.boolean(),
          jitter: jitterArb,
          stale: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          t: fc.constant("cancel" as const),
          dt: dtArb,
          job: fc.nat(),
          owner: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        }),
      },
    );
  }
  return fc.oneof(...base);
}

const runArb = fc.record({
  /** Builds registered in slots 0..2 before the run (more can register later). */
  builds: fc.array(fc.nat(OFFERS.length - 1), { minLength: 1, maxLength: SLOTS }),
  /** Jobs submitted before the run. */
  jobs: fc.array(fc.nat(SPECS.length - 1), { minLength: 1, maxLength: 3 }),
  actions: fc.array(actionArb({ faults: true }), { minLength: 1, maxLength: 100, size: "max" }),
  /** Index of the action before which the coordinator starts draining (rarely: grants stop for good). */
  drainAt: fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(100) }),
});
type RunInput = typeof runArb extends fc.Arbitrary<infer T> ? T : never;

const shardKey = (jobId: string, shard: number) => `${jobId}/${shard}`;

/** An `expect` that accepts everything, for runs judged only by replay (determinism). */
const lenient: typeof expect = new Proxy(() => undefined, {
  get: () => lenient,
  apply: () => lenient,
}) as unknown as typeof expect;

const NEXT: Record<JobStateName, readonly JobStateName[]> = {
  queued: ["queued", "running", "failed", "cancelled"],
  running: ["running", "succeeded", "failed", "cancelled"],
  succeeded: ["succeeded"],
  failed: ["failed"],
  cancelled: ["cancelled"],
};

/**
 * One simulated run: a core state, a few worker processes with a model of the
 * leases each believes it holds, and a shell that replies to finalize-result.
 * Every step is checked against the invariants below.
 */
class Run {
  readonly d = new Driver(CFG);
  /** `check: false` only records (the determinism property judges the run by replay alone). */
  private readonly x: typeof expect;
  constructor(private readonly check = true) {
    this.x = check ? expect : lenient;
  }
  readonly results: StepResult<unknown>[] = [];
  private readonly slots: (WorkerId | undefined)[] = Array.from({ length: SLOTS }, () => undefined);
  private regSeq = 0;
  /** What each live worker process believes it holds. */
  private readonly held = new Map<WorkerId, LeaseKey[]>();
  /** Every lease ever granted, with its grantee (for stale and duplicate reports). */
  private readonly granted: { key: LeaseKey; worker: WorkerId }[] = [];
  private readonly jobs: JobId[] = [];
  private readonly pendingFinal: JobId[] = [];
  // --- observations over the whole run ---
  private readonly accepted = new Set<string>();
  private readonly acceptedPerJob = new Map<string, number>();
  private readonly finalizeSeen = new Set<string>();
  private readonly maxGranted = new Map<string, number>();
  private readonly pins = new Map<string, string>();
  /** Builds (kernel@fingerprint) that ran each job's grants: a job never mixes builds. */
  private readonly buildsPerJob = new Map<string, Set<string>>();
  private readonly states = new Map<string, JobStateName>();
  private lastEpoch = 0;
  writes = 0;

  private apply<E extends CoreEvent>(e: E): StepResult<OutcomeMap[E["type"]]> {
    // What the core held before a completion, to judge whether accepting it was right.
    let holderBefore: string | undefined;
    let jobStateBefore: JobStateName | undefined;
    if (e.type === "shard-completed") {
      const c = e as Extract<CoreEvent, { type: "shard-completed" }>;
      holderBefore = this.d.state.leases.get(c.lease.epoch)?.workerId;
      jobStateBefore = this.d.state.jobs.get(c.lease.jobId)?.state;
    }
    const r = this.d.apply(e);
    this.results.push(r);
    if (this.check) this.checkCommon(e, r, holderBefore, jobStateBefore);
    return r;
  }

  /** Checks that hold after every step, whatever the event. */
  private checkCommon(
    e: CoreEvent,
    r: StepResult<unknown>,
    holderBefore: string | undefined,
    jobStateBefore: JobStateName | undefined,
  ): void {
    const s = this.d.state;
    this.x(checkInvariants(s), `invariants after ${e.type}`).toEqual([]);

    // At most one live lease per shard, plus at most one straggler backup (at the shard's
    // backup epoch); leases and worker lease sets agree.
    const live = new Map<string, number>();
    for (const lease of s.leases.values()) {
      const k = shardKey(lease.jobId, lease.shardIndex);
      const n = (live.get(k) ?? 0) + 1;
      live.set(k, n);
      this.x(n <= 2, `three live leases on ${k}`).toBe(true);
      if (n === 2) {
        const job = s.jobs.get(lease.jobId);
        const backup = job?.shardBackupEpoch[lease.shardIndex] ?? 0;
        this.x(backup !== 0 && s.leases.has(backup), `two live leases on ${k} without a backup epoch`).toBe(true);
      }
      this.x(
        s.workers.get(lease.workerId)?.leases.has(lease.epoch),
        `lease ${lease.epoch} missing from worker ${lease.workerId}`,
      ).toBe(true);
    }
    for (const w of s.workers.values()) for (const ep of w.leases) this.x(s.leases.get(ep)?.workerId).toBe(w.id);

    // Effects: each tile accepted at most once per job; finalize only when complete, at most once.
    for (const f of r.effects) {
      if (f.type === "write-tile") {
        this.x(e.type).toBe("shard-completed");
        const k = shardKey(f.jobId, f.shardIndex);
        this.x(this.accepted.has(k), `tile ${k} accepted twice`).toBe(false);
        this.accepted.add(k);
        this.acceptedPerJob.set(f.jobId, (this.acceptedPerJob.get(f.jobId) ?? 0) + 1);
        this.writes++;
        const job = s.jobs.get(f.jobId);
        this.x(job).toBeDefined();
        if (job) this.x(f.bounds).toEqual(tileBounds(job.plan, f.shardIndex));
      } else if (f.type === "finalize-result") {
        this.x(this.finalizeSeen.has(f.jobId), `finalize-result twice for ${f.jobId}`).toBe(false);
        this.finalizeSeen.add(f.jobId);
        const job = s.jobs.get(f.jobId);
        this.x(this.acceptedPerJob.get(f.jobId)).toBe(job?.plan.shardCount);
        this.pendingFinal.push(f.jobId);
      }
    }

    if (e.type === "shard-completed") {
      const c = e as Extract<CoreEvent, { type: "shard-completed" }>;
      const out = r.outcome as OutcomeMap["shard-completed"];
      if (out.ok) {
        // Only the live holder of the highest epoch ever granted for the shard can win.
        this.x(holderBefore).toBe(c.workerId);
        this.x(jobStateBefore !== undefined && !isTerminal(jobStateBefore)).toBe(true);
        this.x(c.lease.epoch).toBe(this.maxGranted.get(shardKey(c.lease.jobId, c.lease.shardIndex)));
        this.x(effectsOf(r.effects, "write-tile")).toHaveLength(1);
      } else {
        this.x(r.effects).toEqual([]);
      }
    }

    // Job states only move forward; terminal states never change; succeeded only on the shell's reply.
    for (const job of s.jobs.values()) {
      const prev = this.states.get(job.id);
      if (prev !== undefined) {
        this.x(NEXT[prev], `job ${job.id} went ${prev} → ${job.state} on ${e.type}`).toContain(job.state);
        if (job.state === "succeeded" && prev !== "succeeded") {
          this.x(e.type).toBe("result-finalized");
          this.x(this.finalizeSeen.has(job.id)).toBe(true);
        }
      } else {
        this.x(job.state).toBe("queued");
      }
      if (job.fingerprint !== "") {
        const pin = `${job.kernel}@${job.fingerprint}`;
        this.x(this.pins.get(job.id) ?? pin, `job ${job.id} re-pinned`).toBe(pin);
        this.pins.set(job.id, pin);
      }
      this.states.set(job.id, job.state);
    }
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
        });
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
        const r = this.apply({ type: "worker-registered", nowMs: this.d.nowMs, workerId: id, name: id, kernels, threads: 1 });
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
          this.x(this.accepted.has(k), `granted ${k} after it was accepted`).toBe(false);
          this.maxGranted.set(k, g.lease.epoch);
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
      case "tick": {
        const r = this.apply({ type: "ticked", nowMs: this.d.nowMs, jitter: a.jitter });
        this.x(r.outcome.ok).toBe(true);
        for (const lease of s.leases.values()) this.x(lease.expiresAtMs).toBeGreaterThan(this.d.nowMs);
        return;
      }
      case "shell": {
        const jobId = this.pendingFinal.shift();
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
      // Either it succeeded now, or it had been cancelled/failed meanwhile.
      this.x(job && isTerminal(job.state)).toBe(true);
    } else {
      this.apply({ type: "result-failed", nowMs: this.d.nowMs, jobId, message: "disk full" });
    }
  }

  /** The shell answers every outstanding finalize-result. */
  flush(): void {
    for (let jobId = this.pendingFinal.shift(); jobId !== undefined; jobId = this.pendingFinal.shift()) this.reply(jobId, true);
  }
}

function execute({ builds, jobs, actions, drainAt }: RunInput, check = true): Run {
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
        views: [...st.jobs.values()].map(viewJob),
        leases: [...st.leases.values()],
        workers: [...st.workers.values()].map((w) => ({ ...w, leases: [...w.leases] })),
        nextEpoch: st.nextEpoch,
        activeJobs: st.activeJobs,
      });
      expect(summary(again.state)).toEqual(summary(run.d.state));
    },
  );

  test.prop(
    [
      fc.array(fc.nat(SPECS.length - 1), { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(2), { minLength: 1, maxLength: 3 }), // builds with a usable kernel: OFFERS[0..2]
      fc.array(
        fc.record({
          first: fc.nat(),
          max: fc.integer({ min: 1, max: 4 }),
          dt: fc.integer({ min: 0, max: 250 }),
          reverse: fc.boolean(),
          replyLate: fc.boolean(),
        }),
        { minLength: 1, maxLength: 10 },
      ),
    ],
    { numRuns: 300 },
  )("liveness: with no failures or cancels, acquiring and completing everything succeeds every job", (specs, builds, rounds) => {
    const d = new Driver(CFG);
    const workers = builds.map((b, i) => {
      const id = `w${i}`;
      unwrap(d.register(id, OFFERS[b] as readonly KernelOffer[]).outcome);
      return id;
    });
    const jobs = specs.map((sp) => d.submitOk(SPECS[sp] as MatMulSpecInput));
    const pending: JobId[] = [];
    const totalShards = jobs.reduce((n, j) => n + d.job(j).plan.shardCount, 0);
    let round = 0;
    for (; round < 200 && jobs.some((j) => d.job(j).state !== "succeeded"); round++) {
      const r = rounds[round % rounds.length];
      if (!r) throw new Error("no round");
      const carried = pending.length;
      for (let k = 0; k < workers.length; k++) {
        const w = workers[(r.first + k) % workers.length] as string;
        const grants = d.grants(w, r.max);
        const order = r.reverse ? [...grants].reverse() : grants;
        for (const g of order) {
          const c = d.complete(w, g.lease);
          expect(c.outcome.ok).toBe(true);
          for (const f of effectsOf(c.effects, "finalize-result")) pending.push(f.jobId);
        }
        expect(checkInvariants(d.state)).toEqual([]);
      }
      // the shell replies now, or (replyLate) only to what was pending before this round
      const replyNow = r.replyLate ? pending.splice(0, carried) : pending.splice(0);
      for (const j of replyNow) unwrap(d.finalized(j).outcome);
      d.advance(r.dt);
      expect(unwrap(d.tick().outcome).expired).toBe(0);
    }
    for (const j of pending.splice(0)) unwrap(d.finalized(j).outcome);
    expect(jobs.map((j) => d.job(j).state)).toEqual(jobs.map(() => "succeeded"));
    expect(jobs.reduce((n, j) => n + d.job(j).doneCount, 0)).toBe(totalShards);
    expect(d.state.leases.size).toBe(0);
    expect(d.state.activeJobs).toEqual([]);
    expect(round).toBeLessThanOrEqual(totalShards + 2);
    expect(checkInvariants(d.state)).toEqual([]);
  });

  const orderArb = fc
    .tuple(
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
    )
    .chain(([m, n, tr, tc]) => {
      const count = Math.ceil(m / tr) * Math.ceil(n / tc);
      const idx = Array.from({ length: count }, (_, i) => i);
      return fc.record({
        m: fc.constant(m),
        n: fc.constant(n),
        tr: fc.constant(tr),
        tc: fc.constant(tc),
        perm: fc.shuffledSubarray(idx, { minLength: count, maxLength: count }),
        owner: fc.array(fc.nat(2), { minLength: count, maxLength: count }),
        noise: fc.array(fc.nat(), { maxLength: 6 }),
      });
    });

  /** Runs one job to completion, completing shards in `perm` order; returns shardIndex → bounds of the write-tiles. */
  function aggregate(
    m: number,
    n: number,
    tr: number,
    tc: number,
    perm: readonly number[],
    owner: readonly number[],
    noise: readonly number[],
  ) {
    const d = new Driver(CFG);
    const workers = ["w0", "w1", "w2"];
    for (const w of workers) d.register(w);
    const jobId = d.submitOk(matmulInput(m, 3, n, { tileRows: tr, tileCols: tc }));
    const leases = new Map<number, { w: string; lease: LeaseKey }>();
    owner.forEach((o, i) => {
      const w = workers[o] as string;
      const [g] = d.grants(w, 1);
      if (!g) throw new Error("no grant");
      expect(g.lease.shardIndex).toBe(i);
      leases.set(i, { w, lease: g.lease });
    });
    const writes: [number, TileBounds][] = [];
    let finalizes = 0;
    perm.forEach((shard, pos) => {
      const l = leases.get(shard);
      if (!l) throw new Error("no lease");
      // noise: duplicate or misdirected reports of already-handled shards must not add writes
      for (const x of noise) {
        const other = perm[x % Math.max(1, pos)];
        const ol = other === undefined ? undefined : leases.get(other);
        if (pos > 0 && ol) expect(d.complete(ol.w, ol.lease).outcome.ok).toBe(false);
      }
      const r = d.complete(l.w, l.lease);
      expect(r.outcome.ok).toBe(true);
      for (const f of effectsOf(r.effects, "write-tile")) writes.push([f.shardIndex, f.bounds]);
      finalizes += effectsOf(r.effects, "finalize-result").length;
      expect(finalizes).toBe(pos === perm.length - 1 ? 1 : 0);
    });
    const job = d.job(jobId);
    // the accepted tiles cover C exactly
    const cells = new Uint8Array(m * n);
    for (const [, b] of writes)
      for (let r = b.rowStart; r < b.rowEnd; r++)
        for (let c = b.colStart; c < b.colEnd; c++) cells[r * n + c] = (cells[r * n + c] ?? 0) + 1;
    expect([...cells].every((v) => v === 1)).toBe(true);
    expect(writes.reduce((bytes, [i]) => bytes + tileSizeBytes(job.plan, i), 0)).toBe(m * n * 8);
    return writes.sort((x, y) => x[0] - y[0]);
  }

  test.prop([orderArb], { numRuns: 300 })(
    "aggregation is order-independent: any completion order gives the same shardIndex → bounds writes",
    ({ m, n, tr, tc, perm, owner, noise }) => {
      const identity = perm.map((_, i) => i);
      const reference = aggregate(m, n, tr, tc, identity, owner, []);
      const shuffled = aggregate(m, n, tr, tc, perm, owner, noise);
      expect(shuffled).toEqual(reference);
      expect(reference.map(([i]) => i)).toEqual(identity);
    },
  );
});
