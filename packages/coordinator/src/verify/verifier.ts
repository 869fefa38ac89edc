import { randomFillSync } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { availableParallelism } from "node:os";
import {
  FREIVALDS_ROUNDS,
  PANEL_WIDTH,
  type Plan,
  probePanel,
  probesFromWords,
  type TileBounds,
  type TileCheck,
} from "@dce/core";
import { createThreadPool, type ThreadPool } from "@dce/runtime/thread-pool";
import { projectionPanels } from "./panel-kernel.js";
import { type BandTask, type CheckTask, type ProjectTask, runBand, runCheck, runProject } from "./work.js";

/** Settings of a {@link Verifier}. */
export interface VerifierOptions {
  /** Verification threads; 0 runs everything on the caller's thread (tests). */
  readonly threads: number;
  /** Work of at most this many flops runs inline, skipping a thread hop (tiny tiles). Default 2^18. */
  readonly inlineMaxFlops?: number;
  /** Projections kept in memory, in bytes; least recently used ones are dropped beyond. Default 256 MiB. */
  readonly cacheBytes?: number;
  /** The thread script; default `verify-thread.js` next to this module (in `dist/`). */
  readonly threadUrl?: URL;
  /** Uniformly random 32-bit words; default the operating system's CSPRNG. Tests may pass a seeded source. */
  readonly randomWords?: (count: number) => Uint32Array;
}

/** What {@link Verifier.check} needs to know of a job. */
export interface VerifiableJob {
  readonly id: string;
  readonly plan: Plan;
  /** Paths of A's and B's blob files. */
  readonly aPath: string;
  readonly bPath: string;
}

/** The outcome of checking one result. `ms` is the wall time of the check itself. */
export type Verdict =
  | { readonly ok: true; readonly rowsChecked: number; readonly rowsUnverifiable: number; readonly ms: number }
  | { readonly ok: false; readonly reason: string; readonly ms: number };

/** Default verification threads: a quarter of the cores, at least one, at most four. */
export function defaultVerifyThreads(): number {
  return Math.max(1, Math.min(4, Math.floor(availableParallelism() / 4)));
}

interface Prepared {
  /** The probe panel (cols × 8, see `probePanel`). */
  readonly probes: Float64Array;
  /** The projection of B: blocks × k × 8. */
  readonly w: Float64Array;
  readonly bytes: number;
  /** The A pass of each row band that has had a result, by its first row. */
  readonly bands: Map<number, Band>;
  /** A's file, opened for inline work; closed when the projection is dropped. */
  aFd: number | undefined;
}

/** A row band's sums against every column block: rows × blocks × 8, and the rows' absolute sums. */
interface BandSums {
  readonly y: Float64Array;
  readonly aAbs: Float64Array;
}

interface Band {
  readonly ready: Promise<BandSums>;
  /** Set once the sums are ready, so tiny checks can run without waiting a tick. */
  sums: BandSums | undefined;
}

interface Entry {
  readonly ready: Promise<Prepared>;
  /** Set once the projection is ready, so tiny checks can run without waiting a tick. */
  prepared: Prepared | undefined;
  bytes: number;
  lastUsed: number;
}

/**
 * Checks workers' results with Freivalds' test (see `@dce/core` freivalds) before the
 * coordinator accepts them. Per job it draws secret probes from a CSPRNG and projects B
 * once (w = B·r per column block); per row band, the first result makes one pass over
 * the band's rows of A against every block's projection at once (kept with the job), and
 * each tile then costs one pass over the tile. The products run in WebAssembly SIMD
 * (`panel-kernel.ts`) in a small pool of `worker_threads`, except tiny tasks, which run
 * inline because a thread hop would cost more than the arithmetic.
 */
export class Verifier {
  readonly #inlineMaxFlops: number;
  readonly #cacheBytes: number;
  readonly #randomWords: (count: number) => Uint32Array;
  readonly #pool: VerifyPool | undefined;
  readonly #jobs = new Map<string, Entry>();
  #useClock = 0;
  #cachedBytes = 0;

