// Test-only (not part of the build): the real coordinator in memory on a virtual clock,
// driven one worker or client call at a time, for the observability tests.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CoreConfig, CoreState } from "@dce/core";
import { ErrorReason, type LeaseRef, type ShardLease } from "@dce/proto";
import type { Coordinator } from "../coordinator.js";
import { type InMemoryCoordinator, startInMemoryCoordinator, WORKER_IDENTITY_HEADER } from "../harness/in-memory-coordinator.js";
import type { Clock } from "../ports/clock.js";
import { VirtualClock } from "../ports/virtual-clock.js";

/** The coordinator's tick interval here: so long that it only ticks when {@link Scenario.tick} says. */
const MANUAL_TICK_MS = 1e12;

/** A virtual clock whose coordinator tick the test fires by hand, at the time it chooses. */
class ManualTickClock implements Clock {
  readonly inner = new VirtualClock(1_000_000);
  #tick: (() => void) | undefined;

  nowMs(): number {
    return this.inner.nowMs();
  }

  setTimer(ms: number, fn: () => void): () => void {
    if (ms !== MANUAL_TICK_MS) return this.inner.setTimer(ms, fn);
    this.#tick = fn;
    return () => {
      if (this.#tick === fn) this.#tick = undefined;
    };
  }

  /** Runs the coordinator's tick now (it arms the next one itself). */
  tick(): void {
    const fn = this.#tick;
    this.#tick = undefined;
    fn?.();
  }
}

/** A lease as a worker holds it. */
export interface Held {
  readonly lease: LeaseRef;
  readonly rows: number;
  readonly cols: number;
}

/** Settings of {@link openScenario}. */
export interface ScenarioOptions {
  /** Core tunables over the defaults here (lease TTL 1 s, retries after 10 ms, 3 attempts). */
  readonly core?: Partial<CoreConfig>;
  /** Check results with Freivalds' test (default false): {@link Scenario.reject} needs it. */
  readonly verify?: boolean;
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** The real coordinator, and one call per step a test takes. */
export class Scenario {
  readonly h: InMemoryCoordinator;
  readonly clock: ManualTickClock;
  readonly #identities = new Map<string, string>();
  readonly #cleanup: () => void;
  #expired = 0;

  constructor(h: InMemoryCoordinator, clock: ManualTickClock, cleanup: () => void) {
    this.h = h;
    this.clock = clock;
    this.#cleanup = cleanup;
    h.coordinator.observe((event, out) => {
      if (event.type === "ticked" && out.outcome.ok) this.#expired += (out.outcome.value as { expired: number }).expired;
    });
  }

  get coordinator(): Coordinator {
    return this.h.coordinator;
  }

  get state(): Readonly<CoreState> {
    return this.h.coordinator.state;
  }

  get nowMs(): number {
    return this.clock.nowMs();
  }

  /** Moves virtual time (the coordinator's timers fire on the way, but not its tick) and lets replies go out. */
  async advance(ms: number): Promise<void> {
    this.clock.inner.advance(ms);
    await settle();
  }

  /** Moves time `ms` ahead and ticks: returns how many leases expired. */
  async tick(ms: number): Promise<number> {
    const before = this.#expired;
    await this.advance(ms);
    this.clock.tick();
    await settle();
    return this.#expired - before;
  }

  /** Submits A (m × k) · B (k × n) of zeros in square tiles of `tile`; returns the job id. */
  async submit(m: number, k: number, n: number, tile: number): Promise<string> {
    const a = this.h.putMatrix(m, k, new Float64Array(m * k));
    const b = this.h.putMatrix(k, n, new Float64Array(k * n));
    return (await this.h.submit(a, b, tile, tile)).jobId;
  }

  /** Registers a worker (of certificate identity `identity`, if given); returns its id. */
  async register(name: string, threads = 1, identity?: string): Promise<string> {
    const res = await this.h.workers.registerWorker(
      { name, threads, kernels: [{ name: "reference", fingerprint: "fp" }] },
      this.#as(identity),
    );
    if (identity !== undefined) this.#identities.set(res.workerId, identity);
    return res.workerId;
  }

