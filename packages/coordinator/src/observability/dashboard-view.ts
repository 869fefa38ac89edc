import { type CoreState, clipCodePoints, isTerminal, type JobRecord, type JobStateName, ShardStatus } from "@dce/core";

// What the `/ui` page is sent, and how each part of it is derived from the core state:
// plain data types and pure functions. The live part (the step observer and its rolling
// counters) is dashboard.ts.

/** One job as the dashboard shows it. Times are ms since the epoch; 0 = not yet. */
export interface DashboardJob {
  readonly id: string;
  readonly state: JobStateName;
  /** Shapes: C is rows × cols, with inner dimension `inner`. */
  readonly rows: number;
  readonly cols: number;
  readonly inner: number;
  readonly tileRows: number;
  readonly tileCols: number;
  readonly kernel: string;
  readonly shardsTotal: number;
  readonly shardsDone: number;
  readonly shardsLeased: number;
  /** Shards waiting for a lease (fresh or retry). */
  readonly shardsQueued: number;
  readonly shardsRetried: number;
  readonly createdAtMs: number;
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  /** Time running so far (or in total once finished), in ms. */
  readonly elapsedMs: number;
  /** Estimated time left, in ms; null when unknown (nothing done yet, or finished). */
  readonly etaMs: number | null;
  /** Mean completion rate since start, shards per second. */
  readonly shardsPerSec: number;
  readonly error: string;
}

/** The data dir as the dashboard shows it: the blob store, free space and the collector. */
export interface DashboardStorage {
  readonly blobs: number;
  readonly bytes: number;
  /** Free bytes of the data dir's file system; null when unknown (memory storage). */
  readonly freeBytes: number | null;
  /** The --min-free-bytes watermark; null when unknown. */
  readonly minFreeBytes: number | null;
  readonly gcPasses: number;
  readonly gcBlobsDeleted: number;
  readonly gcBytesDeleted: number;
}

/** One lease held by a worker. */
export interface DashboardLease {
  readonly jobId: string;
  readonly shardIndex: number;
  readonly epoch: number;
  /** ms until it expires unless renewed (negative: overdue). */
  readonly expiresInMs: number;
}

/**
 * One worker as the dashboard shows it. A worker quarantined for its own results stays
 * listed after its process is forgotten, and so does a quarantined identity with no
 * worker left (with an empty `id`), so the operator still sees them.
 */
export interface DashboardWorker {
  readonly id: string;
  readonly name: string;
  /** The identity its results also count against (certificate CN, or name without certificates). */
  readonly identity: string;
  readonly threads: number;
  readonly kernels: readonly string[];
  /**
   * quarantined: it (or its identity) returned too many results that failed verification
   * and gets no more work; otherwise busy: holds leases; idle: none; stale: not heard from
   * for `staleAfterMs`.
   */
  readonly status: "busy" | "idle" | "stale" | "quarantined";
  /**
   * What is quarantined: "worker", this registration for its own results; "identity",
   * every worker presenting its identity; "" nothing.
   */
  readonly quarantine: "" | "worker" | "identity";
  /** Results of this worker that failed verification (of its identity, for an identity-only row). */
  readonly rejectedResults: number;
  readonly registeredAtMs: number;
  /** Last contact (register, pull, heartbeat, report), ms since the epoch. */
  readonly lastSeenMs: number;
  readonly leaseCount: number;
  /** The first leases it holds (see `maxLeasesPerWorker`). */
  readonly leases: readonly DashboardLease[];
  /** Shards it completed since this coordinator started. */
  readonly shardsCompleted: number;
  /** Recent rate over the last 5 s, shards per second. */
  readonly shardsPerSec: number;
}

/**
 * The tile map of one job: C's tile grid, row-major, one character per cell.
 * `d` done, `l` leased, `r` retried (waiting for or running another attempt),
 * `p` pending; with downsampling also `h`, a block partly done.
 */
