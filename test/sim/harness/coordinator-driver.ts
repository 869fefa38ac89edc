// The real coordinator (`Coordinator` from @dce/coordinator: its services, shell and core)
// as the simulation runs it: storage in memory that survives crashes, a virtual clock per
// boot driven by the simulation's time, group fsyncs at the simulation's fsync events, and
// crashes that drop the process (plain, mid-fsync with a torn journal tail, or at a named
// crash point) before it is opened again on the same storage.
import { Coordinator, type CoordinatorConfig, resolveConfig } from "@dce/coordinator";
import { createMemoryStorage, type MemoryStorage, type ResultSinkPort, VirtualClock } from "@dce/coordinator/testing";
import { type CoreEvent, type CoreState, checkInvariants, type JobId, ShardStatus, type StepResult, type step } from "@dce/core";
import pino from "pino";
import { SimViolation } from "../oracle.js";
import { clientKeyOf, type Envelope, type Outcome, type SimGrant } from "./messages.js";
import { commitJudge, stepJudge, verificationJudge, type Watched } from "./step-judge.js";
import { call, clientContext, plainContext, servicesOf } from "./wire-calls.js";
import type { World } from "./world.js";

const LOG = pino({ level: "silent" });
const BASE_CONFIG = resolveConfig({ dataDir: "memory", localStore: false, verify: true, verifyThreads: 1 });

/**
 * Lets every promise continuation of the shell run: a macrotask runs only once the
 * microtask queue is empty, and the shell has no other source of work (no I/O, no real
 * timers), so afterwards it is quiescent until the next simulated event.
 */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

type Services = ReturnType<typeof servicesOf>;

export class CoordinatorDriver {
  readonly storage: MemoryStorage;
  readonly #world: World;
  readonly #config: CoordinatorConfig;
  readonly #ctx = plainContext();
  /** Boots so far; the live one's number, or 0 while none is up. */
  #inc = 0;
  #liveInc = 0;
  #c: Coordinator | undefined;
  #services: Services | undefined;
  #clock: VirtualClock | undefined;
  /** This boot's clock minus simulated time (another boot's Date.now(), or an NTP step). */
  #offset = 0;
  #fsyncScheduled = false;
  #finalizeCrash = false;
  /** The request being handed to the coordinator right now, and the id it is to get. */
  #current: Envelope | undefined;
  #nextId: string | undefined;
  #regSeq = 0;
  #jobSeq = 0;
  #otherIds = 0;

  readonly #step: typeof step | undefined;

