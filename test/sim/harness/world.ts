// One simulated run around the real coordinator: the scenario drawn from the seed, the
// event queue (the only source of time), the simulated network, workers and clients, the
// driver of the real coordinator, and the oracle that judges what they see.
import type { CoreEvent, CoreState, JobId, MatMulSpec, StepResult, WorkerId } from "@dce/core";
import { checkPoisonEnd, drawChaosScenario, type SimMode } from "../chaos-modes.js";
import { EventQueue } from "../event-queue.js";
import { drawFairShareScenario, FairShareWatch } from "../fair-share-mode.js";
import { type Matrix, multiply, sameBytes } from "../matrix.js";
import { Oracle, type SimViolation } from "../oracle.js";
import { createRng, type Rng } from "../prng.js";
import { QuarantineWatch } from "../quarantine-watch.js";
import { drawScenario, type JobPlan, type Scenario, withCorruption } from "../scenario.js";
import { emptyStats, type SimStats } from "../stats.js";
import { SimClients } from "./clients.js";
import { CoordinatorDriver } from "./coordinator-driver.js";
import { applyFault, beginCalm } from "./faults.js";
import type { SimEvent } from "./messages.js";
import { Network } from "./network.js";
import { SimWorkers } from "./workers.js";

export interface WorldOptions {
  readonly mode?: SimMode;
  readonly trace?: ((line: string) => void) | undefined;
  /** Folder the blob store writes inputs to for the verifier (files named by content). */
  readonly spillDir?: string | undefined;
  /** The core's transition function the coordinator runs (default the real one). */
  readonly step?: ((state: CoreState, event: CoreEvent) => StepResult<unknown>) | undefined;
}

const asBytes = (m: Float64Array) => new Uint8Array(m.buffer, m.byteOffset, m.byteLength);
const asFloats = (b: Uint8Array) => new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8);

export class World {
  readonly rng: Rng;
  /** A second stream for verification probes and corruption, so the main stream's draws stay as they were. */
  readonly vrng: Rng;
  readonly sc: Scenario;
  readonly trace: ((line: string) => void) | undefined;
  readonly q = new EventQueue<SimEvent>();
  /** Input matrices by blob id (the SHA-256 the coordinator's blob store gives them). */
  readonly inputs = new Map<string, Matrix>();
  readonly #expected = new Map<string, Float64Array>();
  readonly oracle: Oracle;
  readonly stats: SimStats;
  readonly quarantine: QuarantineWatch;
  /** Tiles a corrupting worker changed on purpose. */
  readonly corrupted = new WeakSet<Float64Array>();
  /** Idempotency key of every job id ever created, and the build of every worker id ever registered. */
  readonly keyOf = new Map<JobId, string>();
  readonly buildOf = new Map<WorkerId, string>();
  readonly #crashPointHits = { accept: 0, fsync: 0, finalize: 0 };
  readonly net: Network;
  readonly coord: CoordinatorDriver;
  readonly workers: SimWorkers;
  readonly clients: SimClients;
  nowMs = 0;
  calm = false;
  reqSeq = 0;
  /** The shares of granted work while every client is backlogged (fair-share mode only). */
  readonly fairShare: FairShareWatch | undefined;
  /** The first broken guarantee seen inside the shell's callbacks (raised after the event). */
  violation: SimViolation | undefined;

  constructor(
    readonly seed: number,
    opts: WorldOptions,
  ) {
    this.rng = createRng(seed);
    this.vrng = createRng((seed ^ 0x5f3759df) >>> 0);
    const mode = opts.mode ?? "default";
    const drawn = new Map<string, Matrix>();
    this.sc =
      mode === "default"
        ? withCorruption(drawScenario(this.rng, drawn), this.vrng)
        : mode === "fair-share"
          ? drawFairShareScenario(this.rng, drawn)
          : drawChaosScenario(mode, this.rng, drawn);
    this.fairShare = mode === "fair-share" ? new FairShareWatch() : undefined;
    this.trace = opts.trace;
    this.quarantine = new QuarantineWatch(this.sc.corrupter, this.sc.config.quarantineAfterRejections ?? 0);
    this.stats = emptyStats(this.sc.jobs.length, this.sc.workers.length);
    this.oracle = new Oracle({
      leaseTtlMs: this.sc.ttlMs,
      diskBuffer: (id) => {
        const b = this.coord.storage.sink.durableBytesOf(id);
        return b && asFloats(b);
      },
      blob: (id) => this.#blob(id),
      expected: (spec, fp) => this.expected(spec, fp),
      failureExpected: (jobId) => this.isPoisonJob(jobId),
    });
    this.net = new Network(this);
    this.coord = new CoordinatorDriver(this, opts.spillDir, opts.step);
    // The clients uploaded A and B before submitting: the jobs name them by content.
    const plans: JobPlan[] = this.sc.jobs.map((p) => {
      const put = (ref: { rows: number; cols: number; blobId: string } | undefined) => {
        const m = ref && drawn.get(ref.blobId);
        if (!ref || !m) throw new Error(`job ${p.key} has no drawn input ${ref?.blobId}`);
        const blobId = this.coord.storage.blobs.put(asBytes(m.data));
        this.inputs.set(blobId, m);
        return { rows: ref.rows, cols: ref.cols, blobId };
      };
      return { ...p, spec: { ...p.spec, a: put(p.spec.a), b: put(p.spec.b) } };
    });
    this.workers = new SimWorkers(this);
    this.clients = new SimClients(this, plans);
  }

