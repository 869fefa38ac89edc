/**
 * Cancelling a job stops the kernels that are running its shards, not only the job:
 * within one heartbeat interval plus 100 ms of `cancel()` returning, the CPU time of
 * every worker process (utime + stime from /proc/<pid>/stat, so other load on the
 * machine does not blur it) falls to idle, for each kernel. Each shard is several
 * seconds of work, so a kernel left running would still be busy in that window.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createClient, type DceClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Cluster, randomMatrix, startCluster } from "../support/cluster.js";

// A = B = S×S (one blob, uploaded once, cached by the workers), C in two S/2 × S tiles:
// S³ ≈ 98 GFLOP per shard, about 2 s for native-blas on one thread (~50 GFLOP/s), 4 s
// for wasm-simd and minutes for reference, on an idle machine. The cancel comes after
// about 0.6 s of CPU per worker.
const S = 4608;
const TILE = { rows: S / 2, cols: S };
/** The coordinator answers with a heartbeat interval of ttl/3: 333 ms. */
const LEASE_TTL_MS = 1000;
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
/**
 * The cancel comes once every worker has spent this much CPU on the job: more than
 * reading its inputs takes (0.1-0.3 s here), so the kernels are running, and a small
 * part of a shard, so they have seconds left. CPU time, not wall time, so that other
 * load on the machine only slows the test down.
 */
const COMPUTED_TICKS = Math.ceil(0.6 * CLK_TCK);
/**
 * Measured after heartbeat + 100 ms: idle is at most 25% of one core over this window. A
 * kernel still running uses a whole core; what an idle worker spends (heartbeats, HTTP/2
 * pings, the collection of the cancelled job's buffers) measured 6-15% here.
 */
const WINDOW_MS = 1000;
const IDLE_TICKS = Math.ceil(0.25 * (WINDOW_MS / 1000) * CLK_TCK);

/** CPU time of a process so far (user + system), in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after "(comm)": state is field 3, utime 14 and stime 15 (man 5 proc).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
let client: DceClient;
let pids: number[];
let heartbeatMs: number;
const m = randomMatrix(S, S, 12);

beforeAll(async () => {
  cluster = await startCluster({
    workers: 2,
    threadsPerWorker: 1,
    leaseTtlMs: LEASE_TTL_MS,
    // 2304 × 4608 doubles is 81 MiB, over the default 64 MiB tile limit.
    extraCoordinatorArgs: ["--max-tile-bytes", String(128 * 1024 * 1024)],
  });
  client = createClient(cluster.clientOptions);
  pids = cluster.workers.map((w) => w.child.pid as number);
  const registered = /"heartbeatIntervalMs":(\d+)/.exec(cluster.workers[0]?.stderr ?? "");
  heartbeatMs = Number(registered?.[1]);
  expect(heartbeatMs).toBe(Math.floor(LEASE_TTL_MS / 3));
});
afterAll(async () => {
  await cluster?.close();
});

/** Waits until every worker has used COMPUTED_TICKS since `start` and is still using CPU. */
async function waitUntilComputing(start: number[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = start;
  while (performance.now() < deadline) {
    await sleep(200);
    const now = pids.map(cpuTicks);
    const busy = now.every((t, i) => t - (start[i] as number) >= COMPUTED_TICKS && t > (last[i] as number));
    if (busy) return;
    last = now;
  }
  throw new Error(`the workers did not both compute: CPU ticks ${start} at submit, ${last} at the end`);
}

describe("cancel stops the running kernels", () => {
  test.for(["reference", "wasm-simd", "native-blas", "native-avx512"])(
    "%s: worker CPU falls to idle within one heartbeat interval + 100 ms of cancel()",
    async (kernel, ctx) => {
      const advertised = cluster.workers.every((w) => w.stderr.includes(`"${kernel}/`));
      if (kernel.startsWith("native-") && !advertised) {
        const why = new RegExp(`${kernel} unavailable: [^"]*`).exec(cluster.workers[0]?.stderr ?? "")?.[0];
        ctx.skip(`the ${kernel} kernel cannot run here (${why ?? "not advertised"}); nothing to test`);
      }
      expect(advertised).toBe(true);
      const start = pids.map(cpuTicks);
      const job = await client.submitMatMul(m, m, { tileSize: TILE, kernel });
      try {
        await waitUntilComputing(start, 30_000);
        expect((await job.status()).shardsDone).toBe(0);
        expect((await job.cancel({ reason: "test" })).state).toBe("cancelled");
        const cancelledAt = performance.now();
        // Samples every 50 ms from the cancel on, for the failure message; the window
        // from heartbeat + 100 ms to WINDOW_MS later is what counts.
        const windowStartMs = heartbeatMs + 100;
        const offsetsMs = [
          ...Array.from({ length: Math.ceil(windowStartMs / 50) }, (_, i) => i * 50),
          ...Array.from({ length: WINDOW_MS / 50 + 1 }, (_, i) => windowStartMs + i * 50),
        ];
        const trace: { atMs: number; ticks: number[] }[] = [];
        for (const offsetMs of offsetsMs) {
          await sleep(cancelledAt + offsetMs - performance.now());
          trace.push({ atMs: Math.round(performance.now() - cancelledAt), ticks: pids.map(cpuTicks) });
        }
        const from = trace[trace.length - 1 - WINDOW_MS / 50] as (typeof trace)[number];
        const to = trace.at(-1) as (typeof trace)[number];
        const used = to.ticks.map((t, i) => t - (from.ticks[i] as number));
        const why = `CPU ticks per worker from ${from.atMs} to ${to.atMs} ms after cancel() returned: ${used} (idle is <= ${IDLE_TICKS}); all samples: ${JSON.stringify(trace)}`;
        expect(
          used.every((t) => t <= IDLE_TICKS),
          why,
        ).toBe(true);
      } finally {
        await job.cancel().catch(() => {});
      }
    },
  );
});