  /** @param wrappedStep the core's transition function to run instead of the real one (mutation tests). */
  constructor(world: World, spillDir: string | undefined, wrappedStep?: (s: CoreState, e: CoreEvent) => StepResult<unknown>) {
    this.#world = world;
    this.#step = wrappedStep as typeof step | undefined;
    const sc = world.sc;
    this.#config = {
      ...BASE_CONFIG,
      tickIntervalMs: sc.tickMs,
      invariantCheckIntervalMs: 0,
      // Every C sealed after its last tile's reply, as before the small-job path: crashes
      // then fall between acceptance and seal (coverage "finalizedAfterRestart"). The
      // at-once seal is covered by coordinator/src/shell/result-finalizer.test.ts.
      sealAtOnceMaxBytes: 0,
      maxLongPollMs: Math.max(BASE_CONFIG.maxLongPollMs, sc.longPollMs),
      // Verification on the caller's thread: no worker_threads, so a check is part of the call.
      verify: { ...BASE_CONFIG.verify, threads: 0 },
      core: { ...BASE_CONFIG.core, ...sc.config },
    };
    this.storage = createMemoryStorage({ explicitSync: true, ...(spillDir === undefined ? {} : { spillDir }) });
    // Tiles first, then the records: a result file is synced before the journal names its tiles.
    this.storage.journal.observeCommits(() => this.storage.sink.sync());
    this.storage.journal.observeCommits(commitJudge(world, (records) => this.#onDurable(records.length)));
  }

  /** True while a coordinator process is up. */
  get up(): boolean {
    return this.#liveInc !== 0 && this.#c !== undefined;
  }

  /** The live coordinator's core state (read-only). */
  get state(): Readonly<CoreState> | undefined {
    return this.up ? this.#c?.state : undefined;
  }

  /** True when nothing the coordinator wrote is still on its way to disk. */
  get quiet(): boolean {
    return this.storage.journal.heldCommits === 0 && this.storage.journal.recordsInFlight === 0;
  }

  /** Boots a coordinator on the storage: it recovers what the journal holds. */
  async start(): Promise<void> {
    if (this.#liveInc !== 0) return;
    const world = this.#world;
    const { sc, rng, stats, oracle } = world;
    const inc = ++this.#inc;
    this.#liveInc = inc;
    const journal = this.storage.journal;
    journal.release(); // recovery commits at once
    const offset = inc === 1 ? 0 : rng.int(-sc.clockSkewMs, sc.clockSkewMs);
    let snapshotAfter: number | undefined;
    if (journal.committedCount > 0 && rng.chance(sc.snapshotP)) {
      // A snapshot of a prefix (as the journal writes every 64 MiB), read back from JSON, then the tail.
      snapshotAfter = rng.int(0, journal.committedCount);
      stats.snapshotRestores++;
    }
    const clock = new VirtualClock(world.nowMs + offset);
    const alive = () => this.#liveInc === inc;
    const c = await Coordinator.open(this.#config, LOG, {
      storage: {
        openJournal: () => journal.open(snapshotAfter === undefined ? {} : { snapshotAfter }),
        blobs: this.storage.blobs,
        sink: fenced(this.storage.sink, alive),
      },
      clock,
      random: () => rng.float(),
      newId: () => this.#takeId(),
      verifyRandomWords: (n) => Uint32Array.from({ length: n }, () => world.vrng.u32()),
      ...(this.#step ? { step: this.#step } : {}),
      onFatal: (e) => {
        if (alive()) world.violation ??= new SimViolation(`t=${world.nowMs}: the coordinator stopped: ${String(e)}`);
      },
    });
    if (sc.fsync === "group") journal.hold();
    this.#c = c;
    this.#clock = clock;
    this.#offset = offset;
    this.#services = servicesOf(c);
    const watched: Watched = {
      alive,
      state: () => c.state,
      current: () => this.#current,
      crashPoint: (at) => {
        if (at === "finalize") this.#finalizeCrash = true;
        else this.#crashPoint();
      },
    };
    c.observe(stepJudge(world, watched));
    c.observeVerification(verificationJudge(world, watched));
    const s = c.state;
    const accepted = new Map<JobId, Map<number, number>>();
    for (const job of s.jobs.values()) {
      const m = new Map<number, number>();
      for (let i = 0; i < job.plan.shardCount; i++)
        if (job.shardStatus[i] === ShardStatus.done) m.set(i, job.shardEpoch[i] as number);
      accepted.set(job.id, m);
    }
    const broken = checkInvariants(s as CoreState);
    if (broken.length > 0) oracle.fail(`checkInvariants after restore: ${broken.join("; ")}`);
    oracle.onRestart(accepted, s.nextEpoch);
    const toFinalize = [...s.jobs.values()].filter((j) => j.finalizing).map((j) => j.id);
    if (inc > 1) stats.finalizedAfterRestart += toFinalize.length;
    if (world.trace)
      world.log(
        `coordinator up (boot ${inc}): ${s.jobs.size} jobs, nextEpoch ${s.nextEpoch}, toFinalize [${toFinalize.join(" ")}]`,
      );
  }

  /** Kills the coordinator process; `torn`: mid-fsync, keeping a prefix of the records on their way to disk. */
  crash(torn: boolean): void {
    if (!this.up) return;
    const { sc, rng, stats } = this.#world;
    const journal = this.storage.journal;
    stats.coordinatorCrashes++;
    const flying = journal.recordsInFlight;
    this.#liveInc = 0;
    if (torn && sc.fsync === "group" && flying > 0) {
      // Killed mid-commit: tiles were synced, the journal holds a prefix (the torn tail is truncated).
      stats.tornCrashes++;
      this.storage.sink.sync();
      const keep = rng.int(0, flying);
      journal.crash(keep);
      if (this.#world.trace) this.#world.log(`COORDINATOR CRASH mid-fsync: ${keep}/${flying} records in flight survive`);
    } else {
      journal.crash(0);
      if (this.#world.trace) this.#world.log(`COORDINATOR CRASH: ${flying} records in flight lost`);
    }
    this.storage.sink.crash();
    this.#c = undefined;
    this.#services = undefined;
    this.#clock = undefined;
    this.#fsyncScheduled = false;
    this.#finalizeCrash = false;
  }

  /** Hands a request to the coordinator (dropped while it is down: the sender times out). */
  deliver(env: Envelope): void {
    const services = this.#services;
    if (!this.up || services === undefined) return;
    const world = this.#world;
    const inc = this.#liveInc;
    const from = env.from;
    if (world.trace)
      world.log(`coord<-${from.kind === "client" ? `client${from.job}` : `w${from.slot}`} ${env.req.t} #${env.reqId}`);
    if (env.req.t === "register") this.#nextId = `w${from.kind === "worker" ? from.slot : "?"}.${++this.#regSeq}`;
    else if (env.req.t === "submit") this.#nextId = `job-${++this.#jobSeq}`;
    this.#current = env;
    let answer: Promise<Outcome>;
    try {
      // A client with a token (fair-share mode) calls as its principal, as the auth layer sets it.
      const client = env.req.t === "submit" ? env.req.client : undefined;
      answer = call(services, env.req, client ? clientContext(this.#ctx, client) : this.#ctx);
    } catch (e) {
      world.violation ??= new SimViolation(`t=${world.nowMs}: ${env.req.t} threw: ${describe(e)}`);
      return;
    } finally {
      this.#current = undefined;
      this.#nextId = undefined;
    }
    answer.then(
      (outcome) => {
        if (this.#liveInc === inc) this.#reply(env, outcome);
      },
      (e: unknown) => {
        if (this.#liveInc === inc) world.violation ??= new SimViolation(`t=${world.nowMs}: ${env.req.t} threw: ${describe(e)}`);
      },
    );
  }

  /** Moves the coordinator's clock to simulated time `simMs`, firing its timers (ticks, long-poll deadlines, seals) on the way. */
  async advanceTo(simMs: number): Promise<void> {
    const world = this.#world;
    for (;;) {
      const clock = this.#clock;
      if (clock === undefined || !this.up || world.violation) return;
      const target = simMs + this.#offset;
      const next = clock.nextTimerAtMs();
      if (next === undefined || next > target) {
        clock.advance(Math.max(0, target - clock.nowMs()));
        return;
      }
      world.nowMs = Math.max(world.nowMs, next - this.#offset);
      world.oracle.atMs = world.nowMs;
      clock.advance(Math.max(0, next - clock.nowMs()));
      await this.settle();
    }
  }

  /** A group fsync: what the journal holds becomes durable (with the tiles before it). */
  fsync(inc: number): void {
    if (inc !== this.#liveInc) return;
    this.#fsyncScheduled = false;
    this.storage.journal.release();
    this.storage.journal.hold();
  }

  /** Runs the shell until it is quiescent; then a pending crash point, and the next fsync if records wait. */
  async settle(): Promise<void> {
    await drain();
    const { sc, rng } = this.#world;
    const journal = this.storage.journal;
    if (this.#finalizeCrash && this.up) {
      // The last tile becomes durable, then the process dies before sealing: the restart must finalise.
      this.#finalizeCrash = false;
      if (sc.fsync === "group") {
        journal.release();
        journal.hold();
        await drain();
      }
      if (this.up) this.#crashPoint();
    }
    if (this.up && sc.fsync === "group" && journal.heldCommits > 0 && !this.#fsyncScheduled) {
      this.#fsyncScheduled = true;
      this.#world.at(rng.int(0, sc.fsyncMaxMs), { k: "coord-fsync", inc: this.#liveInc });
    }
  }

  #onDurable(records: number): void {
    if (records > 0 && this.up && this.#world.crashPointHit("fsync")) this.#crashPoint(); // durable, no reply left yet
  }

  #crashPoint(): void {
    const world = this.#world;
    const cp = world.sc.crashPoint;
    world.stats.crashPoints++;
    if (world.trace) world.log(`crash point ${cp?.at} #${cp?.nth} reached`);
    this.crash(false);
    world.at(cp?.downMs ?? 0, { k: "coord-restart" });
  }

  /** A reply leaves the coordinator process. */
  #reply(env: Envelope, outcome: Outcome): void {
    const world = this.#world;
    const req = env.req;
    try {
      if (outcome.ok) {
        if (req.t === "acquire") world.oracle.onGrantsReleased(outcome.value as SimGrant[] as never);
        else if (req.t === "complete") world.oracle.onCompletionAcked(req.lease);
        else if (req.t === "submit")
          world.oracle.onSubmitAcked(clientKeyOf(req.key, req.client?.name), req.key, (outcome.value as { jobId: JobId }).jobId);
      }
    } catch (e) {
      world.violation ??= e instanceof SimViolation ? e : new SimViolation(String(e));
      return;
    }
    if (world.trace) world.log(`reply ${req.t} #${env.reqId} → ${outcome.ok ? "ok" : `ERR ${outcome.error.kind}`}`);
    world.net.transmit({ k: "reply", to: env.from, reqId: env.reqId, outcome }, `reply ${req.t} #${env.reqId}`);
  }

  #takeId(): string {
    const id = this.#nextId ?? `id-${++this.#otherIds}`;
    this.#nextId = undefined;
    return id;
  }
}

/** The result sink as one boot reaches it: once that process is dead, its writes go nowhere. */
function fenced(sink: ResultSinkPort, alive: () => boolean): ResultSinkPort {
  return {
    retain: (ids) => alive() && sink.retain(ids),
    has: (id) => sink.has(id),
    admit: (rows, cols) => sink.admit(rows, cols),
    prepare: (id, rows, cols) => alive() && sink.prepare(id, rows, cols),
    writeTile: (id, b, data) => alive() && sink.writeTile(id, b, data),
    flush: (id) => sink.flush(id),
    finalize: (id) => sink.finalize(id),
    release: (id) => alive() && sink.release(id),
    close: () => {},
  } as ResultSinkPort;
}

function describe(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}
