import { createClient } from "@dce/client-sdk";
import { describe, expect, onTestFinished, test } from "vitest";
import { logLines } from "../support/assertions.js";
import {
  BIN,
  type Cluster,
  naiveMultiply,
  randomMatrix,
  sameBytes,
  spawnNode,
  startCluster,
  waitFor,
} from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";
import { startFaultProxy } from "../support/proxy.js";

// A worker reaches the coordinator through an in-process TCP proxy that delays, drops,
// black-holes and half-opens its connections. Leases and heartbeats must cope: the
// job ends exact, and the worker notices a dead connection (HTTP/2 keepalive pings)
// and reconnects on its own.

describe("network faults between a worker and the coordinator", () => {
  test.each(["blackhole", "half-open", "drop"] as const)(
    "%s: the job ends exact and the worker reconnects and works again",
    async (fault) => {
      const cluster = await startCluster({ workers: 1, leaseTtlMs: 1500 });
      onTestFinished(() => cluster.close());
      const port = Number(new URL(cluster.url).port);
      const proxy = await startFaultProxy(port);
      onTestFinished(() => proxy.close());
      const behind = spawnNode("behind-proxy", BIN.worker, [
        "--coordinator",
        `https://127.0.0.1:${proxy.port}`,
        "--ca",
        cluster.caPath,
        "--cert",
        cluster.workerCert.cert,
        "--key",
        cluster.workerCert.key,
        "--threads",
        "1",
        "--name",
        "behind-proxy",
        "--log-level",
        "debug",
      ]);
      onTestFinished(() => {
        behind.child.kill("SIGKILL");
      });
      await waitFor(behind, (p) => p.stderr.includes("worker registered"), 15_000, "registration");
      proxy.setMode({ kind: "delay", ms: 5, jitterMs: 20 });

      const client = createClient(cluster.clientOptions);
      const a = randomMatrix(192, 900, 301);
      const b = randomMatrix(900, 192, 302);
      const job = await client.submitMatMul(a, b, { tileSize: 32, kernel: "reference" });
      for (let i = 0; i < 400 && (await job.status()).shardsDone < 3; i++) await new Promise((r) => setTimeout(r, 10));

      if (fault === "drop") proxy.dropAll();
      else proxy.setMode({ kind: fault });
      await new Promise((r) => setTimeout(r, 4_000)); // past the lease TTL and the keepalive ping timeout
      proxy.setMode({ kind: "pass" });

      const c = await job.result({ signal: AbortSignal.timeout(60_000) });
      expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
      // The worker behind the proxy opened a new connection and got work again.
      expect(proxy.accepted).toBeGreaterThan(1);
      // Only the worker behind the proxy is left for the second job, so it has to do
      // every shard of it through the link that was cut and restored.
      const [direct] = cluster.workers;
      direct?.child.kill("SIGKILL");
      await direct?.exited;
      const acceptedBefore = await shardsCompletedBy(cluster, "behind-proxy");
      const logFrom = behind.stderr.length;
      const second = await client.submitMatMul(randomMatrix(64, 64, 303), randomMatrix(64, 64, 304), { tileSize: 8 });
      await second.result({ signal: AbortSignal.timeout(60_000) });
      const { shardsTotal } = await second.status();
      expect(shardsTotal).toBe(64);
      // The coordinator credits every shard of the second job to that worker...
      expect((await shardsCompletedBy(cluster, "behind-proxy")) - acceptedBefore).toBe(shardsTotal);
      // ...and the worker itself logged them as completed (its log lines trail the replies).
      const completedShards = () =>
        new Set(
          logLines(behind.stderr.slice(logFrom))
            .filter((l) => l.msg === "shard completed" && l.jobId === second.id)
            .map((l) => l.shard),
        ).size;
      await waitFor(behind, () => completedShards() === shardsTotal, 10_000, "its log of the second job's shards");
      expect(behind.child.exitCode).toBeNull();
    },
  );
});

/** Shard results the coordinator accepted from the worker named `name`, from its metrics. */
async function shardsCompletedBy(cluster: Cluster, name: string): Promise<number> {
  const res = await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken));
  expect(res.status).toBe(200);
  return parseScrape(res.body).sum("dce_worker_shards_completed_total", { worker_name: name });
}
