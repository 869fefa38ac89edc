// The simulator's independent judge. It never reads the core's lease table: it keeps
// its own model of which leases are live, built only from what the coordinator said
// (grants, heartbeat answers, accepted reports, ticks) and from the "disk", and
// raises a SimViolation the moment an answer contradicts it.
import type { DurableRecord, Grant, JobId, LeaseCheck, LeaseKey, MatMulSpec, WorkerId } from "@dce/core";
import { planMatMul, tileBounds } from "@dce/core";
import { readTile, sameBytes } from "./matrix.js";

/** A broken guarantee, found at simulated time `atMs`. */
export class SimViolation extends Error {
  override readonly name = "SimViolation";
}

/** What the oracle needs from the world to judge durable tiles and results. */
export interface OracleWorld {
  readonly leaseTtlMs: number;
  /** The job's result buffer on "disk" (undefined if there is none). */
  diskBuffer(jobId: JobId): Float64Array | undefined;
  /** The sealed result blob with this id, if stored. */
  blob(blobId: string): Float64Array | undefined;
  /** The single-process product for a spec, as the build `fingerprint` computes it. */
  expected(spec: MatMulSpec, fingerprint: string): Float64Array;
  /** True for a job the run means to fail (a poison shard's); its end is judged by the world. */
  failureExpected?(jobId: JobId): boolean;
}

interface LiveLease {
  readonly jobId: JobId;
  readonly shard: number;
  readonly workerId: WorkerId;
  expiresAtMs: number;
}

const shardKey = (jobId: string, shard: number): string => `${jobId}/${shard}`;

export class Oracle {
  // --- one coordinator incarnation (a restart forgets all leases) ---
  readonly #live = new Map<number, LiveLease>();
  readonly #liveByShard = new Map<string, Set<number>>();
  /** Shards accepted in this incarnation (durable or not), plus those restored from disk. */
  #accepted = new Map<string, number>();
  /** Highest epoch granted in this incarnation, or handed out before it. */
  #highWater = 0;
  // --- the whole run ---
  /** Highest epoch that ever left the coordinator in a reply. */
  #maxReleased = 0;
  readonly #durableAccepted = new Map<string, number>();
  readonly #durableSpecs = new Map<JobId, MatMulSpec>();
  readonly #durableKeys = new Map<string, JobId>();
  readonly #durablePins = new Map<JobId, string>();
  readonly #durableSucceeded = new Map<JobId, string>();
  /** Lease epochs that expired (the only leases whose holders may be recorded as dead). */
  readonly #expired = new Set<number>();
  readonly #durableDeaths = new Set<number>();
  /** Idempotency key → job id the client was told (the reply left, so it must be durable). */
  readonly #acked = new Map<string, JobId>();
  atMs = 0;

  constructor(private readonly world: OracleWorld) {}

  fail(msg: string): never {
    throw new SimViolation(`t=${this.atMs}: ${msg}`);
  }