export interface DashboardTileMap {
  readonly jobId: string;
  /** Grid of cells sent (after downsampling). */
  readonly gridRows: number;
  readonly gridCols: number;
  /** Shards per cell edge: 1 = one cell per shard. */
  readonly blockSize: number;
  /** Tile grid of the plan itself. */
  readonly planRows: number;
  readonly planCols: number;
  readonly cells: string;
  /** Shard counts by class over the whole plan (not downsampled). */
  readonly counts: { readonly done: number; readonly leased: number; readonly retried: number; readonly pending: number };
}

/** One second of throughput. */
export interface ThroughputPoint {
  /** Start of the second, ms since the epoch. */
  readonly tMs: number;
  readonly shards: number;
  /** Floating-point operations of the shards accepted in that second (2·m·n·k per tile). */
  readonly flops: number;
}

/** Everything `/ui/api/state` returns. */
export interface DashboardState {
  readonly nowMs: number;
  readonly startedAtMs: number;
  readonly draining: boolean;
  readonly totals: {
    readonly jobs: Readonly<Record<JobStateName, number>>;
    readonly workers: number;
    readonly threads: number;
    readonly leases: number;
    readonly shardsCompleted: number;
    /** Shards per second over the last 5 s (fewer while younger). */
    readonly shardsPerSec: number;
    /** GFLOP/s over the last 5 s (fewer while younger). */
    readonly gflops: number;
  };
  /** The blob store and the data dir's free space; null without storage figures. */
  readonly storage: DashboardStorage | null;
  /** Active jobs oldest first, then finished ones newest first. */
  readonly jobs: readonly DashboardJob[];
  readonly workers: readonly DashboardWorker[];
  /** The job whose tile map is shown: the one asked for, else the oldest running, else the newest. */
  readonly focusJobId: string | null;
  readonly tiles: DashboardTileMap | null;
  /**
   * One point per second, oldest first, ending with the current (partial) second:
   * the last `historySeconds`, or fewer while the dashboard is younger than that.
   */
  readonly throughput: readonly ThroughputPoint[];
}

/** What the dashboard counts of one worker between snapshots. */
export interface WorkerActivity {
  registeredAtMs: number;
  completed: number;
  /** Second (ms / 1000, floored) → shards accepted in it. */
  readonly recent: Map<number, number>;
}

/** Rates are taken over this many seconds, the current partial second included. */
export const RATE_WINDOW_S = 5;

/**
 * Mean rate over the last `RATE_WINDOW_S` seconds from per-second counts: the
 * current second counts for the part of it that has passed, and nothing before
 * `sinceMs` (a young worker or dashboard) dilutes the rate.
 */
export function recentRate(perSecond: ReadonlyMap<number, number>, nowMs: number, sinceMs: number): number {
  const cur = Math.floor(nowMs / 1000);
  let n = 0;
  for (let sec = cur - RATE_WINDOW_S + 1; sec <= cur; sec++) n += perSecond.get(sec) ?? 0;
  const windowS = RATE_WINDOW_S - 1 + (nowMs - cur * 1000) / 1000;
  // At least a quarter second, so one early completion does not read as a burst.
  const seconds = Math.max(0.25, Math.min(windowS, (nowMs - sinceMs) / 1000));
  return n / seconds;
}

/** Jobs known to the core, by state. */
export function countJobs(s: Readonly<CoreState>): Record<JobStateName, number> {
  const counts: Record<JobStateName, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const job of s.jobs.values()) counts[job.state]++;
  return counts;
}

function viewJob(job: JobRecord, nowMs: number): DashboardJob {
  const total = job.plan.shardCount;
  const end = job.finishedAtMs || nowMs;
  const elapsedMs = job.startedAtMs ? Math.max(0, end - job.startedAtMs) : 0;
  const shardsPerSec = elapsedMs > 0 ? (job.doneCount * 1000) / elapsedMs : 0;
  const left = total - job.doneCount;
  const etaMs = !isTerminal(job.state) && job.doneCount > 0 && shardsPerSec > 0 ? Math.round((left / shardsPerSec) * 1000) : null;
  return {
    id: job.id,
    state: job.state,
    rows: job.plan.rows,
    cols: job.plan.cols,
    inner: job.plan.inner,
    tileRows: job.plan.tileRows,
    tileCols: job.plan.tileCols,
    kernel: job.kernel,
    shardsTotal: total,
    shardsDone: job.doneCount,
    shardsLeased: job.leasedCount,
    shardsQueued: isTerminal(job.state) ? 0 : total - job.doneCount - job.leasedCount,
    shardsRetried: job.retriedCount,
    createdAtMs: job.createdAtMs,
    startedAtMs: job.startedAtMs,
    finishedAtMs: job.finishedAtMs,
    elapsedMs,
    etaMs,
    shardsPerSec,
    error: clipCodePoints(job.error, 500),
  };
}

