// Deterministic simulation of a dce cluster: the REAL core (`@dce/core` step, durable
// model and restore) as the coordinator, inside a simulated shell that follows the
// coordinator's effect semantics (journal group commit, result buffers, epoch
// reservations, long-polls, finalisation), plus simulated workers, clients, network
// and clock. One seeded PRNG drives everything: one seed is one run.
//
// Faults: message delay/drop/duplication/reordering in both directions, worker
// crashes (with or without a comeback), worker pauses past the lease TTL (stale
// heartbeats and completions on resume), shard failures and hand-backs, and
// coordinator crashes that lose every record and tile write not yet fsynced (or,
// for a crash mid-fsync, keep the synced tiles and a prefix of the records).
import {
  asClientId,
  asJobId,
  asWorkerId,
  type CoreConfig,
  type CoreError,
  type CoreEvent,
  type CoreState,
  checkCompletion,
  checkInvariants,
  checkTileRows,
  createProjection,
  type DurableRecord,
  FREIVALDS_ROUNDS,
  type Grant,
  type JobId,
  type LeaseKey,
  type MatMulSpec,
  type MatMulSpecInput,
  type OutcomeMap,
  type Projection,
  probesFromWords,
  projectRows,
  type Result,
  applyRecord as realApplyRecord,
  createDurableModel as realCreateDurableModel,
  fromSnapshot as realFromSnapshot,
  restoreCoreState as realRestoreCoreState,
  step as realStep,
  toSnapshot as realToSnapshot,
  ShardStatus,
  type StepResult,
  type TileBounds,
  type TileCheck,
  tileBounds,
  type WorkerId,
} from "@dce/core";
import { type ChaosPart, checkPoisonEnd, drawChaosScenario, type SimMode } from "./chaos-modes.js";
import { EventQueue } from "./event-queue.js";
import {
  computeTile,
  contentId,
  FINGERPRINTS,
  type Fingerprint,
  type Matrix,
  multiply,
  randomBlobId,
  randomMatrix,
  sameBytes,
  writeTile,
} from "./matrix.js";
import { Oracle, SimViolation } from "./oracle.js";
import { createRng, type Rng } from "./prng.js";
import { type Corrupter, QuarantineWatch } from "./quarantine-watch.js";

/** The parts of the core the simulator runs; a test can pass a modified copy (mutation checks). */
export interface SimCore {
  readonly step: typeof realStep;
  readonly createDurableModel: typeof realCreateDurableModel;
  readonly applyRecord: typeof realApplyRecord;
  readonly restoreCoreState: typeof realRestoreCoreState;
  readonly toSnapshot: typeof realToSnapshot;
  readonly fromSnapshot: typeof realFromSnapshot;
}

/** The core from `@dce/core`. */
export const REAL_CORE: SimCore = {
  step: realStep,
  createDurableModel: realCreateDurableModel,
  applyRecord: realApplyRecord,
  restoreCoreState: realRestoreCoreState,
  toSnapshot: realToSnapshot,
  fromSnapshot: realFromSnapshot,
};

export interface SimOptions {
  /** Core to run (default: the real one). */
  readonly core?: SimCore;
  /** Called with one line per simulated event (DCE_SIM_VERBOSE=1). */
  readonly trace?: (line: string) => void;
  /**
   * When a reply may leave the coordinator. "commit-horizon" (default) is what the
   * coordinator shell's `#apply` does: every reply that acknowledges something or hands
   * out epochs (SubmitJob, CompleteShards, FailShard, AcquireShards) waits until everything
   * appended before it is durable, so an idempotent repeat cannot acknowledge a job a crash
   * would take back, and no grant leaves before its epoch reservation is durable.
   * "own-records" is the shell's former rule, kept to replay what it got wrong (README):
   * a reply waits for the fsync only if its own step appended records.
   */
  readonly replyGating?: "own-records" | "commit-horizon";
  /** The kind of run drawn from the seed (chaos-modes.ts); default: the usual mixed faults. */
  readonly mode?: SimMode;
}

/** What one run did; the counters show which faults a run of many seeds actually exercised. */
export interface SimStats {
  events: number;
  simMs: number;
  jobs: number;
  shards: number;
  workers: number;
  grants: number;
  backups: number;
  accepted: number;
  rejectedCompletions: number;
  staleCompletionsRejected: number;
  heartbeatsLost: number;
  shardFailures: number;
  releases: number;
  garbledReports: number;
  expired: number;
  coordinatorCrashes: number;
  tornCrashes: number;
  crashPoints: number;
  snapshotRestores: number;
  finalizedAfterRestart: number;
  workerCrashes: number;
  workerPauses: number;
  reregistrations: number;
  dropped: number;
  duplicated: number;
  /** Results a corrupting worker changed on purpose, those the verification rejected, and quarantines. */
  corruptedResults: number;
  corruptRejected: number;
  quarantines: number;
  /** Quarantines of the corrupter alone while it shared its identity with an honest worker. */
  sharedIdentityWorkerQuarantines: number;
  /** Deaths of shards' workers the coordinator noted (lease expiries), and those of the poison shard. */
  shardDeaths: number;
  poisonDeaths: number;
}

/** The outcome of one seed: its stats, or the first violated guarantee. */
export type SimResult = { ok: true; stats: SimStats } | { ok: false; seed: number; error: string; stats: SimStats };

// ---------------------------------------------------------------------------
// Scenario: everything random about a run is drawn here, up front, from the seed.
// ---------------------------------------------------------------------------

interface JobPlan {
  readonly key: string;
  readonly submitAtMs: number;
  readonly spec: MatMulSpecInput;
}

type Fault =
  | { kind: "coord-crash"; downMs: number; torn: boolean }
  | { kind: "worker-crash"; slot: number; comebackMs: number | undefined }
  | { kind: "worker-pause"; slot: number; pauseMs: number };

interface Scenario {
  readonly config: Partial<CoreConfig>;
  readonly ttlMs: number;
  readonly heartbeatMs: number;
  readonly tickMs: number;
  readonly longPollMs: number;
  readonly rpcTimeoutMs: number;
  readonly workers: readonly { build: Fingerprint; threads: number }[];
  readonly jobs: readonly JobPlan[];
  readonly dropP: number;
  readonly dupP: number;
  readonly slowP: number;
  readonly maxDelayMs: number;
  /** "step": records are durable at the end of the step that made them; "group": at a later fsync. */
  readonly fsync: "step" | "group";
  readonly fsyncMaxMs: number;
  /** Extra epochs per reservation (the real shell reserves 100 000; small values test the boundary). */
  readonly epochHeadroom: number;
  readonly computeMs: readonly [number, number];
  readonly slowComputeP: number;
  readonly shardFailP: number;
  readonly releaseP: number;
  /** A buggy worker also reports a tile under a garbled key (one run's epoch, another run's shard). */
  readonly garbledP: number;
  readonly faultEndMs: number;
  readonly faults: readonly { atMs: number; fault: Fault }[];
  /**
   * A named coordinator crash point, hit the `nth` time the run reaches it: "accept" right
   * after a tile is accepted (before the fsync), "fsync" after a group commit is durable
   * but before its replies leave, "finalize" once the last tile is durable but before the
   * result is sealed (the restart must finalise it).
   */
  readonly crashPoint: { at: "accept" | "fsync" | "finalize"; nth: number; downMs: number } | undefined;
  /** Largest clock offset of a restarted coordinator (its clock need not agree with the old one). */
  readonly clockSkewMs: number;
  /** Chance that a restart reads a snapshot of a journal prefix plus the rest of the journal. */
  readonly snapshotP: number;
  /**
   * One worker slot that corrupts a fraction of its results (only when every worker runs
   * one build); with three workers or more, it sometimes presents an honest slot's identity.
   */
  readonly corrupter: Corrupter | undefined;
  /** Workers that die on their own (chaos modes only). */
  readonly chaos?: ChaosPart["chaos"];
  readonly maxEvents?: number;
  readonly invariantEvery?: number;
}

/**
 * Adds the corrupting-worker part of a scenario from its own stream (`vrng`), so the
 * draws of every other part, and so the runs of existing seeds, stay as they were.
 */
function withCorruption(sc: Omit<Scenario, "corrupter">, vrng: Rng): Scenario {
  const oneBuild = sc.workers.every((w) => w.build === sc.workers[0]?.build);
  const n = sc.workers.length;
  const drawn = oneBuild && n >= 2 && vrng.chance(0.35) ? { slot: vrng.int(0, n - 1), p: vrng.pick([0.2, 0.5, 1]) } : undefined;
  const config = { ...sc.config, quarantineAfterRejections: vrng.pick([0, 1, 2, 3]) };
  // A twin leaves at least one worker of another identity to finish the jobs should the shared one go.
  const twin = drawn && n >= 3 && vrng.chance(0.5) ? (drawn.slot + vrng.int(1, n - 1)) % n : undefined;
  return { ...sc, config, corrupter: drawn && { ...drawn, twin } };
}

