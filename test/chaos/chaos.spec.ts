import { createClient, type JobHandle } from "@dce/client-sdk";
import { expect, test } from "vitest";
import { naiveMultiply, type Proc, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// Process chaos (`pnpm test:chaos`): a real TLS coordinator with a data dir and 8 real
// worker processes run 50 jobs of mixed shapes while workers are SIGKILLed, paused with
// SIGSTOP/SIGCONT, and the coordinator itself is SIGKILLed and restarted. Loopback only;
// every loop is bounded in count and time. At the end every job must have succeeded with
// exactly the bytes of a clean single-process multiply.

const WORKERS = 8;
const JOBS = 50;
const MIN_WORKER_FAULTS = 200;
const MIN_COORDINATOR_KILLS = 10;
const BUDGET_MS = 240_000;

/** Seeded PRNG (mulberry32) so a run can be repeated with DCE_CHAOS_SEED. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("chaos: 50 jobs survive 200+ worker kills/pauses and 10+ coordinator kills, byte-identical", async () => {
  const seed = Number(process.env.DCE_CHAOS_SEED ?? Date.now() % 1_000_000);
  console.log(`chaos seed ${seed} (replay: DCE_CHAOS_SEED=${seed} pnpm test:chaos)`);
  const rand = rng(seed);
  const started = Date.now();
  const cluster = await startCluster({ workers: WORKERS, leaseTtlMs: 1200 });
  try {
    const client = createClient({ ...cluster.clientOptions, reconnectBudgetMs: 120_000 });
    const inputs = Array.from({ length: JOBS }, (_, i) => {
      // Mixed shapes, including degenerate ones; most are big enough to span several faults.
      const tiny = rand() < 0.15;
      const m = tiny ? 1 + Math.floor(rand() * 8) : 32 + Math.floor(rand() * 200);
      const k = tiny ? 1 + Math.floor(rand() * 8) : 200 + Math.floor(rand() * 1200);
      const n = tiny ? 1 + Math.floor(rand() * 8) : 32 + Math.floor(rand() * 200);
      const tile = 16 + Math.floor(rand() * 48);
      return { a: randomMatrix(m, k, seed + 2 * i), b: randomMatrix(k, n, seed + 2 * i + 1), tile };
    });

    let live: Proc[] = [...cluster.workers];
    const counts = { workerKills: 0, workerPauses: 0, coordinatorKills: 0, leaseExpiries: 0, staleCompletionsRejected: 0 };
    // Each coordinator process logs its own decisions; add them up before it is replaced.
    const harvest = () => {
      const log = cluster.coordinator.stderr;
      counts.leaseExpiries += (log.match(/"msg":"lease expired"/g) ?? []).length;
      counts.staleCompletionsRejected += (log.match(/"code":"Aborted"[^\n]*"msg":"shard result rejected"/g) ?? []).length;
      expect(log).not.toContain("INVARIANT VIOLATED");
    };
    let stop = false;

    // Submissions are idempotent by key, so a submit cut off by a coordinator kill is simply retried.
    const handles: JobHandle[] = [];
    let submitted = false;
    const submitAll = (async () => {
      for (const [i, x] of inputs.entries()) {
        // Spread the jobs over the chaos window so faults keep hitting running work.
        if (i > 0) await sleep(1_200);
        for (let attempt = 0; ; attempt++) {
          try {
            handles[i] = await client.submitMatMul(x.a, x.b, {
              tileSize: x.tile,
              kernel: "reference",
              idempotencyKey: `chaos-${seed}-${i}`,
              timeoutMs: 10_000,
            });
            break;
          } catch (e) {
            if (attempt > 200) throw e;
            await sleep(100);
          }
        }
      }
      submitted = true;
    })();

    const chaos = (async () => {
      let nextCoordinatorKill = Date.now() + 3_000;
      while (!stop && Date.now() - started < BUDGET_MS) {
        const enough =
          counts.workerKills + counts.workerPauses >= MIN_WORKER_FAULTS && counts.coordinatorKills >= MIN_COORDINATOR_KILLS;
        if (enough && submitted) break;
        if (Date.now() >= nextCoordinatorKill && counts.coordinatorKills < MIN_COORDINATOR_KILLS) {
          harvest();
          await cluster.restartCoordinator("SIGKILL");
          counts.coordinatorKills++;
          nextCoordinatorKill = Date.now() + 2_000 + rand() * 3_000;
          continue;
        }
        const victim = live[Math.floor(rand() * live.length)];
        if (victim) {
          if (rand() < 0.6) {
            victim.child.kill("SIGKILL");
            counts.workerKills++;
            live = live.filter((p) => p !== victim);
            live.push(await cluster.addWorker(`chaos-${counts.workerKills}`));
          } else {
            victim.child.kill("SIGSTOP");
            counts.workerPauses++;
            const pauseMs = 200 + rand() * 2_000; // sometimes past the 1.2 s lease TTL
            setTimeout(() => victim.child.kill("SIGCONT"), pauseMs);
          }
        }
        await sleep(100 + rand() * 200);
      }
    })();

    await submitAll;
    await chaos;
    stop = true;
    for (const p of live) p.child.kill("SIGCONT");
    const results = await Promise.all(handles.map((h) => h.result({ signal: AbortSignal.timeout(120_000) })));
    let identical = 0;
    let shards = 0;
    for (const [i, c] of results.entries()) {
      const x = inputs[i]!;
      if (sameBytes(c.data, naiveMultiply(x.a, x.b))) identical++;
      shards += (await handles[i]!.status()).shardsTotal;
    }
    harvest();
    const summary = {
      seed,
      jobs: JOBS,
      succeeded: results.length,
      byteIdentical: identical,
      shards,
      ...counts,
      wallSeconds: Math.round((Date.now() - started) / 1000),
    };
    console.log(`chaos summary ${JSON.stringify(summary)}`);
    expect(counts.workerKills + counts.workerPauses).toBeGreaterThanOrEqual(MIN_WORKER_FAULTS);
    expect(counts.coordinatorKills).toBeGreaterThanOrEqual(MIN_COORDINATOR_KILLS);
    expect(identical).toBe(JOBS);
  } finally {
    await cluster.close();
  }
}, 300_000);