  /** Why the report of `key` by `workerId` is not a valid one, or undefined if it is. */
  #whyInvalid(workerId: WorkerId, key: LeaseKey, nowMs: number): string | undefined {
    const k = shardKey(key.jobId, key.shardIndex);
    const done = this.#accepted.get(k);
    if (done !== undefined) return `shard ${k} was already accepted at epoch ${done}`;
    const l = this.#live.get(key.epoch);
    if (!l || l.jobId !== key.jobId || l.shard !== key.shardIndex) {
      return `epoch ${key.epoch} is not a live lease of shard ${k} (live epochs: ${[...(this.#liveByShard.get(k) ?? [])].join(",") || "none"})`;
    }
    if (l.expiresAtMs <= nowMs) return `lease epoch ${key.epoch} expired at t=${l.expiresAtMs}`;
    if (l.workerId !== workerId) return `lease epoch ${key.epoch} is held by ${l.workerId}, not ${workerId}`;
    return undefined;
  }

  #kill(epoch: number): void {
    const l = this.#live.get(epoch);
    if (!l) return;
    this.#live.delete(epoch);
    this.#liveByShard.get(shardKey(l.jobId, l.shard))?.delete(epoch);
  }

  /** A grant left the core (it may still be lost before it is durable). */
  onGrant(workerId: WorkerId, g: Grant, nowMs: number, pinnedFingerprint: string, workerBuild: string | undefined): void {
    const { epoch, jobId, shardIndex } = g.lease;
    const k = shardKey(jobId, shardIndex);
    if (epoch <= this.#highWater) {
      this.fail(
        `epoch ${epoch} granted for ${k} after epoch ${this.#highWater} (epochs must strictly increase, restarts included)`,
      );
    }
    this.#highWater = epoch;
    const done = this.#accepted.get(k);
    if (done !== undefined) this.fail(`shard ${k} granted at epoch ${epoch} after it was accepted at epoch ${done}`);
    if (g.ttlMs !== this.world.leaseTtlMs) this.fail(`grant epoch ${epoch} has ttlMs ${g.ttlMs}`);
    if (workerBuild !== undefined && pinnedFingerprint !== workerBuild) {
      this.fail(`grant epoch ${epoch} of job ${jobId} (pinned to ${pinnedFingerprint}) went to a ${workerBuild} worker`);
    }
    const set = this.#liveByShard.get(k) ?? new Set<number>();
    this.#liveByShard.set(k, set);
    const others: LiveLease[] = [];
    for (const ep of set) {
      const l = this.#live.get(ep);
      if (l && l.expiresAtMs > nowMs) others.push(l);
    }
    if (others.length >= 2) this.fail(`shard ${k} got a third live lease (epoch ${epoch})`);
    if (others.some((l) => l.workerId === workerId)) {
      this.fail(`shard ${k}: backup epoch ${epoch} granted to ${workerId}, which already runs the shard`);
    }
    set.add(epoch);
    this.#live.set(epoch, { jobId, shard: shardIndex, workerId, expiresAtMs: nowMs + this.world.leaseTtlMs });
  }

  onHeartbeat(workerId: WorkerId, checks: readonly LeaseCheck[], nowMs: number): void {
    for (const c of checks) {
      const why = this.#whyInvalid(workerId, c.lease, nowMs);
      const where = `heartbeat of ${workerId} for ${shardKey(c.lease.jobId, c.lease.shardIndex)}@${c.lease.epoch}`;
      if (c.state === "active") {
        if (why !== undefined) this.fail(`${where} was renewed but ${why}`);
        const l = this.#live.get(c.lease.epoch);
        if (l) l.expiresAtMs = nowMs + this.world.leaseTtlMs;
      } else if (why === undefined) {
        this.fail(`${where} answered ${c.state} for a live lease`);
      }
    }
  }

  onCompletion(workerId: WorkerId, key: LeaseKey, accepted: boolean, rejectedKind: string, nowMs: number): void {
    const why = this.#whyInvalid(workerId, key, nowMs);
    const where = `completion of ${shardKey(key.jobId, key.shardIndex)}@${key.epoch} by ${workerId}`;
    if (accepted) {
      if (why !== undefined) this.fail(`stale or repeated ${where} was accepted: ${why}`);
      const k = shardKey(key.jobId, key.shardIndex);
      this.#accepted.set(k, key.epoch);
      for (const ep of [...(this.#liveByShard.get(k) ?? [])]) this.#kill(ep);
    } else if (why === undefined) {
      this.fail(`valid ${where} was rejected (${rejectedKind}); the first valid completion must win`);
    }
  }

  onFailure(workerId: WorkerId, key: LeaseKey, accepted: boolean, rejectedKind: string, nowMs: number): void {
    const why = this.#whyInvalid(workerId, key, nowMs);
    const where = `failure report of ${shardKey(key.jobId, key.shardIndex)}@${key.epoch} by ${workerId}`;
    if (accepted) {
      if (why !== undefined) this.fail(`stale ${where} was accepted: ${why}`);
      this.#kill(key.epoch);
    } else if (why === undefined) {
      this.fail(`valid ${where} was rejected (${rejectedKind})`);
    }
  }

  /**
   * A result failed verification and the core recorded it: the lease ended exactly when it
   * was live and the sender's; a quarantine ends every live lease of the sender, or of
   * every worker of its identity when the identity is quarantined.
   */
  onRejected(
    workerId: WorkerId,
    key: LeaseKey,
    out: { leaseEnded: boolean; quarantined: boolean; identityQuarantined: boolean },
    nowMs: number,
    sameIdentity: (w: WorkerId) => boolean,
  ): void {
    const why = this.#whyInvalid(workerId, key, nowMs);
    const where = `rejected result of ${shardKey(key.jobId, key.shardIndex)}@${key.epoch} by ${workerId}`;
    if (out.leaseEnded && why !== undefined) this.fail(`${where} ended a lease that was not live: ${why}`);
    if (!out.leaseEnded && why === undefined) this.fail(`${where} left its live lease running`);
    if (out.leaseEnded) this.#kill(key.epoch);
    const shutOut = (w: WorkerId) => (out.identityQuarantined ? sameIdentity(w) : out.quarantined && w === workerId);
    for (const [ep, l] of [...this.#live]) if (shutOut(l.workerId)) this.#kill(ep);
  }

  onTick(expired: number, nowMs: number): void {
    let due = 0;
    for (const [ep, l] of this.#live) {
      if (l.expiresAtMs <= nowMs) {
        due++;
        this.#expired.add(ep);
        this.#kill(ep);
      }
    }
    if (due !== expired) this.fail(`tick expired ${expired} leases; ${due} had run past their TTL`);
  }

  /** A job ended other than by success: its leases ended with it. */
  onJobEnded(jobId: JobId): void {
    for (const [ep, l] of [...this.#live]) if (l.jobId === jobId) this.#kill(ep);
  }

  /** The coordinator restarted from `accepted` (job → shard → epoch, as restored) with `nextEpoch`. */
  onRestart(restored: ReadonlyMap<JobId, ReadonlyMap<number, number>>, nextEpoch: number): void {
    this.#live.clear();
    this.#liveByShard.clear();
    this.#accepted = new Map();
    for (const [jobId, shards] of restored) for (const [s, ep] of shards) this.#accepted.set(shardKey(jobId, s), ep);
    for (const [k, ep] of this.#durableAccepted) {
      if (this.#accepted.get(k) !== ep) this.fail(`restart lost the durable acceptance of ${k}@${ep}`);
    }
    if (this.#accepted.size !== this.#durableAccepted.size) {
      this.fail(`restart restored ${this.#accepted.size} accepted shards; the journal holds ${this.#durableAccepted.size}`);
    }
    if (nextEpoch <= this.#maxReleased) {
      this.fail(`restart resumes epochs at ${nextEpoch}, but epoch ${this.#maxReleased} was already handed out`);
    }
    this.#highWater = this.#maxReleased;
  }

  /** A record reached the journal's durable prefix. Tiles are synced before records. */
  onDurable(r: DurableRecord): void {
    switch (r.type) {
      case "job-created": {
        const seen = this.#durableKeys.get(`${r.clientId}\u0000${r.idempotencyKey}`);
        if (seen !== undefined) this.fail(`idempotency key ${r.idempotencyKey} created jobs ${seen} and ${r.jobId}`);
        this.#durableKeys.set(`${r.clientId}\u0000${r.idempotencyKey}`, r.jobId);
        this.#durableSpecs.set(r.jobId, r.spec);
        return;
      }
      case "kernel-pinned": {
        const prev = this.#durablePins.get(r.jobId);
        if (prev !== undefined) this.fail(`job ${r.jobId} pinned twice (${prev}, then ${r.fingerprint})`);
        this.#durablePins.set(r.jobId, r.fingerprint);
        return;
      }
      case "shard-accepted": {
        const k = shardKey(r.jobId, r.shardIndex);
        const prev = this.#durableAccepted.get(k);
        if (prev !== undefined) this.fail(`the journal accepts shard ${k} twice (epochs ${prev} and ${r.epoch})`);
        this.#durableAccepted.set(k, r.epoch);
        if (r.epoch > this.#maxReleased) {
          // A grant is durable only through a reservation; an accepted epoch above every handed-out one is impossible.
          this.fail(`journal accepts ${k} at epoch ${r.epoch}, never handed out (highest handed out: ${this.#maxReleased})`);
        }
        const spec = this.#durableSpecs.get(r.jobId);
        const pin = this.#durablePins.get(r.jobId);
        if (!spec || pin === undefined) this.fail(`journal accepts ${k} before the job was created and pinned`);
        const disk = this.world.diskBuffer(r.jobId);
        if (!disk) this.fail(`journal accepts ${k} but the job has no result buffer on disk`);
        const plan = planMatMul(spec);
        const t = tileBounds(plan, r.shardIndex);
        const want = readTile(this.world.expected(spec, pin), plan.cols, t);
        if (!sameBytes(readTile(disk, plan.cols, t), want)) {
          this.fail(`journal accepts ${k}@${r.epoch} but the tile on disk is not the ${pin} product`);
        }
        return;
      }
      case "job-succeeded": {
        if (this.#durableSucceeded.has(r.jobId)) this.fail(`job ${r.jobId} succeeded twice in the journal`);
        this.#durableSucceeded.set(r.jobId, r.resultBlobId);
        const spec = this.#durableSpecs.get(r.jobId);
        const pin = this.#durablePins.get(r.jobId);
        const blob = this.world.blob(r.resultBlobId);
        if (!spec || pin === undefined || !blob) this.fail(`job ${r.jobId} succeeded without a spec, pin or result blob`);
        if (!sameBytes(blob, this.world.expected(spec, pin))) {
          this.fail(`job ${r.jobId} succeeded with a C that differs from the single-process ${pin} multiply`);
        }
        const plan = planMatMul(spec);
        for (let i = 0; i < plan.shardCount; i++) {
          if (!this.#durableAccepted.has(shardKey(r.jobId, i)))
            this.fail(`job ${r.jobId} succeeded but shard ${i} is not accepted`);
        }
        return;
      }
      case "epochs-reserved":
      case "worker-quarantined":
        return;
      case "shard-died":
        // Only an expired lease is a death: a restart (leases lost, never expired) must add none.
        if (!this.#expired.has(r.epoch)) this.fail(`journal records a death of lease epoch ${r.epoch}, which never expired`);
        if (this.#durableDeaths.has(r.epoch)) this.fail(`journal records the death of lease epoch ${r.epoch} twice`);
        this.#durableDeaths.add(r.epoch);
        return;
      case "job-ended":
        if (r.state === "failed" && this.world.failureExpected?.(r.jobId) === true) return;
        // No run cancels a job, and maxAttempts is out of reach: any failure but a poison shard's is a bug.
        this.fail(`job ${r.jobId} ended ${r.state}: ${r.error}`);
    }
  }

  /** A reply leaves the coordinator (after its records are durable). */
  onGrantsReleased(grants: readonly Grant[]): void {
    for (const g of grants) if (g.lease.epoch > this.#maxReleased) this.#maxReleased = g.lease.epoch;
  }

  onCompletionAcked(key: LeaseKey): void {
    const k = shardKey(key.jobId, key.shardIndex);
    if (this.#durableAccepted.get(k) !== key.epoch) this.fail(`completion ${k}@${key.epoch} acknowledged before it was durable`);
  }

  onSubmitAcked(clientKey: string, idempotencyKey: string, jobId: JobId): void {
    if (this.#durableKeys.get(clientKey) !== jobId)
      this.fail(`job ${jobId} (key ${idempotencyKey}) acknowledged before it was durable`);
    const prev = this.#acked.get(clientKey);
    if (prev !== undefined && prev !== jobId) this.fail(`key ${idempotencyKey} acknowledged as job ${prev}, then as ${jobId}`);
    this.#acked.set(clientKey, jobId);
  }

  /** A submit created a job; a key whose job was acknowledged must never create another. */
  onJobCreated(clientKey: string, idempotencyKey: string, jobId: JobId): void {
    const prev = this.#acked.get(clientKey);
    if (prev !== undefined) this.fail(`key ${idempotencyKey} was acknowledged as job ${prev}, yet job ${jobId} was created`);
  }

  durableSucceeded(jobId: JobId): string | undefined {
    return this.#durableSucceeded.get(jobId);
  }
}