function drawScenario(rng: Rng, inputs: Map<string, Matrix>): Omit<Scenario, "corrupter"> {
  const ttlMs = rng.pick([150, 300, 600]);
  const nWorkers = rng.int(2, 8);
  const mixedBuilds = rng.chance(0.3);
  const firstBuild = rng.pick(FINGERPRINTS);
  const workers = Array.from({ length: nWorkers }, () => ({
    build: mixedBuilds ? rng.pick(FINGERPRINTS) : firstBuild,
    threads: rng.chance(0.3) ? 2 : 1,
  }));
  const faultEndMs = rng.int(800, 2000);
  const nJobs = rng.chance(0.15) ? 4 : rng.int(1, 3);
  const jobs: JobPlan[] = [];
  for (let j = 0; j < nJobs; j++) {
    const m = rng.int(1, 9);
    const k = rng.int(1, 6);
    const n = rng.int(1, 9);
    const a = randomMatrix(rng, m, k);
    const b = randomMatrix(rng, k, n);
    const blobA = randomBlobId(rng);
    const blobB = randomBlobId(rng);
    inputs.set(blobA, a);
    inputs.set(blobB, b);
    jobs.push({
      key: `key-${j}`,
      submitAtMs: rng.int(0, Math.floor(faultEndMs * 0.6)),
      spec: {
        a: { rows: m, cols: k, blobId: blobA },
        b: { rows: k, cols: n, blobId: blobB },
        tileRows: rng.int(1, 4),
        tileCols: rng.int(1, 4),
        kernel: rng.chance(0.5) ? "auto" : "reference",
      },
    });
  }
  const faults: { atMs: number; fault: Fault }[] = [];
  const at = () => rng.int(0, faultEndMs);
  const nCoord = rng.pick([0, 0, 1, 1, 1, 2, 3]);
  for (let i = 0; i < nCoord; i++) {
    faults.push({ atMs: at(), fault: { kind: "coord-crash", downMs: rng.int(10, 400), torn: rng.chance(0.4) } });
  }
  const nCrash = rng.int(0, 3);
  for (let i = 0; i < nCrash; i++) {
    const comebackMs = rng.chance(0.7) ? rng.int(20, 800) : undefined;
    faults.push({ atMs: at(), fault: { kind: "worker-crash", slot: rng.int(0, nWorkers - 1), comebackMs } });
  }
  const nPause = rng.int(0, 3);
  for (let i = 0; i < nPause; i++) {
    const pauseMs = rng.int(Math.floor(ttlMs * 1.1), ttlMs * 3);
    faults.push({ atMs: at(), fault: { kind: "worker-pause", slot: rng.int(0, nWorkers - 1), pauseMs } });
  }
  const quietNet = rng.chance(0.2);
  return {
    config: {
      leaseTtlMs: ttlMs,
      // Restarts reset attempt counters; a huge budget keeps "every job succeeds" a fair demand.
      maxAttempts: 10_000,
      retryBaseMs: rng.pick([5, 20, 50]),
      retryMaxMs: 200,
      workerTtlMs: rng.pick([ttlMs * 2, ttlMs * 5, 60_000]),
      throttleAfterFailures: rng.pick([2, 3]),
      throttleBaseMs: rng.pick([20, 100]),
      throttleMaxMs: 400,
      stragglerFactor: rng.pick([0, 1.5, 1.5, 3]),
      stragglerMinDoneFraction: rng.pick([0.5, 0.75]),
    },
    ttlMs,
    heartbeatMs: Math.floor(ttlMs / 3),
    tickMs: rng.pick([10, 25, 50]),
    longPollMs: rng.int(ttlMs, ttlMs * 3),
    rpcTimeoutMs: rng.int(Math.floor(ttlMs / 2), ttlMs * 2),
    workers,
    jobs,
    dropP: quietNet ? 0 : rng.pick([0.01, 0.03, 0.08]),
    dupP: quietNet ? 0 : rng.pick([0.01, 0.03, 0.08]),
    slowP: quietNet ? 0 : rng.pick([0.01, 0.05]),
    maxDelayMs: rng.pick([2, 10, 30]),
    fsync: rng.chance(0.3) ? "step" : "group",
    fsyncMaxMs: rng.pick([0, 3, 15]),
    epochHeadroom: rng.pick([0, 1, 7, 100_000]),
    computeMs: rng.pick([
      [2, 20],
      [5, 60],
      [20, 120],
    ] as const),
    slowComputeP: rng.pick([0, 0.05, 0.15]),
    shardFailP: rng.pick([0, 0.02, 0.06]),
    releaseP: rng.pick([0, 0.02]),
    garbledP: rng.pick([0, 0.05]),
    faultEndMs,
    faults: faults.sort((x, y) => x.atMs - y.atMs),
    crashPoint: rng.chance(0.35)
      ? { at: rng.pick(["accept", "fsync", "finalize"] as const), nth: rng.int(1, 8), downMs: rng.int(5, 300) }
      : undefined,
    clockSkewMs: rng.pick([0, 0, 50, 500]),
    snapshotP: rng.pick([0, 0.5]),
  };
}

// ---------------------------------------------------------------------------
// Messages and events.
// ---------------------------------------------------------------------------

type Req =
  | { t: "submit"; key: string; spec: MatMulSpecInput }
  | { t: "register"; build: Fingerprint; threads: number }
  | { t: "acquire"; workerId: WorkerId; maxShards: number }
  | { t: "heartbeat"; workerId: WorkerId; leases: LeaseKey[] }
  | { t: "complete"; workerId: WorkerId; lease: LeaseKey; tile: Float64Array }
  | { t: "fail"; workerId: WorkerId; lease: LeaseKey; error: string; release: boolean };

/** Who sent a request: a client (job index) or one worker process (slot + incarnation). */
type From = { kind: "client"; job: number } | { kind: "worker"; slot: number; inc: number };

interface Envelope {
  readonly reqId: number;
  readonly from: From;
  readonly req: Req;
}

type Outcome = Result<unknown>;

type SimEvent =
  | { k: "to-coord"; env: Envelope }
  | { k: "reply"; to: From; reqId: number; outcome: Outcome }
  | { k: "client-send"; job: number }
  | { k: "client-timeout"; job: number; reqId: number }
  | { k: "worker-start"; slot: number }
  | { k: "worker-heartbeat"; slot: number; inc: number }
  | { k: "worker-poll"; slot: number; inc: number }
  | { k: "worker-register"; slot: number; inc: number }
  | { k: "worker-computed"; slot: number; inc: number; key: string }
  | { k: "worker-timeout"; slot: number; inc: number; reqId: number }
  | { k: "coord-tick"; inc: number }
  | { k: "coord-fsync"; inc: number }
  | { k: "coord-wake"; inc: number }
  | { k: "coord-deadline"; inc: number; parkId: number }
  | { k: "coord-finalize"; inc: number; jobId: JobId }
  | { k: "coord-restart" }
  | { k: "fault"; fault: Fault }
  | { k: "calm" };