/** The job rows: active jobs oldest first, then the newest `maxFinished` finished ones. */
export function listJobs(s: Readonly<CoreState>, nowMs: number, maxFinished: number): DashboardJob[] {
  const active: JobRecord[] = [];
  const finished: JobRecord[] = [];
  for (const job of s.jobs.values()) (isTerminal(job.state) ? finished : active).push(job);
  active.sort((a, b) => a.createdAtMs - b.createdAtMs);
  // Jobs are kept in creation order, so the newest finished ones are at the end.
  finished.sort((a, b) => b.finishedAtMs - a.finishedAtMs);
  return [...active, ...finished.slice(0, maxFinished)].map((j) => viewJob(j, nowMs));
}

/** The job whose tile map is sent: `wanted` if it exists, else the oldest running, else the oldest queued, else the first row. */
export function pickFocus(
  s: Readonly<CoreState>,
  jobs: readonly DashboardJob[],
  wanted: string | undefined,
): JobRecord | undefined {
  if (wanted) {
    const job = s.jobs.get(wanted as JobRecord["id"]);
    if (job) return job;
  }
  const id = jobs.find((j) => j.state === "running")?.id ?? jobs.find((j) => j.state === "queued")?.id ?? jobs[0]?.id;
  return id === undefined ? undefined : s.jobs.get(id as JobRecord["id"]);
}

/**
 * The worker rows, by name: every registered worker with its leases (at most `maxLeases`)
 * and rates from `activity`, then quarantined workers and identities that have no live row.
 */
export function listWorkers(
  s: Readonly<CoreState>,
  activity: ReadonlyMap<string, WorkerActivity>,
  nowMs: number,
  staleAfterMs: number,
  maxLeases: number,
): DashboardWorker[] {
  const out: DashboardWorker[] = [];
  for (const w of s.workers.values()) {
    const a = activity.get(w.id);
    const leases: DashboardLease[] = [];
    for (const epoch of w.leases) {
      if (leases.length >= maxLeases) break;
      const l = s.leases.get(epoch);
      if (l) leases.push({ jobId: l.jobId, shardIndex: l.shardIndex, epoch, expiresInMs: l.expiresAtMs - nowMs });
    }
    leases.sort((x, y) => x.epoch - y.epoch);
    const registeredAtMs = a?.registeredAtMs ?? w.lastSeenMs;
    const quarantine = quarantineOf(s, w.identity, w.quarantinedAtMs);
    out.push({
      id: w.id,
      name: w.name,
      identity: w.identity,
      rejectedResults: w.rejectedResults,
      threads: w.threads,
      kernels: w.kernels.map((k) => k.name),
      status:
        quarantine !== "" ? "quarantined" : nowMs - w.lastSeenMs > staleAfterMs ? "stale" : w.leases.size > 0 ? "busy" : "idle",
      quarantine,
      registeredAtMs,
      lastSeenMs: w.lastSeenMs,
      leaseCount: w.leases.size,
      leases,
      shardsCompleted: a?.completed ?? 0,
      shardsPerSec: a ? recentRate(a.recent, nowMs, registeredAtMs) : 0,
    });
  }
  // Quarantined workers whose process is forgotten, then quarantined identities with no row left.
  const gone = (id: string, name: string, identity: string, rejectedResults: number, atMs: number, q: "worker" | "identity") =>
    out.push({
      id,
      name,
      identity,
      threads: 0,
      kernels: [],
      status: "quarantined",
      quarantine: q,
      rejectedResults,
      registeredAtMs: atMs,
      lastSeenMs: atMs,
      leaseCount: 0,
      leases: [],
      shardsCompleted: 0,
      shardsPerSec: 0,
    });
  for (const ident of s.identities.values()) {
    for (const q of ident.quarantinedWorkers) {
      if (s.workers.has(q.workerId)) continue;
      gone(q.workerId, q.name, ident.identity, q.rejectedResults, q.atMs, quarantineOf(s, ident.identity, q.atMs) || "worker");
    }
  }
  const listed = new Set(out.map((w) => w.identity));
  for (const ident of s.identities.values()) {
    if (ident.quarantinedAtMs === 0 || listed.has(ident.identity)) continue;
    gone("", ident.identity, ident.identity, ident.rejectedResults, ident.quarantinedAtMs, "identity");
  }
  return out.sort((x, y) => x.name.localeCompare(y.name) || x.id.localeCompare(y.id));
}

