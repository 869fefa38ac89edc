import type { CoreEvent, OutcomeMap, StepResult } from "@dce/core";
import {
  countJobs,
  type DashboardState,
  type DashboardStorage,
  listJobs,
  listWorkers,
  pickFocus,
  RATE_WINDOW_S,
  recentRate,
  type ThroughputPoint,
  tileMap,
  type WorkerActivity,
} from "./dashboard-view.js";
import type { ObservableCoordinator } from "./source.js";

export type {
  DashboardJob,
  DashboardLease,
  DashboardState,
  DashboardTileMap,
  DashboardWorker,
  ThroughputPoint,
} from "./dashboard-view.js";
export { recentRate, tileMap } from "./dashboard-view.js";

/** Options of {@link createDashboard}. */
export interface DashboardOptions {
  /** Clock for snapshots, in ms since the epoch. Default `Date.now`. */
  nowMs?: () => number;
  /** Finished jobs listed besides the active ones (newest first). Default 20. */
  maxFinishedJobs?: number;
  /** Most cells in a tile map; bigger plans are downsampled into blocks of shards. Default 4096. */
  maxTileCells?: number;
  /** Seconds of throughput history kept and sent. Default 120. */
  historySeconds?: number;
  /** A worker unseen this long is shown as stale, in ms. Default 45 000 (idle long-polls are silent up to 30 s). */
  staleAfterMs?: number;
  /** Leases listed per worker. Default 12. */
  maxLeasesPerWorker?: number;
}

/** Live view model of the `/ui` page, fed by a coordinator's step hook. */
export interface Dashboard {
  /** A snapshot of the coordinator for the page; `focusJobId` picks the job whose tile map is sent. */
  snapshot(focusJobId?: string): DashboardState;
  /** Stops observing the coordinator. Idempotent. */
  close(): void;
}

/**
 * Creates the dashboard view model of `source` (a {@link Coordinator}). It keeps
 * only small rolling counters (throughput per second, per-worker completions); the
 * rest is read from the core state when a snapshot is taken.
 */
export function createDashboard(source: ObservableCoordinator, options: DashboardOptions = {}): Dashboard {
  const now = options.nowMs ?? Date.now;
  const maxFinished = options.maxFinishedJobs ?? 20;
  const maxCells = Math.max(16, options.maxTileCells ?? 4096);
  const historyS = Math.max(10, options.historySeconds ?? 120);
  const staleAfterMs = options.staleAfterMs ?? 45_000;
  const maxLeases = options.maxLeasesPerWorker ?? 12;
  const startedAtMs = now();
  const perSecond = new Map<number, { shards: number; flops: number }>();
  const workers = new Map<string, WorkerActivity>();
  let totalCompleted = 0;

  const activity = (id: string, nowMs: number): WorkerActivity => {
    let a = workers.get(id);
    if (!a) {
      a = { registeredAtMs: nowMs, completed: 0, recent: new Map() };
      workers.set(id, a);
    }
    return a;
  };

  const onStep = (event: CoreEvent, result: StepResult<OutcomeMap[CoreEvent["type"]]>) => {
    if (event.type === "worker-registered" && result.outcome.ok) activity(event.workerId, event.nowMs);
    if (event.type !== "shard-completed") return;
    const outcome = result.outcome as OutcomeMap["shard-completed"];
    if (!outcome.ok) return;
    const job = source.state.jobs.get(event.lease.jobId);
    const b = outcome.value.bounds;
    const flops = 2 * (b.rowEnd - b.rowStart) * (b.colEnd - b.colStart) * (job?.plan.inner ?? 0);
    const sec = Math.floor(event.nowMs / 1000);
    const point = perSecond.get(sec) ?? { shards: 0, flops: 0 };
    point.shards++;
    point.flops += flops;
    perSecond.set(sec, point);
    totalCompleted++;
    const a = activity(event.workerId, event.nowMs);
    a.completed++;
    a.recent.set(sec, (a.recent.get(sec) ?? 0) + 1);
    // Keep the maps small: drop seconds older than the history.
    if (perSecond.size > historyS + 5) for (const s of perSecond.keys()) if (s < sec - historyS) perSecond.delete(s);
    if (a.recent.size > RATE_WINDOW_S + 2) for (const s of a.recent.keys()) if (s <= sec - RATE_WINDOW_S) a.recent.delete(s);
  };
  const unobserve = source.observe(onStep);

  const throughput = (nowMs: number): ThroughputPoint[] => {
    const cur = Math.floor(nowMs / 1000);
    const out: ThroughputPoint[] = [];
    // Nothing before this dashboard started: a young coordinator shows its whole life.
    for (let s = Math.max(cur - historyS + 1, Math.floor(startedAtMs / 1000)); s <= cur; s++) {
      const p = perSecond.get(s);
      out.push({ tMs: s * 1000, shards: p?.shards ?? 0, flops: p?.flops ?? 0 });
    }
    return out;
  };

  return {
    snapshot(focusJobId) {
      const nowMs = now();
      const s = source.state;
      for (const id of workers.keys()) if (!s.workers.has(id as never)) workers.delete(id);
      const series = throughput(nowMs);
      const shards = new Map<number, number>();
      const flops = new Map<number, number>();
      for (const p of series.slice(-RATE_WINDOW_S)) {
        shards.set(p.tMs / 1000, p.shards);
        flops.set(p.tMs / 1000, p.flops);
      }
      const jobs = listJobs(s, nowMs, maxFinished);
      const focus = pickFocus(s, jobs, focusJobId);
      return {
        nowMs,
        startedAtMs,
        draining: s.draining,
        totals: {
          jobs: countJobs(s),
          workers: s.workers.size,
          threads: [...s.workers.values()].reduce((n, w) => n + w.threads, 0),
          leases: s.leases.size,
          shardsCompleted: totalCompleted,
          shardsPerSec: recentRate(shards, nowMs, startedAtMs),
          gflops: recentRate(flops, nowMs, startedAtMs) / 1e9,
        },
        storage: storageView(source),
        jobs,
        workers: listWorkers(s, workers, nowMs, staleAfterMs, maxLeases),
        focusJobId: focus?.id ?? null,
        tiles: focus ? tileMap(focus, maxCells) : null,
        throughput: series,
      };
    },
    close() {
      unobserve();
    },
  };
}

/** The storage figures of the page, or null when the source has none. */
function storageView(source: ObservableCoordinator): DashboardStorage | null {
  const st = source.gc?.stats();
  if (st === undefined) return null;
  return {
    blobs: st.blobs,
    bytes: st.bytes,
    freeBytes: st.freeBytes ?? null,
    minFreeBytes: st.minFreeBytes ?? null,
    gcPasses: st.gc.passes,
    gcBlobsDeleted: st.gc.blobsDeleted,
    gcBytesDeleted: st.gc.bytesDeleted,
  };
}