interface Run {
  readonly key: string;
  readonly lease: LeaseKey;
  readonly spec: MatMulSpec;
  readonly bounds: TileBounds;
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

interface SimWorker {
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

interface Client {
  readonly plan: JobPlan;
  jobId: JobId | undefined;
  pendingReqId: number | undefined;
}

/** The coordinator process: everything here is lost when it crashes. */
interface CoordProc {
  readonly inc: number;
  /** This process's clock minus simulated time (Date.now() of another boot, or after an NTP step). */
  readonly clockOffsetMs: number;
  readonly state: CoreState;
  reservedUpTo: number;
  /** Result buffers as the process sees them (page cache); the disk copy lags until fsync. */
  readonly mem: Map<JobId, Float64Array>;
  pendingRecords: DurableRecord[];
  pendingTiles: { jobId: JobId; bounds: TileBounds; cols: number; tile: Float64Array }[];
  /** Replies held until the next fsync makes their records durable. */
  waiting: { env: Envelope; outcome: Outcome }[];
  wakeAfterFsync: boolean;
  fsyncScheduled: boolean;
  wakeScheduled: boolean;
  readonly parked: Map<number, { env: Envelope & { req: Extract<Req, { t: "acquire" }> } }>;
  /** Result buffers to drop once the job's success is durable. */
  readonly releaseOnDurable: Set<JobId>;
  /** Result buffers of ended jobs, dropped at the next fsync (once the end is durable), as the real shell does. */
  readonly discardOnDurable: Set<JobId>;
  /** Per-job verification probes and projection of B (secret, in memory only). */
  readonly verify: Map<JobId, { probes: Float64Array; proj: Projection }>;
}

const CLIENT = asClientId("sim-client");
const leaseKeyOf = (l: LeaseKey): string => `${l.jobId}/${l.shardIndex}@${l.epoch}`;
const fmtOutcome = (o: Outcome): string => (o.ok ? "ok" : `ERR ${o.error.kind}`);
const errKind = (o: Outcome): string => (o.ok ? "ok" : o.error.kind);

// ---------------------------------------------------------------------------

class World {
  readonly rng: Rng;
  /** A second stream for verification probes and corruption, so the main stream's draws are unchanged. */
  readonly vrng: Rng;
  /** Tiles a corrupting worker changed on purpose. */
  readonly corrupted = new WeakSet<Float64Array>();
  /** Identities workers present (their slot's, the same across registrations), and who may be quarantined. */
  readonly quarantine: QuarantineWatch;
  readonly sc: Scenario;
  readonly core: SimCore;
  readonly trace: ((line: string) => void) | undefined;
  readonly horizon: boolean;
  readonly q = new EventQueue<SimEvent>();
  readonly inputs = new Map<string, Matrix>();
  readonly expectedCache = new Map<string, Float64Array>();
  readonly oracle: Oracle;
  readonly stats: SimStats;
  nowMs = 0;
  calm = false;
  reqSeq = 0;
  jobSeq = 0;
  regSeq = 0;
  parkSeq = 0;
  coordInc = 0;
  coord: CoordProc | undefined;
  /** How often each crash point was reached; set when the armed one fires at the end of the handler. */
  readonly crashPointHits = { accept: 0, fsync: 0, finalize: 0 };
  crashAtEndOfHandler = false;
  // --- the coordinator's disk: survives crashes ---
  readonly journal: DurableRecord[] = [];
  readonly diskBuffers = new Map<JobId, Float64Array>();
  readonly blobs = new Map<string, Float64Array>();
  readonly workers: SimWorker[];
  readonly clients: Client[];
  /** Core steps so far. */
  steps = 0;
  /** Jobs that ended (failed) in the current step; their leases are gone with them. */
  jobsEnded: JobId[] = [];
  /** Idempotency key of every job id ever created. */
  readonly keyOf = new Map<JobId, string>();
  /** Build of every worker id ever registered. */
  readonly buildOf = new Map<WorkerId, Fingerprint>();