  constructor(options: VerifierOptions) {
    this.#inlineMaxFlops = options.inlineMaxFlops ?? 1 << 18;
    this.#cacheBytes = options.cacheBytes ?? 256 << 20;
    this.#randomWords = options.randomWords ?? ((n) => randomFillSync(new Uint32Array(n)));
    this.#pool =
      options.threads > 0
        ? new VerifyPool(options.threads, options.threadUrl ?? new URL("./verify-thread.js", import.meta.url))
        : undefined;
  }

  /**
   * Checks the tile `bytes` (row-major little-endian float64 of `bounds`) of `job`.
   * Resolves with the verdict; rejects only when the check itself could not run (a
   * matrix file unreadable, a thread gone), which says nothing about the result.
   */
  async check(job: VerifiableJob, bounds: TileBounds, bytes: Uint8Array): Promise<Verdict> {
    const started = performance.now();
    const prepared = await this.#prepare(job);
    const band = await this.#band(job, prepared, bounds);
    return this.#run(job, prepared, band, bounds, bytes, started);
  }

  /**
   * Checks the tile at once, on the caller's thread, when that is cheap: the job's
   * projection is ready (or cheap to make inline) and the tile is tiny. Undefined when the
   * check must go through {@link check} instead. Throws when a matrix cannot be read.
   */
  checkNow(job: VerifiableJob, bounds: TileBounds, bytes: Uint8Array): Verdict | undefined {
    const m = bounds.rowEnd - bounds.rowStart;
    const n = bounds.colEnd - bounds.colStart;
    if (this.#pool !== undefined && tileFlops(m, n) > this.#inlineMaxFlops) return undefined;
    const started = performance.now();
    void this.#prepare(job).catch(() => {});
    const prepared = this.#jobs.get(job.id)?.prepared;
    if (prepared === undefined) return undefined;
    const band = this.#band(job, prepared, bounds);
    if (band instanceof Promise) {
      band.catch(() => {});
      return undefined;
    }
    const out = this.#run(job, prepared, band, bounds, bytes, started);
    return out instanceof Promise ? undefined : out;
  }

  #run(
    job: VerifiableJob,
    prepared: Prepared,
    band: BandSums,
    bounds: TileBounds,
    bytes: Uint8Array,
    started: number,
  ): Verdict | Promise<Verdict> {
    const { plan } = job;
    const m = bounds.rowEnd - bounds.rowStart;
    const n = bounds.colEnd - bounds.colStart;
    const inline = this.#pool === undefined || tileFlops(m, n) <= this.#inlineMaxFlops;
    const task: CheckTask = {
      kind: "check",
      k: plan.inner,
      tileCols: plan.tileCols,
      blocks: plan.colTiles,
      ...bounds,
      // Inline, the kernel copies the bytes into its memory itself; a thread gets its own
      // copy, transferred (never bytes.slice(): on a Node Buffer, as a tile read from its
      // blob is, that is a view, and the transfer would empty the caller's bytes).
      tile: inline ? bytes : new Uint8Array(bytes.subarray(0, m * n * 8)),
      probes: prepared.probes,
      y: band.y,
      aAbs: band.aAbs,
    };
    const verdict = (result: TileCheck): Verdict => {
      const ms = performance.now() - started;
      return result.ok ? { ...result, ms } : { ok: false, reason: result.reason, ms };
    };
    if (inline || this.#pool === undefined) return verdict(runCheck(task));
    return this.#pool.run(task, [task.tile.buffer as ArrayBuffer]).then((r) => verdict(r as TileCheck));
  }

  /**
   * The A pass of the tile's row band: ready, or on its way (the first result of a band
   * starts it; the band's other tiles wait for the same pass). Inline when cheap, in a
   * thread otherwise. Throws (inline) or rejects when A cannot be read; a failed pass is
   * not kept, so the next result of the band tries again.
   */
  #band(job: VerifiableJob, prepared: Prepared, bounds: TileBounds): BandSums | Promise<BandSums> {
    const known = prepared.bands.get(bounds.rowStart);
    if (known) return known.sums ?? known.ready;
    const { plan } = job;
    const m = bounds.rowEnd - bounds.rowStart;
    const blocks = plan.colTiles;
    const alloc = (len: number) =>
      this.#pool ? new Float64Array(new SharedArrayBuffer(len * 8)) : new Float64Array(new ArrayBuffer(len * 8));
    const sums: BandSums = { y: alloc(m * projectionPanels(blocks) * PANEL_WIDTH), aAbs: alloc(m) };
    const task: BandTask = {
      kind: "band",
      aPath: job.aPath,
      k: plan.inner,
      blocks,
      rowStart: bounds.rowStart,
      rowEnd: bounds.rowEnd,
      w: prepared.w,
      y: sums.y,
      aAbs: sums.aAbs,
    };
    const flops = 2 * m * plan.inner * blocks * PANEL_WIDTH;
    if (this.#pool === undefined || flops <= 4 * this.#inlineMaxFlops) {
      prepared.aFd ??= openSync(job.aPath, "r");
      runBand(task, prepared.aFd);
      this.#keepBand(job.id, prepared, bounds.rowStart, { ready: Promise.resolve(sums), sums }, sums);
      return sums;
    }
    const band: Band = {
      ready: this.#pool.run(task, []).then(() => {
        band.sums = sums;
        return sums;
      }),
      sums: undefined,
    };
    this.#keepBand(job.id, prepared, bounds.rowStart, band, sums);
    band.ready.catch(() => {
      if (prepared.bands.get(bounds.rowStart) === band) prepared.bands.delete(bounds.rowStart);
    });
    return band.ready;
  }

  /** Keeps a band's sums with its job, counted against the cache budget. */
  #keepBand(jobId: string, prepared: Prepared, rowStart: number, band: Band, sums: BandSums): void {
    prepared.bands.set(rowStart, band);
    const entry = this.#jobs.get(jobId);
    // The job was forgotten (or drawn afresh) meanwhile: these sums go with the old projection.
    if (entry === undefined || entry.prepared !== prepared) return;
    const bytes = sums.y.byteLength + sums.aAbs.byteLength;
    entry.bytes += bytes;
    this.#cachedBytes += bytes;
    this.#evict(jobId);
  }

  /** Bytes of tiles waiting for or in a verification thread. */
  get backlogBytes(): number {
    return this.#pool?.backlogBytes ?? 0;
  }

  /** Drops a job's projection (its result is sealed or discarded). */
  forget(jobId: string): void {
    const e = this.#jobs.get(jobId);
    if (!e) return;
    this.#jobs.delete(jobId);
    this.#cachedBytes -= e.bytes;
    void e.ready.then(closeA, () => {});
  }

  /** Stops the threads and drops every projection. Idempotent. */
  async close(): Promise<void> {
    for (const id of [...this.#jobs.keys()]) this.forget(id);
    await this.#pool?.close();
  }

  #prepare(job: VerifiableJob): Promise<Prepared> {
    const known = this.#jobs.get(job.id);
    if (known) {
      known.lastUsed = ++this.#useClock;
      return known.ready;
    }
    const { plan } = job;
    const rounds = FREIVALDS_ROUNDS;
    const blocks = plan.colTiles;
    const lengths = [PANEL_WIDTH * plan.cols, projectionPanels(blocks) * PANEL_WIDTH * plan.inner];
    const bytes = lengths.reduce((x, y) => x + y, 0) * 8;
    const alloc = (len: number) =>
      this.#pool ? new Float64Array(new SharedArrayBuffer(len * 8)) : new Float64Array(new ArrayBuffer(len * 8));
    const probes = alloc(lengths[0] as number);
    // The probes are secret: drawn here, they never leave this process (not logged, not sent).
    probes.set(probePanel(probesFromWords(this.#randomWords(rounds * plan.cols), rounds, plan.cols), plan.cols));
    const prepared: Prepared = { probes, w: alloc(lengths[1] as number), bytes, bands: new Map(), aFd: undefined };
    const task: ProjectTask = {
      kind: "project",
      bPath: job.bPath,
      k: plan.inner,
      cols: plan.cols,
      tileCols: plan.tileCols,
      probes: prepared.probes,
      w: prepared.w,
    };
    let ready: Promise<Prepared>;
    let now: Prepared | undefined;
    if (this.#pool === undefined || 2 * plan.inner * plan.cols * PANEL_WIDTH <= 4 * this.#inlineMaxFlops) {
      try {
        runProject(task);
        now = prepared;
        ready = Promise.resolve(prepared);
      } catch (e) {
        ready = Promise.reject(e);
      }
    } else {
      ready = this.#pool.run(task, []).then(() => {
        entry.prepared = prepared;
        return prepared;
      });
    }
    const entry: Entry = { ready, prepared: now, bytes, lastUsed: ++this.#useClock };
    this.#jobs.set(job.id, entry);
    this.#cachedBytes += bytes;
    // A failed projection is not kept: the next result tries again.
    ready.catch(() => {
      if (this.#jobs.get(job.id) === entry) this.forget(job.id);
    });
    this.#evict(job.id);
    return ready;
  }

  /** Drops least recently used projections beyond the cache budget (never `keep`). */
  #evict(keep: string): void {
    while (this.#cachedBytes > this.#cacheBytes && this.#jobs.size > 1) {
      let oldest: string | undefined;
      let oldestUse = Number.POSITIVE_INFINITY;
      for (const [id, e] of this.#jobs) {
        if (id !== keep && e.lastUsed < oldestUse) {
          oldest = id;
          oldestUse = e.lastUsed;
        }
      }
      if (oldest === undefined) return;
      this.forget(oldest);
    }
  }
}

function closeA(p: Prepared): void {
  if (p.aFd !== undefined) closeSync(p.aFd);
  p.aFd = undefined;
}

/** Flops of the Ĉ pass of an m × n tile (its band's A pass is shared with the band's other tiles). */
function tileFlops(m: number, n: number): number {
  return 2 * m * n * PANEL_WIDTH;
}

/** A task for a verification thread and the buffers that go with it. */
interface PoolTask {
  readonly task: ProjectTask | BandTask | CheckTask;
  readonly transfer: readonly ArrayBuffer[];
}

type PoolReply = { id: number; ok: true; check: TileCheck | undefined } | { id: number; ok: false; error: string };

/**
 * The verification threads, one task each at a time, FIFO beyond (the shared pool of
 * `@dce/runtime/thread-pool`), and the bytes of tiles waiting for or in one, which the
 * coordinator holds to a limit (`maxBacklogBytes`).
 */
class VerifyPool {
  readonly #pool: ThreadPool<PoolTask, TileCheck | undefined>;
  /** Bytes of tiles queued or running. */
  backlogBytes = 0;

  constructor(threads: number, url: URL) {
    this.#pool = createThreadPool<PoolTask, TileCheck | undefined>({
      threads,
      url,
      startThreads: "lazy",
      // A verification thread must never keep the coordinator alive on its own.
      unref: true,
      threadLabel: "verification thread",
      closedMessage: "verifier is closed",
      encode: (id, [t]) => ({ message: { id, task: t?.task }, transfer: t?.transfer ?? [] }),
      decode: (reply) => {
        const r = reply as PoolReply;
        return [r.ok ? { ok: true, value: r.check } : { ok: false, error: new Error(r.error) }];
      },
    });
  }

  async run(task: ProjectTask | BandTask | CheckTask, transfer: ArrayBuffer[]): Promise<TileCheck | undefined> {
    const bytes = task.kind === "check" ? task.tile.byteLength : 0;
    this.backlogBytes += bytes;
    try {
      return (await this.#pool.run({ task, transfer })).value;
    } finally {
      this.backlogBytes -= bytes;
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}