  log(line: string): void {
    if (this.trace) this.trace(`t=${String(this.nowMs).padStart(6)} ${line}`);
  }

  at(delayMs: number, e: SimEvent): void {
    this.q.push(this.nowMs + delayMs, e);
  }

  /** True when the armed crash point `at` is reached now. */
  crashPointHit(at: "accept" | "fsync" | "finalize"): boolean {
    const cp = this.sc.crashPoint;
    if (!cp || cp.at !== at || this.calm) return false;
    return ++this.#crashPointHits[at] === cp.nth;
  }

  expected(spec: MatMulSpec, fp: string): Float64Array {
    const key = `${spec.a.blobId}/${spec.b.blobId}/${fp}`;
    let c = this.#expected.get(key);
    if (!c) {
      const a = this.inputs.get(spec.a.blobId);
      const b = this.inputs.get(spec.b.blobId);
      if (!a || !b || (fp !== "sim-asc" && fp !== "sim-desc")) this.oracle.fail(`no inputs or unknown build ${fp}`);
      c = multiply(a, b, fp);
      this.#expected.set(key, c);
    }
    return c;
  }

  /** True for the job whose shard kills its workers (poison mode), known by its key before its client hears its id. */
  isPoisonJob(jobId: JobId): boolean {
    const p = this.sc.chaos?.poison;
    return p !== undefined && this.keyOf.get(jobId) === this.clients.all[p.job]?.plan.key;
  }