  constructor(
    readonly seed: number,
    opts: SimOptions,
  ) {
    this.rng = createRng(seed);
    this.vrng = createRng((seed ^ 0x5f3759df) >>> 0);
    const mode = opts.mode ?? "default";
    this.sc =
      mode === "default"
        ? withCorruption(drawScenario(this.rng, this.inputs), this.vrng)
        : drawChaosScenario(mode, this.rng, this.inputs);
    this.quarantine = new QuarantineWatch(this.sc.corrupter, this.sc.config.quarantineAfterRejections ?? 0);
    this.core = opts.core ?? REAL_CORE;
    this.horizon = (opts.replyGating ?? "commit-horizon") === "commit-horizon";
    this.trace = opts.trace;
    this.oracle = new Oracle({
      leaseTtlMs: this.sc.ttlMs,
      diskBuffer: (id) => this.diskBuffers.get(id),
      blob: (id) => this.blobs.get(id),
      expected: (spec, fp) => this.expected(spec, fp),
      failureExpected: (jobId) => this.isPoisonJob(jobId),
    });
    this.workers = this.sc.workers.map((w, slot) => ({
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
    this.clients = this.sc.jobs.map((plan) => ({ plan, jobId: undefined, pendingReqId: undefined }));
    this.stats = {
      events: 0,
      simMs: 0,
      jobs: this.sc.jobs.length,
      shards: 0,
      workers: this.sc.workers.length,
      grants: 0,
      backups: 0,
      accepted: 0,
      rejectedCompletions: 0,
      staleCompletionsRejected: 0,
      heartbeatsLost: 0,
      shardFailures: 0,
      releases: 0,
      garbledReports: 0,
      expired: 0,
      coordinatorCrashes: 0,
      tornCrashes: 0,
      crashPoints: 0,
      snapshotRestores: 0,
      finalizedAfterRestart: 0,
      workerCrashes: 0,
      workerPauses: 0,
      reregistrations: 0,
      dropped: 0,
      duplicated: 0,
      corruptedResults: 0,
      corruptRejected: 0,
      shardDeaths: 0,
      poisonDeaths: 0,
      quarantines: 0,
      sharedIdentityWorkerQuarantines: 0,
    };
  }

  /** The coordinator's clock: what the core sees as `nowMs`. */
  cnow(c: CoordProc): number {
    return this.nowMs + c.clockOffsetMs;
  }

  /** True when the armed crash point `at` is reached now. */
  crashPointHit(at: "accept" | "fsync" | "finalize"): boolean {
    const cp = this.sc.crashPoint;
    if (!cp || cp.at !== at || this.calm) return false;
    return ++this.crashPointHits[at] === cp.nth;
  }

  log(line: string): void {
    if (this.trace) this.trace(`t=${String(this.nowMs).padStart(6)} ${line}`);
  }

  at(delayMs: number, e: SimEvent): void {
    this.q.push(this.nowMs + delayMs, e);
  }

  expected(spec: MatMulSpec, fp: string): Float64Array {
    const key = `${spec.a.blobId}/${spec.b.blobId}/${fp}`;
    let c = this.expectedCache.get(key);
    if (!c) {
      const a = this.inputs.get(spec.a.blobId);
      const b = this.inputs.get(spec.b.blobId);
      if (!a || !b || (fp !== "sim-asc" && fp !== "sim-desc")) this.oracle.fail(`no inputs or unknown build ${fp}`);
      c = multiply(a, b, fp);
      this.expectedCache.set(key, c);
    }
    return c;
  }

  // ---- network ------------------------------------------------------------

  delay(): number {
    let d = this.rng.int(1, this.sc.maxDelayMs);
    if (!this.calm && this.rng.chance(this.sc.slowP)) d += this.rng.int(0, this.sc.ttlMs * 2);
    return d;
  }

  /** Sends a message through the faulty network: it may be dropped, delayed, reordered or duplicated. */
  transmit(e: SimEvent, what: string): void {
    if (!this.calm && this.rng.chance(this.sc.dropP)) {
      this.stats.dropped++;
      if (this.trace) this.log(`net drop ${what}`);
      return;
    }
    this.at(this.delay(), e);
    if (!this.calm && this.rng.chance(this.sc.dupP)) {
      this.stats.duplicated++;
      if (this.trace) this.log(`net dup ${what}`);
      this.at(this.delay(), e);
    }
  }

  // ---- coordinator shell ----------------------------------------------------

  /** Feeds one event to the core and carries out its effects like the real shell. */
  apply<E extends CoreEvent>(
    c: CoordProc,
    event: E,
    tile?: Float64Array,
  ): { out: StepResult<OutcomeMap[E["type"]]>; persisted: boolean } {
    const out = this.core.step(c.state, event);
    let persisted = false;
    let wake = false;
    let writes = 0;
    for (const fx of out.effects) {
      switch (fx.type) {
        case "persist":
          if (fx.record.type === "job-ended") this.jobsEnded.push(fx.record.jobId);
          if (fx.record.type === "shard-died") {
            this.stats.shardDeaths++;
            if (this.isPoisonJob(fx.record.jobId) && fx.record.shardIndex === this.sc.chaos?.poison?.shard)
              this.stats.poisonDeaths++;
          }
          c.pendingRecords.push(fx.record);
          persisted = true;
          if (this.trace) this.log(`  persist ${fx.record.type} ${JSON.stringify(fx.record).slice(0, 140)}`);
          break;
        case "prepare-result": {
          const buf = new Float64Array(fx.rows * fx.cols);
          c.mem.set(fx.jobId, buf);
          this.diskBuffers.set(fx.jobId, new Float64Array(fx.rows * fx.cols));
          break;
        }
        case "write-tile": {
          writes++;
          const buf = c.mem.get(fx.jobId);
          if (!tile) this.oracle.fail(`write-tile for ${fx.jobId}/${fx.shardIndex} on a ${event.type} event`);
          if (!buf) this.oracle.fail(`write-tile for ${fx.jobId}/${fx.shardIndex} without a result buffer`);
          const job = c.state.jobs.get(fx.jobId);
          if (!job) this.oracle.fail(`write-tile for unknown job ${fx.jobId}`);
          const size = (fx.bounds.rowEnd - fx.bounds.rowStart) * (fx.bounds.colEnd - fx.bounds.colStart);
          if (size !== tile.length) this.oracle.fail(`write-tile bounds hold ${size} values; the tile has ${tile.length}`);
          writeTile(buf, job.plan.cols, fx.bounds, tile);
          c.pendingTiles.push({ jobId: fx.jobId, bounds: fx.bounds, cols: job.plan.cols, tile });
          if (this.trace) this.log(`  write-tile ${fx.jobId}/${fx.shardIndex}`);
          break;
        }
        case "finalize-result":
          // The real shell seals the result after the current reply (setImmediate).
          this.at(this.rng.int(0, 3), { k: "coord-finalize", inc: c.inc, jobId: fx.jobId });
          break;
        case "discard-result":
          c.discardOnDurable.add(fx.jobId);
          break;
        case "shards-available":
          wake = true;
          break;
        case "job-changed":
          break;
        case "log":
          if (this.trace) this.log(`  log ${fx.level} ${fx.msg} ${JSON.stringify(fx.fields)}`);
          break;
      }
    }
    if (writes > 1) this.oracle.fail(`one ${event.type} wrote ${writes} tiles`);
    if (event.type !== "ticked") this.flushJobsEnded(); // a tick's wait for the oracle's expiry count
    if (writes > 0 && this.crashPointHit("accept")) this.crashAtEndOfHandler = true;
    // Every step, or every n-th in the big runs of a chaos mode (the check reads every shard).
    const broken = ++this.steps % (this.sc.invariantEvery ?? 1) === 0 ? checkInvariants(c.state) : [];
    if (broken.length > 0) this.oracle.fail(`checkInvariants after ${event.type}: ${broken.join("; ")}`);
    // Like the real shell, long-polls are woken only once the step's records are durable.
    if (wake) {
      if (persisted) c.wakeAfterFsync = true;
      else this.scheduleWake(c);
    }
    if (persisted) this.scheduleFsync(c);
    return { out, persisted };
  }

  scheduleWake(c: CoordProc): void {
    if (c.wakeScheduled) return;
    c.wakeScheduled = true;
    this.at(0, { k: "coord-wake", inc: c.inc });
  }

  scheduleFsync(c: CoordProc): void {
    if (this.sc.fsync === "step" || c.fsyncScheduled) return;
    c.fsyncScheduled = true;
    this.at(this.rng.int(0, this.sc.fsyncMaxMs), { k: "coord-fsync", inc: c.inc });
  }

  /** Group commit: synced tiles first, then the records; then held replies leave and long-polls wake. */
  fsync(c: CoordProc): void {
    c.fsyncScheduled = false;
    this.syncTiles(c);
    const records = c.pendingRecords;
    c.pendingRecords = [];
    for (const r of records) this.makeDurable(r);
    if (records.length > 0 && this.crashPointHit("fsync")) {
      // Durable, but the process dies before any reply leaves.
      c.waiting = [];
      this.crashAtEndOfHandler = true;
      return;
    }
    for (const id of c.discardOnDurable) {
      c.mem.delete(id);
      this.diskBuffers.delete(id);
    }
    c.discardOnDurable.clear();
    for (const id of c.releaseOnDurable) {
      if (this.oracle.durableSucceeded(id) !== undefined) {
        c.mem.delete(id);
        this.diskBuffers.delete(id);
        c.releaseOnDurable.delete(id);
      }
    }
    const waiting = c.waiting;
    c.waiting = [];
    for (const w of waiting) this.sendReply(w.env, w.outcome);
    if (c.wakeAfterFsync) {
      c.wakeAfterFsync = false;
      this.scheduleWake(c);
    }
  }

  syncTiles(c: CoordProc): void {
    for (const t of c.pendingTiles) {
      const disk = this.diskBuffers.get(t.jobId);
      if (disk) writeTile(disk, t.cols, t.bounds, t.tile);
    }
    c.pendingTiles = [];
  }

  makeDurable(r: DurableRecord): void {
    this.journal.push(r);
    this.oracle.onDurable(r);
  }

  /** Ends a handler: with "step" durability the records are on disk before the next event. */
  endHandler(c: CoordProc): void {
    if (this.crashAtEndOfHandler) {
      this.crashAtEndOfHandler = false;
      this.stats.crashPoints++;
      if (this.trace) this.log(`crash point ${this.sc.crashPoint?.at} #${this.sc.crashPoint?.nth} reached`);
      this.crashCoordinator(false);
      this.at(this.sc.crashPoint?.downMs ?? 0, { k: "coord-restart" });
      return;
    }
    if (this.sc.fsync === "step" && (c.pendingRecords.length > 0 || c.waiting.length > 0)) {
      this.fsync(c);
      if (this.crashAtEndOfHandler) this.endHandler(c);
    }
  }

  reply(c: CoordProc, env: Envelope, outcome: Outcome, persisted: boolean): void {
    const t = env.req.t;
    // Grants count too: their epochs must be covered by a durable reservation before they leave.
    const acknowledges = t === "submit" || t === "complete" || t === "fail" || t === "acquire";
    const gated = persisted || (this.horizon && acknowledges && (c.pendingRecords.length > 0 || c.waiting.length > 0));
    if (gated) {
      c.waiting.push({ env, outcome });
      this.scheduleFsync(c);
    } else {
      this.sendReply(env, outcome);
    }
  }

  /** A reply leaves the coordinator process. */
  sendReply(env: Envelope, outcome: Outcome): void {
    const req = env.req;
    if (outcome.ok) {
      if (req.t === "acquire") this.oracle.onGrantsReleased(outcome.value as Grant[]);
      else if (req.t === "complete") this.oracle.onCompletionAcked(req.lease);
      else if (req.t === "submit") {
        const v = outcome.value as OutcomeMap["job-submitted"] extends Result<infer T> ? T : never;
        this.oracle.onSubmitAcked(`${CLIENT}\u0000${req.key}`, req.key, v.jobId);
      }
    }
    this.transmit({ k: "reply", to: env.from, reqId: env.reqId, outcome }, `reply ${req.t} #${env.reqId}`);
  }

  onRequest(c: CoordProc, env: Envelope): void {
    const req = env.req;
    const now = this.cnow(c);
    const who = env.from.kind === "client" ? `client${env.from.job}` : `w${env.from.slot}`;
    switch (req.t) {
      case "submit": {
        const jobId = asJobId(`job-${++this.jobSeq}`);
        const { out, persisted } = this.apply(c, {
          type: "job-submitted",
          nowMs: now,
          clientId: CLIENT,
          idempotencyKey: req.key,
          spec: req.spec,
          jobId,
        });
        if (this.trace)
          this.log(
            `coord<-${who} submit ${req.key} → ${fmtOutcome(out.outcome)}${out.outcome.ok ? ` ${out.outcome.value.jobId}` : ""}`,
          );
        if (out.outcome.ok && out.outcome.value.created) {
          this.keyOf.set(out.outcome.value.jobId, req.key);
          this.oracle.onJobCreated(`${CLIENT}\u0000${req.key}`, req.key, out.outcome.value.jobId);
        }
        this.reply(c, env, out.outcome, persisted);
        return;
      }
      case "register": {
        const workerId = asWorkerId(`w${env.from.kind === "worker" ? env.from.slot : "?"}.${++this.regSeq}`);
        this.buildOf.set(workerId, req.build);
        const { out, persisted } = this.apply(c, {
          type: "worker-registered",
          nowMs: now,
          workerId,
          name: workerId,
          kernels: [{ name: "reference", fingerprint: req.build }],
          threads: req.threads,
          identity: this.quarantine.identityOf(workerId),
        });
        if (this.trace) this.log(`coord<-${who} register → ${fmtOutcome(out.outcome)} ${workerId}`);
        this.reply(c, env, out.outcome, persisted);
        return;
      }
      case "acquire":
        this.serveAcquire(c, env as Envelope & { req: typeof req }, false);
        return;
      case "heartbeat": {
        const { out, persisted } = this.apply(c, {
          type: "heartbeat-received",
          nowMs: now,
          workerId: req.workerId,
          leases: req.leases,
        });
        if (out.outcome.ok) {
          this.oracle.onHeartbeat(req.workerId, out.outcome.value, now);
          for (const ch of out.outcome.value) if (ch.state !== "active") this.stats.heartbeatsLost++;
        }
        if (this.trace)
          this.log(
            `coord<-${who} heartbeat ${req.workerId} [${req.leases.map(leaseKeyOf).join(" ")}] → ${
              out.outcome.ok ? out.outcome.value.map((ch) => ch.state).join(",") : fmtOutcome(out.outcome)
            }`,
          );
        this.reply(c, env, out.outcome, persisted);
        return;
      }
      case "complete": {
        const verdict = this.verifyResult(c, req.workerId, req.lease, req.tile);
        if (verdict !== undefined && !verdict.ok) {
          this.onRejectedResult(c, env, req, verdict.reason);
          return;
        }
        const { out, persisted } = this.apply(
          c,
          { type: "shard-completed", nowMs: now, workerId: req.workerId, lease: req.lease, sizeBytes: req.tile.length * 8 },
          req.tile,
        );
        if (this.trace) this.log(`coord<-${who} complete ${req.workerId} ${leaseKeyOf(req.lease)} → ${fmtOutcome(out.outcome)}`);
        this.oracle.onCompletion(req.workerId, req.lease, out.outcome.ok, errKind(out.outcome), now);
        if (out.outcome.ok) this.stats.accepted++;
        else {
          this.stats.rejectedCompletions++;
          const kind = out.outcome.error.kind;
          if (kind === "stale-fence" || kind === "lease-lost" || kind === "already-completed")
            this.stats.staleCompletionsRejected++;
        }
        this.reply(c, env, out.outcome, persisted);
        return;
      }
      case "fail": {
        const { out, persisted } = this.apply(c, {
          type: "shard-failed",
          nowMs: now,
          workerId: req.workerId,
          lease: req.lease,
          error: req.error,
          release: req.release,
          jitter: this.rng.float(),
        });
        if (this.trace)
          this.log(
            `coord<-${who} ${req.release ? "release" : "fail"} ${req.workerId} ${leaseKeyOf(req.lease)} → ${fmtOutcome(out.outcome)}`,
          );
        this.oracle.onFailure(req.workerId, req.lease, out.outcome.ok, errKind(out.outcome), now);
        this.reply(c, env, out.outcome, persisted);
        return;
      }
    }
  }

  /**
   * Checks a result like the coordinator shell: only for a live lease and a tile of the
   * right size (anything else the core refuses anyway), with Freivalds' test from the core.
   * An honest tile must pass and a corrupted one must fail, whatever the probes.
   */
  verifyResult(c: CoordProc, workerId: WorkerId, lease: LeaseKey, tile: Float64Array): TileCheck | undefined {
    const pre = checkCompletion(c.state, workerId, lease, this.cnow(c));
    if (!pre.ok) return undefined;
    const job = pre.value.job;
    const { plan } = job;
    const bd = tileBounds(plan, lease.shardIndex);
    const m = bd.rowEnd - bd.rowStart;
    const n = bd.colEnd - bd.colStart;
    if (tile.length !== m * n) return undefined;
    const a = this.inputs.get(job.spec.a.blobId);
    const b = this.inputs.get(job.spec.b.blobId);
    if (!a || !b) this.oracle.fail(`job ${job.id} names unknown input blobs`);
    let v = c.verify.get(job.id);
    if (!v) {
      const rounds = FREIVALDS_ROUNDS;
      const words = Uint32Array.from({ length: rounds * plan.cols }, () => this.vrng.u32());
      const probes = probesFromWords(words, rounds, plan.cols);
      const proj = createProjection(plan.inner, rounds, { cols: plan.cols, tileCols: plan.tileCols });
      projectRows(proj, probes, b.data, 0, plan.inner);
      v = { probes, proj };
      c.verify.set(job.id, v);
    }
    const aRows = a.data.subarray(bd.rowStart * plan.inner, bd.rowEnd * plan.inner);
    const verdict = checkTileRows(v.proj, v.probes, bd.colStart, tile, n, aRows, 0, m);
    const where = `${leaseKeyOf(lease)} from ${workerId}`;
    if (!verdict.ok && !this.corrupted.has(tile)) this.oracle.fail(`honest result ${where} rejected: ${verdict.reason}`);
    if (verdict.ok && this.corrupted.has(tile)) this.oracle.fail(`corrupted result ${where} passed verification`);
    return verdict;
  }

  /** A result failed verification: the core records it (and may quarantine); the worker gets FAILED_PRECONDITION. */
  onRejectedResult(c: CoordProc, env: Envelope, req: Extract<Req, { t: "complete" }>, reason: string): void {
    const now = this.cnow(c);
    const { out, persisted } = this.apply(c, {
      type: "shard-rejected",
      nowMs: now,
      workerId: req.workerId,
      lease: req.lease,
      reason,
    });
    if (this.trace) this.log(`coord<-w complete ${req.workerId} ${leaseKeyOf(req.lease)} → REJECTED ${fmtOutcome(out.outcome)}`);
    this.stats.corruptRejected++;
    const identity = this.quarantine.identityOf(req.workerId);
    const wrong = this.quarantine.onRejected(req.workerId, c.state);
    if (wrong !== undefined) this.oracle.fail(wrong);
    if (out.outcome.ok) {
      const q = out.outcome.value;
      if (q.quarantined) this.stats.quarantines++;
      if (q.quarantined && !q.identityQuarantined && this.sc.corrupter?.twin !== undefined)
        this.stats.sharedIdentityWorkerQuarantines++;
      this.oracle.onRejected(req.workerId, req.lease, q, now, (w) => this.quarantine.identityOf(w) === identity);
    } else if (out.outcome.error.kind !== "worker-not-found") {
      this.oracle.fail(`shard-rejected answered ${out.outcome.error.kind}`);
    }
    const answer: Outcome = out.outcome.ok
      ? { ok: false, error: { kind: "result-rejected", ...req.lease, message: reason } }
      : out.outcome;
    this.reply(c, env, answer, persisted);
  }

  /** AcquireShards: reserve epochs durably, then grant; with nothing to grant, long-poll until woken or the deadline. */
  serveAcquire(c: CoordProc, env: Envelope & { req: Extract<Req, { t: "acquire" }> }, final: boolean, parkId?: number): void {
    const req = env.req;
    let reserved = false;
    if (c.state.nextEpoch + req.maxShards > c.reservedUpTo) {
      const upTo = c.state.nextEpoch + req.maxShards + this.sc.epochHeadroom;
      c.reservedUpTo = upTo;
      c.pendingRecords.push({ type: "epochs-reserved", upTo });
      this.scheduleFsync(c);
      reserved = true;
    }
    const { out, persisted } = this.apply(c, {
      type: "shards-requested",
      nowMs: this.cnow(c),
      workerId: req.workerId,
      maxShards: req.maxShards,
    });
    const gated = reserved || persisted;
    if (out.outcome.ok) {
      const job = (id: JobId) => c.state.jobs.get(id);
      for (const g of out.outcome.value) {
        const j = job(g.lease.jobId);
        const isBackup = j !== undefined && j.shardBackupEpoch[g.lease.shardIndex] === g.lease.epoch;
        if (isBackup) this.stats.backups++;
        this.stats.grants++;
        this.oracle.onGrant(req.workerId, g, this.cnow(c), j?.fingerprint ?? "?", this.buildOf.get(req.workerId));
      }
    }
    const grants = out.outcome.ok ? out.outcome.value : [];
    if (!out.outcome.ok || grants.length > 0 || final) {
      if (parkId !== undefined) c.parked.delete(parkId);
      if (this.trace)
        this.log(
          `coord<-w${env.from.kind === "worker" ? env.from.slot : "?"} acquire ${req.workerId} max=${req.maxShards} → ${
            out.outcome.ok ? `[${grants.map((g) => leaseKeyOf(g.lease)).join(" ")}]` : fmtOutcome(out.outcome)
          }`,
        );
      this.reply(c, env, out.outcome, gated);
      return;
    }
    if (parkId === undefined) {
      const id = ++this.parkSeq;
      c.parked.set(id, { env });
      this.at(this.sc.longPollMs, { k: "coord-deadline", inc: c.inc, parkId: id });
    }
  }

  finalize(c: CoordProc, jobId: JobId): void {
    const job = c.state.jobs.get(jobId);
    const buf = c.mem.get(jobId);
    if (!buf || !job) {
      const { out } = this.apply(c, { type: "result-failed", nowMs: this.cnow(c), jobId, message: "result buffer is gone" });
      if (this.trace) this.log(`coord finalize ${jobId}: no buffer → ${fmtOutcome(out.outcome)}`);
      return;
    }
    if (job.finalizing && !sameBytes(buf, this.expected(job.spec, job.fingerprint))) {
      this.oracle.fail(`sealing ${jobId}: C differs from the single-process ${job.fingerprint} multiply`);
    }
    const blobId = contentId(buf);
    if (!this.blobs.has(blobId)) this.blobs.set(blobId, buf.slice()); // blobs are fsynced before they are named
    const { out, persisted } = this.apply(c, { type: "result-finalized", nowMs: this.cnow(c), jobId, resultBlobId: blobId });
    if (this.trace) this.log(`coord finalize ${jobId} → ${fmtOutcome(out.outcome)} ${blobId}`);
    if (persisted) c.releaseOnDurable.add(jobId);
  }

  crashCoordinator(torn: boolean): void {
    const c = this.coord;
    if (!c) return;
    this.stats.coordinatorCrashes++;
    if (torn && this.sc.fsync === "group" && c.pendingRecords.length > 0) {
      // Killed mid-commit: tiles were synced, the journal holds a prefix (the torn tail is truncated).
      this.stats.tornCrashes++;
      this.syncTiles(c);
      const keep = this.rng.int(0, c.pendingRecords.length);
      for (const r of c.pendingRecords.slice(0, keep)) this.makeDurable(r);
      if (this.trace) this.log(`COORDINATOR CRASH mid-fsync: ${keep}/${c.pendingRecords.length} pending records survive`);
    } else {
      if (this.trace)
        this.log(`COORDINATOR CRASH: ${c.pendingRecords.length} pending records and ${c.pendingTiles.length} tile writes lost`);
    }
    this.coord = undefined;
  }

  startCoordinator(): void {
    let model = this.core.createDurableModel();
    let from = 0;
    if (this.journal.length > 0 && this.rng.chance(this.sc.snapshotP)) {
      // A snapshot of a prefix (as the journal writes every 64 MiB), read back from JSON, then the tail.
      from = this.rng.int(0, this.journal.length);
      this.stats.snapshotRestores++;
      for (const r of this.journal.slice(0, from)) this.core.applyRecord(model, r);
      model = this.core.fromSnapshot(JSON.parse(JSON.stringify(this.core.toSnapshot(model))));
    }
    for (const r of this.journal.slice(from)) this.core.applyRecord(model, r);
    const restored = this.core.restoreCoreState(this.sc.config, model);
    const s = restored.state;
    const active = new Set<string>(restored.active);
    for (const id of [...this.diskBuffers.keys()]) if (!active.has(id)) this.diskBuffers.delete(id);
    const mem = new Map<JobId, Float64Array>();
    for (const id of restored.active) {
      const job = s.jobs.get(id);
      if (!job) continue;
      const disk = this.diskBuffers.get(id);
      if (!disk) this.oracle.fail(`active job ${id} has no result buffer on disk after restart`);
      mem.set(id, disk.slice());
    }
    const accepted = new Map<JobId, Map<number, number>>();
    for (const job of s.jobs.values()) {
      const m = new Map<number, number>();
      for (let i = 0; i < job.plan.shardCount; i++)
        if (job.shardStatus[i] === ShardStatus.done) m.set(i, job.shardEpoch[i] as number);
      accepted.set(job.id, m);
    }
    const broken = checkInvariants(s);
    if (broken.length > 0) this.oracle.fail(`checkInvariants after restore: ${broken.join("; ")}`);
    this.oracle.onRestart(accepted, s.nextEpoch);
    const inc = ++this.coordInc;
    const c: CoordProc = {
      inc,
      clockOffsetMs: inc === 1 ? 0 : this.rng.int(-this.sc.clockSkewMs, this.sc.clockSkewMs),
      state: s,
      reservedUpTo: s.nextEpoch,
      mem,
      pendingRecords: [],
      pendingTiles: [],
      waiting: [],
      wakeAfterFsync: false,
      fsyncScheduled: false,
      wakeScheduled: false,
      parked: new Map(),
      releaseOnDurable: new Set(),
      discardOnDurable: new Set(),
      verify: new Map(),
    };
    this.coord = c;
    if (this.trace)
      this.log(
        `coordinator up (incarnation ${inc}): ${s.jobs.size} jobs, nextEpoch ${s.nextEpoch}, toFinalize [${restored.toFinalize.join(" ")}]`,
      );
    for (const id of restored.toFinalize) {
      if (inc > 1) this.stats.finalizedAfterRestart++;
      this.at(0, { k: "coord-finalize", inc, jobId: id });
    }
    this.at(this.sc.tickMs, { k: "coord-tick", inc });
  }

  // ---- workers ---------------------------------------------------------------

  send(w: SimWorker, req: Req, timeoutMs: number): number {
    const reqId = ++this.reqSeq;
    const workerId = req.t === "register" || req.t === "submit" ? undefined : req.workerId;
    w.pending.set(reqId, { req, sentAtMs: this.nowMs, workerId });
    this.transmit(
      { k: "to-coord", env: { reqId, from: { kind: "worker", slot: w.slot, inc: w.inc }, req } },
      `w${w.slot} ${req.t} #${reqId}`,
    );
    this.at(timeoutMs, { k: "worker-timeout", slot: w.slot, inc: w.inc, reqId });
    return reqId;
  }

  startWorker(w: SimWorker): void {
    if (w.up || w.quarantined) return;
    w.inc++;
    w.up = true;
    w.pausedUntilMs = 0;
    w.id = undefined;
    w.registering = false;
    w.polling = false;
    w.runs.clear();
    w.pending.clear();
    if (this.trace) this.log(`worker w${w.slot} starts (process ${w.inc}, ${w.build}, ${w.threads} threads)`);
    this.register(w);
    this.at(this.sc.heartbeatMs, { k: "worker-heartbeat", slot: w.slot, inc: w.inc });
  }

  register(w: SimWorker): void {
    if (w.registering) return;
    w.registering = true;
    this.send(w, { t: "register", build: w.build, threads: w.threads }, this.sc.rpcTimeoutMs);
  }

  /**
   * NOT_FOUND for the worker id: the coordinator forgot us (restart or worker TTL), so
   * register again. Returns true if a newer registration already exists (retry at once).
   */
  reregister(w: SimWorker, staleId: WorkerId | undefined): boolean {
    if (w.id !== undefined && w.id !== staleId) return true;
    if (w.id !== undefined) this.stats.reregistrations++;
    w.id = undefined;
    this.register(w);
    return false;
  }

  /** Refused as quarantined: like the real worker, this one stops and does not come back. */
  quarantineStop(w: SimWorker, error: CoreError): void {
    const wrong = this.quarantine.onRefused(w.slot, error);
    if (wrong !== undefined) this.oracle.fail(wrong);
    if (this.trace) this.log(`worker w${w.slot} quarantined: stops`);
    w.quarantined = true;
    w.up = false;
    w.inc++;
    w.runs.clear();
    w.pending.clear();
  }

  poll(w: SimWorker): void {
    if (!w.up || w.id === undefined || w.polling) return;
    const free = w.threads - w.runs.size;
    if (free <= 0) return;
    w.polling = true;
    this.send(w, { t: "acquire", workerId: w.id, maxShards: free }, this.sc.longPollMs + this.sc.rpcTimeoutMs);
  }

  sendComplete(w: SimWorker, run: Run): void {
    if (w.id === undefined || !run.tile) {
      run.waitingForRegistration = true;
      this.register(w);
      return;
    }
    run.waitingForRegistration = false;
    this.send(w, { t: "complete", workerId: w.id, lease: run.lease, tile: run.tile }, this.sc.rpcTimeoutMs);
  }

  endRun(w: SimWorker, key: string): void {
    if (w.runs.delete(key)) this.poll(w);
  }

  flushJobsEnded(): void {
    for (const id of this.jobsEnded.splice(0)) this.oracle.onJobEnded(id);
  }

  /** True for the job whose shard kills its workers (poison mode), known by its key before its client hears its id. */
  isPoisonJob(jobId: JobId): boolean {
    const p = this.sc.chaos?.poison;
    return p !== undefined && this.keyOf.get(jobId) === this.clients[p.job]?.plan.key;
  }

  onComputed(w: SimWorker, key: string): void {
    const run = w.runs.get(key);
    if (!run || run.tile) return;
    const chaos = this.sc.chaos;
    const poisoned = this.isPoisonJob(run.lease.jobId) && run.lease.shardIndex === chaos?.poison?.shard;
    if (chaos && (poisoned || this.rng.chance(chaos.crashRate))) {
      // Like `worker --chaos-crash-rate` / `--chaos-crash-on-shard`: it dies before reporting, and a respawn loop restarts it.
      this.onFault({ kind: "worker-crash", slot: w.slot, comebackMs: this.rng.int(...chaos.respawnMs) });
      return;
    }
    if (!this.calm && this.rng.chance(this.sc.shardFailP)) {
      this.stats.shardFailures++;
      if (w.id !== undefined)
        this.send(
          w,
          { t: "fail", workerId: w.id, lease: run.lease, error: "simulated kernel error", release: false },
          this.sc.rpcTimeoutMs,
        );
      this.endRun(w, key);
      return;
    }
    if (!this.calm && this.rng.chance(this.sc.releaseP)) {
      this.stats.releases++;
      if (w.id !== undefined)
        this.send(w, { t: "fail", workerId: w.id, lease: run.lease, error: "handed back", release: true }, this.sc.rpcTimeoutMs);
      this.endRun(w, key);
      return;
    }
    const a = this.inputs.get(run.spec.a.blobId);
    const b = this.inputs.get(run.spec.b.blobId);
    if (!a || !b) this.oracle.fail(`grant ${key} names unknown input blobs`);
    run.tile = computeTile(a, b, run.bounds, w.build);
    if (this.sc.corrupter?.slot === w.slot && run.tile.length > 0 && this.vrng.chance(this.sc.corrupter.p)) {
      // Far above any rounding: a NaN, a flipped top exponent bit, or one entry off by a quarter of (1 + |v|).
      const i = this.vrng.int(0, run.tile.length - 1);
      const v = run.tile[i] as number;
      const mode = this.vrng.int(0, 2);
      run.tile[i] = mode === 0 ? Number.NaN : mode === 1 ? flipTopExponentBit(v) : v + (1 + Math.abs(v)) / 4;
      this.corrupted.add(run.tile);
      this.stats.corruptedResults++;
    }
    const other = [...w.runs.values()].find((r) => r.key !== key);
    if (other && w.id !== undefined && !this.calm && this.rng.chance(this.sc.garbledP)) {
      // Must be refused: epochs are unique per grant, so this epoch is not a lease of that shard.
      this.stats.garbledReports++;
      const lease = { jobId: other.lease.jobId, shardIndex: other.lease.shardIndex, epoch: run.lease.epoch };
      this.send(w, { t: "complete", workerId: w.id, lease, tile: run.tile }, this.sc.rpcTimeoutMs);
    }
    this.sendComplete(w, run);
  }

  onWorkerReply(w: SimWorker, reqId: number, outcome: Outcome): void {
    const p = w.pending.get(reqId);
    if (!p) return; // timed out already, or a duplicate: the RPC layer drops it
    w.pending.delete(reqId);
    const req = p.req;
    const notFound = !outcome.ok && outcome.error.kind === "worker-not-found";
    switch (req.t) {
      case "register": {
        w.registering = false;
        if (!outcome.ok && outcome.error.kind === "worker-quarantined") {
          this.quarantineStop(w, outcome.error);
          return;
        }
        if (!outcome.ok) {
          this.at(50, { k: "worker-register", slot: w.slot, inc: w.inc });
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
        if (!outcome.ok && outcome.error.kind === "worker-quarantined") {
          this.quarantineStop(w, outcome.error);
          return;
        }
        if (!outcome.ok) {
          this.at(50, { k: "worker-poll", slot: w.slot, inc: w.inc });
          return;
        }
        for (const g of outcome.value as Grant[]) {
          const key = leaseKeyOf(g.lease);
          if (w.runs.size >= w.threads || w.id === undefined) {
            // More grants than idle threads (a late reply after a re-poll): hand the extra back.
            this.stats.releases++;
            if (w.id !== undefined)
              this.send(
                w,
                { t: "fail", workerId: w.id, lease: g.lease, error: "no idle thread", release: true },
                this.sc.rpcTimeoutMs,
              );
            continue;
          }
          w.runs.set(key, {
            key,
            lease: g.lease,
            spec: g.spec,
            bounds: g.bounds,
            expiresAtMs: this.nowMs + g.ttlMs,
            tile: undefined,
            waitingForRegistration: false,
          });
          const [lo, hi] = this.sc.computeMs;
          let ms = this.rng.int(lo, hi);
          if (!this.calm && this.rng.chance(this.sc.slowComputeP)) ms += this.rng.int(hi, this.sc.ttlMs * 3);
          this.at(ms, { k: "worker-computed", slot: w.slot, inc: w.inc, key });
        }
        if ((outcome.value as Grant[]).length === 0) this.at(this.rng.int(1, 20), { k: "worker-poll", slot: w.slot, inc: w.inc });
        else this.poll(w);
        return;
      }
      case "heartbeat": {
        if (notFound) {
          this.reregister(w, p.workerId);
          return;
        }
        if (!outcome.ok) return;
        for (const ch of outcome.value as OutcomeMap["heartbeat-received"] extends Result<infer T> ? T : never) {
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

  onWorkerTimeout(w: SimWorker, reqId: number): void {
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
        if (this.nowMs < run.expiresAtMs) this.sendComplete(w, run);
        else this.endRun(w, key);
        return;
      }
      default:
        return;
    }
  }

  onHeartbeatTimer(w: SimWorker): void {
    this.at(this.sc.heartbeatMs, { k: "worker-heartbeat", slot: w.slot, inc: w.inc });
    if (w.id === undefined) return;
    const leases = [...w.runs.values()].map((r) => r.lease);
    this.send(w, { t: "heartbeat", workerId: w.id, leases }, Math.max(this.sc.heartbeatMs, 100));
  }

  // ---- clients ---------------------------------------------------------------

  clientSend(job: number): void {
    const cl = this.clients[job];
    if (!cl || cl.jobId !== undefined) return;
    const reqId = ++this.reqSeq;
    cl.pendingReqId = reqId;
    const req: Req = { t: "submit", key: cl.plan.key, spec: cl.plan.spec };
    this.transmit({ k: "to-coord", env: { reqId, from: { kind: "client", job }, req } }, `client${job} submit #${reqId}`);
    this.at(this.sc.rpcTimeoutMs * 2, { k: "client-timeout", job, reqId });
  }

  onClientReply(job: number, reqId: number, outcome: Outcome): void {
    const cl = this.clients[job];
    if (!cl || cl.pendingReqId !== reqId) return;
    cl.pendingReqId = undefined;
    if (!outcome.ok) {
      this.oracle.fail(`submit of ${cl.plan.key} refused: ${outcome.error.kind}`);
    }
    cl.jobId = (outcome.value as { jobId: JobId }).jobId;
  }

  // ---- faults ------------------------------------------------------------------

  onFault(f: Fault): void {
    switch (f.kind) {
      case "coord-crash":
        if (!this.coord) return;
        this.crashCoordinator(f.torn);
        this.at(f.downMs, { k: "coord-restart" });
        return;
      case "worker-crash": {
        const w = this.workers[f.slot];
        if (!w?.up) return;
        this.stats.workerCrashes++;
        if (this.trace) this.log(`WORKER w${w.slot} CRASH (${w.runs.size} runs lost)`);
        w.up = false;
        w.inc++;
        w.runs.clear();
        w.pending.clear();
        if (f.comebackMs !== undefined) this.at(f.comebackMs, { k: "worker-start", slot: w.slot });
        return;
      }
      case "worker-pause": {
        const w = this.workers[f.slot];
        if (!w?.up || w.pausedUntilMs > this.nowMs) return;
        this.stats.workerPauses++;
        w.pausedUntilMs = this.nowMs + f.pauseMs;
        if (this.trace) this.log(`WORKER w${w.slot} PAUSED until t=${w.pausedUntilMs}`);
        return;
      }
    }
  }

  // ---- the loop ------------------------------------------------------------------

  /** The worker an event is for, if that process is still alive; paused workers get it later. */
  workerFor(slot: number, inc: number, e: SimEvent): SimWorker | undefined {
    const w = this.workers[slot];
    if (!w?.up || w.inc !== inc) return undefined;
    if (w.pausedUntilMs > this.nowMs) {
      // SIGSTOP: timers and sockets fire after the pause, in their original order.
      this.q.push(w.pausedUntilMs, e);
      return undefined;
    }
    return w;
  }

  dispatch(e: SimEvent): void {
    switch (e.k) {
      case "to-coord": {
        const c = this.coord;
        if (!c) return; // connection refused: the sender times out
        this.onRequest(c, e.env);
        this.endHandler(c);
        return;
      }
      case "reply": {
        if (e.to.kind === "client") {
          this.onClientReply(e.to.job, e.reqId, e.outcome);
          return;
        }
        const w = this.workerFor(e.to.slot, e.to.inc, e);
        if (w) this.onWorkerReply(w, e.reqId, e.outcome);
        return;
      }
      case "client-send":
        this.clientSend(e.job);
        return;
      case "client-timeout": {
        const cl = this.clients[e.job];
        if (cl && cl.pendingReqId === e.reqId) this.clientSend(e.job);
        return;
      }
      case "worker-start": {
        const w = this.workers[e.slot];
        if (w) this.startWorker(w);
        return;
      }
      case "worker-heartbeat": {
        const w = this.workerFor(e.slot, e.inc, e);
        if (w) this.onHeartbeatTimer(w);
        return;
      }
      case "worker-poll": {
        const w = this.workerFor(e.slot, e.inc, e);
        if (w) this.poll(w);
        return;
      }
      case "worker-register": {
        const w = this.workerFor(e.slot, e.inc, e);
        if (w) this.register(w);
        return;
      }
      case "worker-computed": {
        const w = this.workerFor(e.slot, e.inc, e);
        if (w) this.onComputed(w, e.key);
        return;
      }
      case "worker-timeout": {
        const w = this.workerFor(e.slot, e.inc, e);
        if (w) this.onWorkerTimeout(w, e.reqId);
        return;
      }
      case "coord-tick": {
        const c = this.coord;
        if (!c || c.inc !== e.inc) return;
        const { out } = this.apply(c, { type: "ticked", nowMs: this.cnow(c), jitter: this.rng.float() });
        if (out.outcome.ok) {
          this.stats.expired += out.outcome.value.expired;
          this.oracle.onTick(out.outcome.value.expired, this.cnow(c));
          this.flushJobsEnded();
          if (out.outcome.value.expired > 0) this.log(`coord tick: ${out.outcome.value.expired} leases expired`);
        }
        this.at(this.sc.tickMs, { k: "coord-tick", inc: c.inc });
        this.endHandler(c);
        return;
      }
      case "coord-fsync": {
        const c = this.coord;
        if (!c || c.inc !== e.inc) return;
        this.fsync(c);
        this.endHandler(c);
        return;
      }
      case "coord-wake": {
        const c = this.coord;
        if (!c || c.inc !== e.inc) return;
        c.wakeScheduled = false;
        for (const [id, p] of [...c.parked]) if (c.parked.has(id)) this.serveAcquire(c, p.env, false, id);
        this.endHandler(c);
        return;
      }
      case "coord-deadline": {
        const c = this.coord;
        if (!c || c.inc !== e.inc) return;
        const p = c.parked.get(e.parkId);
        if (p) this.serveAcquire(c, p.env, true, e.parkId);
        this.endHandler(c);
        return;
      }
      case "coord-finalize": {
        const c = this.coord;
        if (!c || c.inc !== e.inc) return;
        if (this.crashPointHit("finalize")) {
          // The last tile becomes durable, then the process dies before sealing: the restart must finalise.
          this.fsync(c);
          this.crashAtEndOfHandler = true;
        } else {
          this.finalize(c, e.jobId);
        }
        this.endHandler(c);
        return;
      }
      case "coord-restart":
        if (!this.coord) this.startCoordinator();
        return;
      case "fault":
        this.onFault(e.fault);
        return;
      case "calm":
        this.calm = true;
        if (this.trace) this.log("CALM: no more faults");
        for (const w of this.workers) if (!w.up) this.at(this.rng.int(0, 50), { k: "worker-start", slot: w.slot });
        return;
    }
  }

  /** True once every job was acknowledged to its client, sealed and durable. */
  finished(): boolean {
    const c = this.coord;
    if (!this.calm || !c || c.pendingRecords.length > 0) return false;
    for (const cl of this.clients) {
      if (cl.jobId === undefined) return false;
      const state = c.state.jobs.get(cl.jobId)?.state;
      if (state !== "succeeded" && !(state === "failed" && this.isPoisonJob(cl.jobId))) return false;
    }
    return true;
  }

  /** Checks the end state: every job succeeded with C byte-identical to the single-process multiply. */
  checkEnd(): void {
    const c = this.coord;
    if (!c) this.oracle.fail("coordinator down at the end");
    if (c.state.jobs.size !== this.clients.length) {
      this.oracle.fail(`${c.state.jobs.size} jobs exist for ${this.clients.length} idempotency keys`);
    }
    for (const cl of this.clients) {
      const id = cl.jobId as JobId;
      const job = c.state.jobs.get(id);
      const poison = this.sc.chaos?.poison;
      if (poison && this.isPoisonJob(id)) {
        const wrong = checkPoisonEnd(job?.state, job?.error ?? "", poison.shard, this.stats.poisonDeaths);
        if (wrong !== undefined) this.oracle.fail(wrong);
        continue;
      }
      if (job?.state !== "succeeded") this.oracle.fail(`job ${id} is ${job?.state ?? "missing"} at the end`);
      this.stats.shards += job.plan.shardCount;
      const blob = this.blobs.get(job.resultBlobId);
      if (!blob) this.oracle.fail(`job ${id} names result blob ${job.resultBlobId}, which is not stored`);
      if (this.oracle.durableSucceeded(id) !== job.resultBlobId) this.oracle.fail(`job ${id}'s success is not durable`);
      const a = this.inputs.get(job.spec.a.blobId);
      const b = this.inputs.get(job.spec.b.blobId);
      if (!a || !b) this.oracle.fail(`job ${id} has unknown inputs`);
      const fp = job.fingerprint;
      if (fp !== "sim-asc" && fp !== "sim-desc") this.oracle.fail(`job ${id} pinned to unknown build ${fp}`);
      if (!sameBytes(blob, multiply(a, b, fp)))
        this.oracle.fail(`job ${id}: C is not byte-identical to the single-process multiply`);
    }
  }

  run(): void {
    const sc = this.sc;
    if (this.trace)
      this.log(
        `scenario: ${sc.workers.length} workers [${sc.workers.map((w) => `${w.build}x${w.threads}`).join(" ")}], ` +
          `${sc.jobs.length} jobs [${sc.jobs.map((j) => `${j.spec.a?.rows}x${j.spec.a?.cols}x${j.spec.b?.cols}/${j.spec.tileRows}x${j.spec.tileCols}@${j.submitAtMs}`).join(" ")}], ` +
          `ttl ${sc.ttlMs}, fsync ${sc.fsync}, drop ${sc.dropP} dup ${sc.dupP} slow ${sc.slowP}, faults until ${sc.faultEndMs}: ` +
          sc.faults.map((f) => `${f.fault.kind}@${f.atMs}`).join(" "),
      );
    this.startCoordinator();
    for (const w of this.workers) this.at(this.rng.int(0, 30), { k: "worker-start", slot: w.slot });
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
      this.nowMs = next.atMs;
      this.oracle.atMs = next.atMs;
      this.stats.events++;
      this.dispatch(next.item);
      if (this.finished()) break;
      if (this.stats.events > maxEvents || this.nowMs > maxMs) {
        const c = this.coord;
        const states = this.clients.map((cl) => {
          const job = cl.jobId === undefined ? undefined : c?.state.jobs.get(cl.jobId);
          return `${cl.plan.key}=${job ? `${job.state} ${job.doneCount}/${job.plan.shardCount} leased ${job.leasedCount}` : "unacknowledged"}`;
        });
        this.oracle.fail(`livelock: not finished after ${this.stats.events} events / ${this.nowMs} ms: ${states.join(", ")}`);
      }
    }
    this.stats.simMs = this.nowMs;
    this.checkEnd();
  }
}

/** Runs one seed. Never throws for a broken guarantee: it returns it (with the time it was found). */
export function runSim(seed: number, opts: SimOptions = {}): SimResult {
  const w = new World(seed, opts);
  try {
    w.run();
    return { ok: true, stats: w.stats };
  } catch (e) {
    w.stats.simMs = w.nowMs;
    const error =
      e instanceof SimViolation
        ? e.message
        : `t=${w.nowMs}: the simulator threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
    return { ok: false, seed, error, stats: w.stats };
  }
}

/** Exposed for tests of the simulator itself. */
export type { CoreError };

/** Flips bit 62 (the top exponent bit): 2^±1024 times the magnitude, or Inf/NaN; 0 becomes 2. */
function flipTopExponentBit(v: number): number {
  const x = new Float64Array([v]);
  const bits = new BigUint64Array(x.buffer);
  bits[0] = (bits[0] as bigint) ^ (1n << 62n);
  return x[0] as number;
}
