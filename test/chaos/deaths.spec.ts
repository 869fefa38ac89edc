import { createClient, JobFailedError } from "@dce/client-sdk";
import { expect, test } from "vitest";
import { BIN, naiveMultiply, type Proc, randomMatrix, sameBytes, spawnNode, startCluster } from "../support/cluster.js";

// Worker deaths are not failed attempts (issue 12), with real processes: a TLS coordinator
// and four workers that kill themselves (SIGKILL) at random or on a poison shard, each
// respawned by a loop like a process supervisor would. Loopback only; every loop is
// bounded in time; every process is killed by PID in `finally`.

const SLOTS = 4;
const LEASE_TTL_MS = 1_000;

/**
 * Keeps one worker process per slot running with `args` (its own certificate per slot,
 * as `addWorker` gives) until `stop()`: each one that exits is started again.
 */
async function respawnLoops(cluster: Awaited<ReturnType<typeof startCluster>>, args: string[], deadlineMs: number) {
  const live = new Set<Proc>();
  const certs = await Promise.all(Array.from({ length: SLOTS }, (_, i) => cluster.issueWorkerCert(`slot${i}`)));
  let stopped = false;
  let starts = 0;
  let deaths = 0;
  /** Exits other than a SIGKILL (a usage error, a crash of the worker itself): none may happen. */
  const otherExits: string[] = [];
  const loops = certs.map(async (cert, i) => {
    while (!stopped && Date.now() < deadlineMs) {
      const p = spawnNode(`slot${i}`, BIN.worker, [
        ...["--coordinator", cluster.url, "--ca", cluster.caPath, "--cert", cert.cert, "--key", cert.key],
        ...["--name", `slot${i}`, "--threads", "1", "--kernels", "reference", "--log-level", "warn", ...args],
      ]);
      live.add(p);
      starts++;
      const code = await p.exited;
      live.delete(p);
      if (code === "SIGKILL") deaths++;
      else otherExits.push(`exit ${code}: ${p.stderr.slice(-500)}`);
      // A worker that cannot start must not spin: stop the loop and let the test fail.
      if (otherExits.length > 0) return;
    }
  });
  return {
    get starts() {
      return starts;
    },
    get deaths() {
      return deaths;
    },
    otherExits,
    /** Stops respawning and kills the running workers by PID. */
    async stop() {
      stopped = true;
      for (const p of live) p.child.kill("SIGKILL");
      await Promise.all(loops);
    },
  };
}

/**
 * Jobs of the many-crashes run: 8 jobs of C = (10·SCALE)×20 in 2×2 tiles, 50·SCALE shards
 * each. Every death costs a process start (about 0.45 s of CPU here, most of it loading
 * modules) and 0.2 deaths come with every shard computed, so the run's length is about
 * 0.25 × shards × 0.45 s / cores: SCALE 1 (400 shards, ~100 deaths) fits the chaos suite's
 * budget; DCE_DEATHS_SCALE=8 (3 200 shards) is the full run of issue 12, several minutes.
 */
const SCALE = Number(process.env.DCE_DEATHS_SCALE ?? 1);
const BUDGET_MS = 100_000 * SCALE;

test(
  `4 workers dying at rate 0.2 and respawned: 8 jobs of ${400 * SCALE} shards all succeed, byte-identical`,
  async () => {
    const started = Date.now();
    const cluster = await startCluster({ workers: 0, leaseTtlMs: LEASE_TTL_MS });
    const loops = await respawnLoops(cluster, ["--chaos-crash-rate", "0.2"], started + BUDGET_MS);
    try {
      const client = createClient({ ...cluster.clientOptions, reconnectBudgetMs: 60_000 });
      // k is small, so a shard is nearly all overhead: the run measures deaths, not arithmetic.
      const inputs = Array.from({ length: 8 }, (_, i) => ({
        a: randomMatrix(10 * SCALE, 6, 100 + 2 * i),
        b: randomMatrix(6, 20, 101 + 2 * i),
      }));
      const handles = await Promise.all(
        inputs.map((x, i) => client.submitMatMul(x.a, x.b, { tileSize: 2, kernel: "reference", idempotencyKey: `deaths-${i}` })),
      );
      const results = await Promise.all(handles.map((h) => h.result({ signal: AbortSignal.timeout(BUDGET_MS) })));
      let shards = 0;
      let retried = 0;
      for (const h of handles) {
        const s = await h.status();
        shards += s.shardsTotal;
        retried += s.shardsRetried;
      }
      const log = cluster.coordinator.stderr;
      const summary = {
        shards,
        workerStarts: loops.starts,
        workerDeaths: loops.deaths,
        leaseExpiries: (log.match(/"msg":"lease expired"/g) ?? []).length,
        deathsCharged: (log.match(/"charged":1,"msg":"lease expired"/g) ?? []).length,
        retried,
        wallSeconds: Math.round((Date.now() - started) / 1000),
      };
      console.log(`deaths summary ${JSON.stringify(summary)}`);
      expect(shards).toBe(400 * SCALE);
      expect(results.every((c, i) => sameBytes(c.data, naiveMultiply(inputs[i]!.a, inputs[i]!.b)))).toBe(true);
      expect(loops.deaths).toBeGreaterThan(40 * SCALE);
      expect(loops.otherExits).toEqual([]);
      expect(log).not.toContain('"msg":"job failed"');
      expect(log).not.toContain("INVARIANT VIOLATED");
    } finally {
      await loops.stop();
      await cluster.close();
    }
  },
  BUDGET_MS + 30_000,
);

test("a shard that kills every worker running it fails its job, naming it and its last error, within 10 deaths", async () => {
  const started = Date.now();
  const cluster = await startCluster({ workers: 0, leaseTtlMs: LEASE_TTL_MS });
  const loops = await respawnLoops(cluster, ["--chaos-crash-on-shard", "21"], started + 60_000);
  try {
    expect(loops.otherExits).toEqual([]);
    const client = createClient({ ...cluster.clientOptions, reconnectBudgetMs: 60_000 });
    // Shard 21 exists in the first job only (80 shards); the second (16 shards) must succeed.
    const poisoned = { a: randomMatrix(16, 4, 7), b: randomMatrix(4, 20, 8) };
    const healthy = { a: randomMatrix(8, 4, 9), b: randomMatrix(4, 8, 10) };
    const p = await client.submitMatMul(poisoned.a, poisoned.b, { tileSize: 2, kernel: "reference" });
    const h = await client.submitMatMul(healthy.a, healthy.b, { tileSize: 2, kernel: "reference" });
    const failure = await p.result({ signal: AbortSignal.timeout(50_000) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(JobFailedError);
    const message = (failure as Error).message;
    expect(message).toMatch(
      /shard 21: \d+ workers died running it \(.*\); last error: lease epoch \d+ held by worker \S+ expired/,
    );
    expect(loops.otherExits).toEqual([]);
    const died = Number(/shard 21: (\d+) workers died/.exec(message)?.[1]);
    expect(died).toBeGreaterThanOrEqual(3);
    expect(died).toBeLessThanOrEqual(10);
    expect(sameBytes((await h.result({ signal: AbortSignal.timeout(30_000) })).data, naiveMultiply(healthy.a, healthy.b))).toBe(
      true,
    );
    console.log(
      `poison summary ${JSON.stringify({ died, workerDeaths: loops.deaths, wallSeconds: Math.round((Date.now() - started) / 1000), message })}`,
    );
  } finally {
    await loops.stop();
    await cluster.close();
  }
}, 90_000);