/** What is quarantined for a worker of `identity` quarantined itself at `workerAtMs` (0: not). */
function quarantineOf(s: Readonly<CoreState>, identity: string, workerAtMs: number): "" | "worker" | "identity" {
  if ((s.identities.get(identity)?.quarantinedAtMs ?? 0) > 0) return "identity";
  return workerAtMs > 0 ? "worker" : "";
}

/** Class of one shard: d done, l leased, r retried, p pending. */
function shardClass(job: JobRecord, i: number, live: boolean): "d" | "l" | "r" | "p" {
  const status = job.shardStatus[i];
  if (status === ShardStatus.done) return "d";
  // A lost lease leaves a last error: a worker's death is not an attempt (core poison.ts),
  // so attempts alone miss the shards retried after deaths.
  const tries = (job.shardAttempts[i] ?? 0) + (job.shardLastError.has(i) ? 1 : 0);
  if (status === ShardStatus.leased) return live && tries > 1 ? "r" : "l";
  // A pending shard that was leased before is waiting for its retry (a hand-back undoes its attempt).
  return live && tries > 0 ? "r" : "p";
}

/**
 * Builds the tile map of `job`, downsampled into square blocks of shards when the
 * plan has more than `maxCells` tiles. A block shows its most telling state:
 * retried, then leased, then done (all done), partly done (`h`), else pending.
 */
export function tileMap(job: JobRecord, maxCells: number): DashboardTileMap {
  const { rowTiles, colTiles } = job.plan;
  let block = 1;
  while (Math.ceil(rowTiles / block) * Math.ceil(colTiles / block) > maxCells) block++;
  const gridRows = Math.ceil(rowTiles / block);
  const gridCols = Math.ceil(colTiles / block);
  const live = !isTerminal(job.state);
  const counts = { done: 0, leased: 0, retried: 0, pending: 0 };
  const classes = new Uint8Array(job.plan.shardCount);
  const CODE = { d: 0, l: 1, r: 2, p: 3 } as const;
  for (let i = 0; i < job.plan.shardCount; i++) {
    const c = shardClass(job, i, live);
    classes[i] = CODE[c];
    if (c === "d") counts.done++;
    else if (c === "l") counts.leased++;
    else if (c === "r") counts.retried++;
    else counts.pending++;
  }
  let cells = "";
  for (let gr = 0; gr < gridRows; gr++) {
    for (let gc = 0; gc < gridCols; gc++) {
      let done = 0;
      let leased = 0;
      let retried = 0;
      let n = 0;
      for (let r = gr * block; r < Math.min(rowTiles, (gr + 1) * block); r++) {
        for (let c = gc * block; c < Math.min(colTiles, (gc + 1) * block); c++) {
          const k = classes[r * colTiles + c];
          n++;
          if (k === CODE.d) done++;
          else if (k === CODE.l) leased++;
          else if (k === CODE.r) retried++;
        }
      }
      cells += retried > 0 ? "r" : leased > 0 ? "l" : done === n ? "d" : done > 0 ? "h" : "p";
    }
  }
  return { jobId: job.id, gridRows, gridCols, blockSize: block, planRows: rowTiles, planCols: colTiles, cells, counts };
}
