import { setClientWeight } from "./fair-queue.js";
import type { ClientId, JobId } from "./ids.js";
import { createLeaseEnds, type LeaseEnds, observeLeaseEnd } from "./poison.js";
import type { DurableRecord } from "./records.js";
import { restoreShardDeaths } from "./shard-deaths.js";
import type { MatMulSpec } from "./spec.js";
import {
  type CoreConfig,
  type CoreState,
  createCoreState,
  createJobRecord,
  idempotencyEntry,
  type JobStateName,
  ShardStatus,
} from "./state.js";

export type { DurableRecord };

/** A quarantined worker identity, as the durable model keeps it. */
export interface DurableQuarantine {
  rejectedResults: number;
  reason: string;
  atMs: number;
}

/** One death of a shard's worker, as the durable model keeps it. */
export interface DurableDeath {
  epoch: number;
  workerId: string;
}

/** What a durable job looks like on disk (snapshot form). */
export interface DurableJob {
  jobId: JobId;
  clientId: ClientId;
  idempotencyKey: string;
  spec: MatMulSpec;
  createdAtMs: number;
  /** Absent in snapshots written before priorities: 0. */
  priority?: number;
  /** Absent in snapshots written before weights: 1. */
  weight?: number;
  startedAtMs: number;
  kernel: string;
  fingerprint: string;
  state: JobStateName;
  error: string;
  finishedAtMs: number;
  resultBlobId: string;
  /** shard index → accepted epoch, for accepted shards only. */
  accepted: Map<number, number>;
  /** shard index → deaths of its workers, in journal order (shards with deaths only). */
  deaths: Map<number, DurableDeath[]>;
}

/** The durable model: the journal folds into this, and a snapshot serialises it. */
export interface DurableModel {
  /** Epochs below this may have been granted. */
  epochFloor: number;
  /** Jobs in creation order. */
  jobs: Map<JobId, DurableJob>;
  /** Quarantined worker identities. */
  quarantined: Map<string, DurableQuarantine>;
  /**
   * The fleet's ended leases as the death rule counts them (accepted shards and deaths, in
   * journal order): the same numbers the running coordinator had (poison.ts).
   */
  leaseEnds: LeaseEnds;
}

/** An empty durable model. */
export function createDurableModel(): DurableModel {
  return { epochFloor: 1, jobs: new Map(), quarantined: new Map(), leaseEnds: createLeaseEnds() };
}

/**
 * Folds one record into the model. Pure apart from updating `model` in place.
 * Unknown jobs in later records are ignored (a record can only follow its job-created).
 */
export function applyRecord(model: DurableModel, r: DurableRecord): void {
  switch (r.type) {
    case "job-created":
      if (model.jobs.has(r.jobId)) return;
      model.jobs.set(r.jobId, {
        jobId: r.jobId,
        clientId: r.clientId,
        idempotencyKey: r.idempotencyKey,
        spec: r.spec,
        createdAtMs: r.createdAtMs,
        ...(r.priority === undefined ? {} : { priority: r.priority }),
        ...(r.weight === undefined ? {} : { weight: r.weight }),
        startedAtMs: 0,
        kernel: r.spec.kernel,
        fingerprint: "",
        state: "queued",
        error: "",
        finishedAtMs: 0,
        resultBlobId: "",
        accepted: new Map(),
        deaths: new Map(),
      });
      return;
    case "kernel-pinned": {
      const j = model.jobs.get(r.jobId);
      if (!j) return;
      j.kernel = r.kernel;
      j.fingerprint = r.fingerprint;
      j.startedAtMs = r.startedAtMs;
      if (j.state === "queued") j.state = "running";
      return;
    }
    case "shard-accepted": {
      const j = model.jobs.get(r.jobId);
      if (!j || j.accepted.has(r.shardIndex)) return;
      j.accepted.set(r.shardIndex, r.epoch);
      observeLeaseEnd(model.leaseEnds, false);
      if (r.epoch >= model.epochFloor) model.epochFloor = r.epoch + 1;
      return;
    }
    case "job-ended": {
      const j = model.jobs.get(r.jobId);
      if (!j) return;
      j.state = r.state;
      j.error = r.error;
      j.finishedAtMs = r.finishedAtMs;
      return;
    }
    case "job-succeeded": {
      const j = model.jobs.get(r.jobId);
      if (!j) return;
      j.state = "succeeded";
      j.resultBlobId = r.resultBlobId;
      j.finishedAtMs = r.finishedAtMs;
      return;
    }
    case "shard-died": {
      const j = model.jobs.get(r.jobId);
      if (!j) return;
      const list = j.deaths.get(r.shardIndex) ?? [];
      // One lease dies once: a repeated record (replayed after a snapshot) counts once.
      if (list.some((d) => d.epoch === r.epoch)) return;
      list.push({ epoch: r.epoch, workerId: r.workerId });
      j.deaths.set(r.shardIndex, list);
      observeLeaseEnd(model.leaseEnds, true);
      return;
    }
    case "epochs-reserved":
      if (r.upTo > model.epochFloor) model.epochFloor = r.upTo;
      return;
    case "result-buffer-lost": {
      const j = model.jobs.get(r.jobId);
      // The ended leases stay counted (poison.ts): they did end, the bytes were lost later.
      if (j) j.accepted.clear();
      return;
    }
    case "worker-quarantined":
      if (!model.quarantined.has(r.identity)) {
        model.quarantined.set(r.identity, { rejectedResults: r.rejectedResults, reason: r.reason, atMs: r.atMs });
      }
      return;
  }
}

