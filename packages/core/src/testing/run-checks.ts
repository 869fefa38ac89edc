// What every step of a property run must satisfy, whatever the event: the invariants,
// lease uniqueness, tiles accepted once, one finalize per job, states that only move
// forward and pins that never change. Observations accumulate over the whole run.
import type { expect } from "vitest";
import type { CoreEvent, OutcomeMap, StepResult } from "../events.js";
import type { JobId } from "../ids.js";
import { checkInvariants } from "../invariants.js";
import { tileBounds } from "../plan.js";
import { type CoreState, isTerminal, type JobStateName } from "../state.js";
import { effectsOf } from "./model.js";

export const shardKey = (jobId: string, shard: number) => `${jobId}/${shard}`;

const NEXT: Record<JobStateName, readonly JobStateName[]> = {
  queued: ["queued", "running", "failed", "cancelled"],
  running: ["running", "succeeded", "failed", "cancelled"],
  succeeded: ["succeeded"],
  failed: ["failed"],
  cancelled: ["cancelled"],
};

/** What the core held before a step, to judge whether accepting a completion was right. */
export interface BeforeStep {
  holder: string | undefined;
  jobState: JobStateName | undefined;
}

/** The checks that hold after every step of a run, and what they observed so far. */
export class StepChecks {
  /** Tiles accepted so far (`jobId/shard`). */
  readonly accepted = new Set<string>();
  /** The highest epoch granted per shard (`jobId/shard`). */
  readonly maxGranted = new Map<string, number>();
  /** Jobs deleted so far (by their client or by retention). */
  readonly deleted = new Set<string>();
  /** Jobs whose finalize-result the shell has not answered yet. */
  readonly pendingFinal: JobId[] = [];
  writes = 0;
  private readonly acceptedPerJob = new Map<string, number>();
  private readonly finalizeSeen = new Set<string>();
  private readonly pins = new Map<string, string>();
  private readonly states = new Map<string, JobStateName>();

  constructor(private readonly x: typeof expect) {}

  /** Records what `after` needs from the state before `e` is applied. */
  before(s: CoreState, e: CoreEvent): BeforeStep {
    if (e.type !== "shard-completed") return { holder: undefined, jobState: undefined };
    return { holder: s.leases.get(e.lease.epoch)?.workerId, jobState: s.jobs.get(e.lease.jobId)?.state };
  }

  /** Checks that hold after every step, whatever the event. */
  after(s: CoreState, e: CoreEvent, r: StepResult<unknown>, before: BeforeStep): void {
    const holderBefore = before.holder;
    const jobStateBefore = before.jobState;
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

    // A deleted job is gone for good: durably, never back in the state, and nothing points at it.
    const records = effectsOf(r.effects, "persist").filter((p) => p.record.type === "job-deleted");
    const gone = effectsOf(r.effects, "job-deleted");
    this.x(records.map((p) => (p.record as { jobId: string }).jobId)).toEqual(gone.map((f) => f.jobId));
    for (const f of gone) {
      this.x(this.deleted.has(f.jobId), `job ${f.jobId} deleted twice`).toBe(false);
      const prev = this.states.get(f.jobId);
      const cancelledNow = e.type === "job-delete-requested";
      this.x(prev !== undefined && (isTerminal(prev) || cancelledNow), `job ${f.jobId} deleted while ${prev}`).toBe(true);
      this.deleted.add(f.jobId);
    }
    for (const id of this.deleted) this.x(s.jobs.has(id as JobId), `deleted job ${id} is back`).toBe(false);
    for (const lease of s.leases.values()) this.x(this.deleted.has(lease.jobId), `lease on deleted job`).toBe(false);
    for (const id of s.idempotency.values()) this.x(this.deleted.has(id), `idempotency entry of deleted job`).toBe(false);
    for (const id of s.activeJobs) this.x(this.deleted.has(id), `deleted job ${id} still active`).toBe(false);

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
}