  async acquire(workerId: string, maxShards: number): Promise<Held[]> {
    const res = await this.h.workers.acquireShards({ workerId, maxShards, waitMs: 0 }, this.#of(workerId));
    return res.leases.map(held);
  }

  /** Reports the right tile (zeros); ok when accepted. */
  complete(workerId: string, g: Held): Promise<{ ok: boolean }> {
    return this.#report(workerId, g, new Float64Array(g.rows * g.cols));
  }

  /** Reports a wrong tile, which verification rejects; ok when rejected as wrong. */
  async reject(workerId: string, g: Held): Promise<{ ok: boolean }> {
    const wrong = new Float64Array(g.rows * g.cols).fill(1);
    const res = await this.h.workers.completeShards(
      { workerId, results: [{ lease: g.lease, payload: { case: "data", value: bytes(wrong) }, computeMs: 1 }] },
      this.#of(workerId),
    );
    await settle();
    return { ok: res.outcomes[0]?.error?.reason === ErrorReason.RESULT_REJECTED };
  }

  /** Reports the shard failed (`release`: handed back unstarted); ok when the coordinator took it. */
  async fail(workerId: string, g: Held, release = false): Promise<{ ok: boolean }> {
    try {
      await this.h.workers.failShard({ workerId, lease: g.lease, error: "boom", release }, this.#of(workerId));
      return { ok: true };
    } catch (e) {
      if (e instanceof ConnectError) return { ok: false };
      throw e;
    }
  }

  /** Lets the coordinator seal a finished job's result (0 ms timers). @throws Error unless the job then succeeded. */
  async finalize(jobId: string): Promise<void> {
    for (let i = 0; i < 3; i++) await this.advance(0);
    const state = this.h.job(jobId)?.state;
    if (state !== "succeeded") throw new Error(`job ${jobId} is ${state} after sealing`);
  }

  async cancel(jobId: string): Promise<void> {
    await this.h.jobs.cancelJob({ jobId, reason: "test" }).catch((e: unknown) => {
      if (!(e instanceof ConnectError) || e.code !== Code.FailedPrecondition) throw e;
    });
  }

  async close(): Promise<void> {
    await this.h.close();
    this.#cleanup();
  }

  async #report(workerId: string, g: Held, tile: Float64Array): Promise<{ ok: boolean }> {
    const res = await this.h.workers.completeShards(
      { workerId, results: [{ lease: g.lease, payload: { case: "data", value: bytes(tile) }, computeMs: 1 }] },
      this.#of(workerId),
    );
    await settle();
    return { ok: res.outcomes[0]?.code === 0 };
  }

  #of(workerId: string) {
    return this.#as(this.#identities.get(workerId));
  }

  #as(identity: string | undefined) {
    return identity === undefined ? {} : { headers: { [WORKER_IDENTITY_HEADER]: identity } };
  }
}

const bytes = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

function held(l: ShardLease): Held {
  const t = l.matmul;
  if (l.lease === undefined || t === undefined) throw new Error("lease without a task");
  return { lease: l.lease, rows: t.rowEnd - t.rowStart, cols: t.colEnd - t.colStart };
}

/** Opens the real coordinator in memory at virtual time 1 000 000 ms. Close it after the test. */
export async function openScenario(o: ScenarioOptions = {}): Promise<Scenario> {
  const clock = new ManualTickClock();
  const spillDir = o.verify ? mkdtempSync(join(tmpdir(), "dce-scenario-")) : undefined;
  const core = { retryBaseMs: 10, retryMaxMs: 10, ...o.core };
  const h = await startInMemoryCoordinator({
    clock,
    tickIntervalMs: MANUAL_TICK_MS,
    coordinator: {
      leaseTtlMs: o.core?.leaseTtlMs ?? 1_000,
      maxAttempts: o.core?.maxAttempts ?? 3,
      verify: o.verify ?? false,
      ...(o.core?.quarantineAfterRejections === undefined ? {} : { quarantineAfter: o.core.quarantineAfterRejections }),
    },
    core,
    ...(spillDir === undefined ? {} : { spillDir }),
  });
  return new Scenario(h, clock, () => {
    if (spillDir !== undefined) rmSync(spillDir, { recursive: true, force: true });
  });
}