/** What a restored state still needs from the shell. */
export interface Restored {
  readonly state: CoreState;
  /** Jobs whose every tile is accepted but whose result was not sealed: the shell must finalise them. */
  readonly toFinalize: JobId[];
  /** Jobs that are still queued or running: their result buffers must be kept. */
  readonly active: JobId[];
}

/**
 * Rebuilds the coordinator state from the durable model after a restart. Accepted
 * tiles stay accepted (they are never recomputed); every other shard of an active job
 * is pending; the epoch counter resumes above everything that may have been granted.
 */
export function restoreCoreState(config: Partial<CoreConfig>, model: DurableModel): Restored {
  const s = createCoreState(config);
  s.nextEpoch = Math.max(1, model.epochFloor);
  Object.assign(s.leaseEnds, model.leaseEnds);
  for (const [identity, q] of model.quarantined) {
    s.identities.set(identity, {
      identity,
      rejectedResults: q.rejectedResults,
      rejectingWorkers: 0,
      quarantinedAtMs: Math.max(1, q.atMs),
      quarantinedWorkers: [],
      lastReason: q.reason,
    });
  }
  const toFinalize: JobId[] = [];
  const active: JobId[] = [];
  const ordered = [...model.jobs.values()].sort((x, y) => x.createdAtMs - y.createdAtMs);
  for (const d of ordered) {
    const job = createJobRecord({
      id: d.jobId,
      clientId: d.clientId,
      idempotencyKey: d.idempotencyKey,
      spec: d.spec,
      createdAtMs: d.createdAtMs,
      ...(d.priority === undefined ? {} : { priority: d.priority }),
      ...(d.weight === undefined ? {} : { weight: d.weight }),
    });
    const n = job.plan.shardCount;
    job.state = d.state;
    job.startedAtMs = d.startedAtMs;
    job.finishedAtMs = d.finishedAtMs;
    job.error = d.error;
    job.kernel = d.kernel;
    job.fingerprint = d.fingerprint;
    job.resultBlobId = d.resultBlobId;
    restoreShardDeaths(job, d.deaths);
    for (const [shard, epoch] of d.accepted) {
      if (shard < 0 || shard >= n) continue;
      job.shardStatus[shard] = ShardStatus.done;
      job.shardEpoch[shard] = epoch;
      job.doneCount++;
      if (epoch >= s.nextEpoch) s.nextEpoch = epoch + 1;
    }
    if (job.state === "succeeded" && job.doneCount !== n) {
      // A sealed result with missing tiles cannot come from a valid journal; keep it sealed but visible.
      job.error = `restored with ${job.doneCount}/${n} tiles recorded`;
    }
    s.jobs.set(job.id, job);
    if (job.idempotencyKey !== "") s.idempotency.set(idempotencyEntry(job.clientId, job.idempotencyKey), job.id);
    if (job.state === "queued" || job.state === "running") {
      s.activeJobs.push(job.id);
      // In creation order, so each client ends with the weight of its latest submit.
      setClientWeight(s.fairShare, job.clientId, job.weight);
      active.push(job.id);
      if (job.doneCount === n) {
        job.finalizing = true;
        toFinalize.push(job.id);
      }
    }
  }
  return { state: s, toFinalize, active };
}

/** Snapshot form of the model: plain JSON. */
export interface DurableSnapshot {
  version: 1;
  epochFloor: number;
  jobs: (Omit<DurableJob, "accepted" | "deaths"> & {
    accepted: [number, number][];
    /** Deaths per shard (absent in snapshots written before deaths were kept). */
    deaths?: [number, DurableDeath[]][];
  })[];
  /** Quarantined identities (absent in snapshots written before quarantines existed). */
  quarantined?: [string, DurableQuarantine][];
  /** The fleet's ended leases (absent in snapshots written before deaths were kept). */
  leaseEnds?: LeaseEnds;
}

/** Serialises the model for a snapshot. */
export function toSnapshot(model: DurableModel): DurableSnapshot {
  return {
    version: 1,
    epochFloor: model.epochFloor,
    jobs: [...model.jobs.values()].map((j) => ({ ...j, accepted: [...j.accepted.entries()], deaths: [...j.deaths.entries()] })),
    quarantined: [...model.quarantined.entries()],
    leaseEnds: { ...model.leaseEnds },
  };
}

/** Reads a snapshot back into a model. */
export function fromSnapshot(snap: DurableSnapshot): DurableModel {
  const model = createDurableModel();
  model.epochFloor = snap.epochFloor;
  for (const j of snap.jobs) model.jobs.set(j.jobId, { ...j, accepted: new Map(j.accepted), deaths: new Map(j.deaths ?? []) });
  for (const [identity, q] of snap.quarantined ?? []) model.quarantined.set(identity, q);
  if (snap.leaseEnds) model.leaseEnds = { ...snap.leaseEnds };
  return model;
}
