import { appendFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@dce/client-sdk";
import { describe, expect, onTestFinished, test } from "vitest";
import { naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// A real coordinator with a data dir is SIGKILLed and started again on the same dir;
// workers and waiting clients re-attach on their own.

describe("durable coordinator", () => {
  test("SIGKILL mid-job: the job survives, accepted tiles are kept, workers and the waiting client re-attach", async () => {
    const cluster = await startCluster({ workers: 2, leaseTtlMs: 2000 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(320, 1200, 71);
    const b = randomMatrix(1200, 320, 72);
    const job = await client.submitMatMul(a, b, { tileSize: 64, kernel: "reference", idempotencyKey: "restart-1" });
    const waiting = job.result(); // stays pending across the restart
    let before = 0;
    for (let i = 0; i < 500 && before < 5; i++) {
      before = (await job.status()).shardsDone;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(before).toBeGreaterThanOrEqual(5);
    const { readyMs } = await cluster.restartCoordinator("SIGKILL");
    expect(readyMs).toBeLessThan(5_000);
    // Acknowledged state came back: the job and (at least) the tiles accepted before the kill.
    const after = await job.status();
    expect(after.shardsDone).toBeGreaterThanOrEqual(before);
    const c = await waiting;
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    // The same idempotency key still names the same job after the restart.
    const again = await client.submitMatMul(a, b, { tileSize: 64, kernel: "reference", idempotencyKey: "restart-1" });
    expect(again.id).toBe(job.id);
    expect(cluster.coordinator.stderr).toContain("recovered");
  });

  test("SIGKILL right after SubmitJob answered: the inline A and B it sent are there after the restart", async () => {
    // No worker yet: the job waits with nothing of it computed. The inline matrices are
    // named (and fsynced) by the same group commit as the job's record, before the reply.
    const cluster = await startCluster({ workers: 0 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(64, 48, 91);
    const b = randomMatrix(48, 64, 92);
    const job = await client.submitMatMul(a, b, { kernel: "reference" });
    await cluster.restartCoordinator("SIGKILL");
    await cluster.addWorker();
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
  });

  test("SIGKILL right after a small job's result was read: the job and its C are there after the restart", async () => {
    const cluster = await startCluster({ workers: 1 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(40, 40, 93);
    const job = await client.submitMatMul(a, a, { kernel: "reference" });
    const c1 = await job.result();
    await cluster.restartCoordinator("SIGKILL");
    expect((await job.status()).state).toBe("succeeded");
    expect(sameBytes((await job.result()).data, c1.data)).toBe(true);
  });

  test("a torn journal tail is truncated at the last good record", async () => {
    const cluster = await startCluster({ workers: 1 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(30, 20, 81);
    const done = await client.submitMatMul(a, a.rows === 20 ? a : randomMatrix(20, 30, 82), { tileSize: 8 });
    const c1 = await done.result();
    cluster.coordinator.child.kill("SIGKILL");
    await cluster.coordinator.exited;
    // Simulate a crash mid-write: half a frame, then garbage.
    const jdir = join(cluster.dataDir, "journal");
    const wal = readdirSync(jdir)
      .filter((f) => f.startsWith("wal-"))
      .sort()
      .at(-1) as string;
    appendFileSync(join(jdir, wal), Buffer.from([0x40, 0, 0, 0, 1, 2, 3, 4, 0x7b, 0x22]));
    await cluster.restartCoordinator("SIGKILL");
    expect(cluster.coordinator.stderr).toMatch(/"truncatedBytes":10/);
    const st = await done.status();
    expect(st.state).toBe("succeeded");
    expect(sameBytes((await done.result()).data, c1.data)).toBe(true);
  });

  // A bound on recovery, not a speed figure: replaying 100 jobs takes tens of ms; the rest is
  // starting node, which a loaded machine stretches (2 s failed at 2.5 s under load).
  test("restart with 100 jobs in the data dir serves within 5 s", async () => {
    const cluster = await startCluster({ workers: 2 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const handles = [];
    for (let i = 0; i < 100; i++) {
      const m = randomMatrix(8, 8, 1000 + i);
      handles.push(await client.submitMatMul(m, m, { tileSize: 4 }));
    }
    await Promise.all(handles.slice(0, 90).map((h) => h.result()));
    const { readyMs } = await cluster.restartCoordinator("SIGKILL");
    expect(readyMs).toBeLessThan(5_000);
    const states = await Promise.all(handles.map((h) => h.status()));
    expect(states.every((s) => s.jobId !== "")).toBe(true);
    expect(states.slice(0, 90).every((s) => s.state === "succeeded")).toBe(true);
    // The unfinished ones finish after the restart.
    await Promise.all(handles.map((h) => h.result()));
  });
});

describe("zombies, cancel and drain with real processes", () => {
  test("a worker paused past its lease TTL has its old leases refused (LOST / ABORTED) and the job is still exact", async () => {
    const cluster = await startCluster({ workers: 1, leaseTtlMs: 800 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(256, 1500, 91);
    const b = randomMatrix(1500, 256, 92);
    const job = await client.submitMatMul(a, b, { tileSize: 64, kernel: "reference" });
    // Pause it inside a shard, not in the gap between two.
    for (let i = 0; i < 2000 && (await job.status()).shardsDone < 1; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 2000 && (await job.status()).shardsLeased < 1; i++) await new Promise((r) => setTimeout(r, 2));
    const zombie = cluster.workers[0]!;
    zombie.child.kill("SIGSTOP");
    await cluster.addWorker("healthy");
    await new Promise((r) => setTimeout(r, 2_000)); // > TTL: the zombie's leases expire and are re-granted
    zombie.child.kill("SIGCONT");
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    // Its lease expired, or a straggler backup finished the shard first.
    expect(cluster.coordinator.stderr).toMatch(/"msg":"lease expired"|"msg":"backup leased for straggler"/);
    // The zombie learnt that its old leases are gone (heartbeat LOST or completion ABORTED), dropped them and lives on.
    expect(zombie.stderr).toMatch(/lease ended; stopping shard|result not accepted \(lease no longer current\)/);
    expect(zombie.child.exitCode).toBeNull();
  });

  test("cancel stops the work on the workers and later results are rejected", async () => {
    const cluster = await startCluster({ workers: 2, leaseTtlMs: 1500 });
    onTestFinished(() => cluster.close());
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(512, 2000, 93);
    const job = await client.submitMatMul(a, randomMatrix(2000, 512, 94), { tileSize: 256, kernel: "reference" });
    for (let i = 0; i < 300 && (await job.status()).shardsLeased < 2; i++) await new Promise((r) => setTimeout(r, 5));
    const st = await job.cancel({ reason: "test" });
    expect(st.state).toBe("cancelled");
    await expect(job.result()).rejects.toMatchObject({ name: "JobCancelledError" });
    // Within about one heartbeat interval (ttl/3) no lease is left.
    await new Promise((r) => setTimeout(r, 1_000));
    const after = await job.status();
    expect(after.shardsLeased).toBe(0);
    expect(after.shardsDone).toBeLessThan(after.shardsTotal);
  });

  test("SIGTERM drains the coordinator and it exits 0", async () => {
    const cluster = await startCluster({ workers: 1 });
    onTestFinished(() => cluster.close());
    cluster.coordinator.child.kill("SIGTERM");
    expect(await cluster.coordinator.exited).toBe(0);
  });
});