  #blob(id: string): Float64Array | undefined {
    const blobs = this.coord.storage.blobs;
    const size = blobs.sizeOf(id);
    return size === undefined ? undefined : asFloats(blobs.read(id, 0, size).data);
  }

  /** Carries out one event; true when it reached the coordinator (which then runs until quiescent). */
  async #dispatch(e: SimEvent): Promise<boolean> {
    const workers = this.workers;
    switch (e.k) {
      case "to-coord":
        this.coord.deliver(e.env);
        return true;
      case "reply": {
        if (e.to.kind === "client") this.clients.onReply(e.to.job, e.reqId, e.outcome);
        else {
          const w = workers.workerFor(e.to.slot, e.to.inc, e);
          if (w) workers.onReply(w, e.reqId, e.outcome);
        }
        return false;
      }
      case "client-send":
        this.clients.send(e.job);
        return false;
      case "client-timeout":
        this.clients.onTimeout(e.job, e.reqId);
        return false;
      case "worker-start": {
        const w = workers.all[e.slot];
        if (w) workers.start(w);
        return false;
      }
      case "worker-heartbeat": {
        const w = workers.workerFor(e.slot, e.inc, e);
        if (w) workers.onHeartbeatTimer(w);
        return false;
      }
      case "worker-poll": {
        const w = workers.workerFor(e.slot, e.inc, e);
        if (w) workers.poll(w);
        return false;
      }
      case "worker-register": {
        const w = workers.workerFor(e.slot, e.inc, e);
        if (w) workers.register(w);
        return false;
      }
      case "worker-computed": {
        const w = workers.workerFor(e.slot, e.inc, e);
        if (w) workers.onComputed(w, e.key);
        return false;
      }
      case "worker-timeout": {
        const w = workers.workerFor(e.slot, e.inc, e);
        if (w) workers.onTimeout(w, e.reqId);
        return false;
      }
      case "coord-fsync":
        this.coord.fsync(e.inc);
        return true;
      case "coord-restart":
        await this.coord.start();
        return true;
      case "fault":
        applyFault(this, e.fault);
        return false;
      case "calm":
        beginCalm(this);
        return false;
    }
  }

  /** True once every job was acknowledged to its client, sealed and durable. */
  #finished(): boolean {
    const state = this.coord.state;
    if (!this.calm || state === undefined || !this.coord.quiet) return false;
    for (const cl of this.clients.all) {
      if (cl.jobId === undefined) return false;
      const s = state.jobs.get(cl.jobId)?.state;
      if (s !== "succeeded" && !(s === "failed" && this.isPoisonJob(cl.jobId))) return false;
    }
    return true;
  }

  /** Checks the end state: every job succeeded with C byte-identical to the single-process multiply. */
  #checkEnd(): void {
    const state = this.coord.state;
    const fail = (m: string) => this.oracle.fail(m);
    if (!state) {
      fail("coordinator down at the end");
      return;
    }
    if (state.jobs.size !== this.clients.all.length)
      fail(`${state.jobs.size} jobs exist for ${this.clients.all.length} idempotency keys`);
    for (const cl of this.clients.all) {
      const id = cl.jobId as JobId;
      const job = state.jobs.get(id);
      const poison = this.sc.chaos?.poison;
      if (poison && this.isPoisonJob(id)) {
        const wrong = checkPoisonEnd(job?.state, job?.error ?? "", poison.shard, this.stats.poisonDeaths);
        if (wrong !== undefined) fail(wrong);
        continue;
      }
      if (job?.state !== "succeeded") {
        fail(`job ${id} is ${job?.state ?? "missing"} at the end`);
        return;
      }
      this.stats.shards += job.plan.shardCount;
      const blob = this.#blob(job.resultBlobId);
      if (!blob) {
        fail(`job ${id} names result blob ${job.resultBlobId}, which is not stored`);
        return;
      }
      if (this.oracle.durableSucceeded(id) !== job.resultBlobId) fail(`job ${id}'s success is not durable`);
      const fp = job.fingerprint;
      if (!sameBytes(blob, this.expected(job.spec, fp)))
        fail(`job ${id}: C is not byte-identical to the single-process multiply`);
    }
    if (this.fairShare) {
      const [light = 0, mid = 0, heavy = 0] = this.fairShare.cost;
      Object.assign(this.stats, { shareCostLight: light, shareCostMid: mid, shareCostHeavy: heavy });
      const wrong = this.fairShare.check();
      if (wrong !== undefined) fail(wrong);
    }
  }

  #throwIfViolation(): void {
    if (this.violation) throw this.violation;
  }

  async run(): Promise<void> {
    const sc = this.sc;
    if (this.trace)
      this.log(
        `scenario: ${sc.workers.length} workers [${sc.workers.map((w) => `${w.build}x${w.threads}`).join(" ")}], ` +
          `${sc.jobs.length} jobs, ttl ${sc.ttlMs}, fsync ${sc.fsync}, drop ${sc.dropP} dup ${sc.dupP} slow ${sc.slowP}, ` +
          `faults until ${sc.faultEndMs}: ${sc.faults.map((f) => `${f.fault.kind}@${f.atMs}`).join(" ")}` +
          (sc.crashPoint ? `, crash point ${sc.crashPoint.at} #${sc.crashPoint.nth}` : ""),
      );
    await this.coord.start();
    for (const w of this.workers.all) this.at(this.rng.int(0, 30), { k: "worker-start", slot: w.slot });
    sc.jobs.forEach((j, i) => {
      this.at(j.submitAtMs, { k: "client-send", job: i });
    });
    for (const f of sc.faults) this.at(f.atMs, { k: "fault", fault: f.fault });
    this.at(sc.faultEndMs, { k: "calm" });
    const maxEvents = sc.maxEvents ?? 200_000;
    const maxMs = sc.faultEndMs + 120_000;
    for (;;) {
      const next = this.q.pop();
      if (!next) this.oracle.fail("no events left but the jobs are not finished (deadlock)");
      await this.coord.advanceTo(next.atMs);
      this.#throwIfViolation();
      this.nowMs = next.atMs;
      this.oracle.atMs = next.atMs;
      this.stats.events++;
      if (await this.#dispatch(next.item)) await this.coord.settle();
      this.#throwIfViolation();
      if (this.#finished()) break;
      if (this.stats.events > maxEvents || this.nowMs > maxMs) {
        const state = this.coord.state;
        const states = this.clients.all.map((cl) => {
          const job = cl.jobId === undefined ? undefined : state?.jobs.get(cl.jobId);
          return `${cl.plan.key}=${job ? `${job.state} ${job.doneCount}/${job.plan.shardCount} leased ${job.leasedCount}` : "unacknowledged"}`;
        });
        this.oracle.fail(`livelock: not finished after ${this.stats.events} events / ${this.nowMs} ms: ${states.join(", ")}`);
      }
    }
    this.stats.simMs = this.nowMs;
    this.#checkEnd();
  }
}
