import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, type Cluster, type Proc, randomMatrix, spawnNode, startCluster, waitFor } from "../support/cluster.js";

// The coordinator's and the workers' stderr, as an operator gets it through a pipe: JSON
// lines. A job is followed by filtering every process's lines on its id.

type Line = Record<string, unknown> & { msg: string; level: number };

/** Every stderr line of `p`, parsed; a line that is not JSON fails the test. */
function jsonLines(p: Proc): Line[] {
  return p.stderr
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      try {
        return JSON.parse(l) as Line;
      } catch {
        throw new Error(`${p.name} wrote a line that is not JSON: ${l}`);
      }
    });
}

/** Lines of the worker as a whole that speak of leases or shards in the plural. */
const WORKER_WIDE = new Set(["handing back unfinished leases", "heartbeat failed", "draining"]);

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({
    workers: 2,
    extraCoordinatorArgs: ["--log-level", "debug"],
    extraWorkerArgs: ["--log-level", "debug"],
  });
});
afterAll(async () => {
  await cluster?.close();
});

describe("structured logs", () => {
  test("a job's story can be followed by its id, and every line about a shard names the job and the shard", async () => {
    const client = createClient(cluster.clientOptions);
    // 96x80 in 16x16 tiles: 6 x 5 = 30 shards.
    const shards = 30;
    const job = await client.submitMatMul(randomMatrix(96, 40, 11), randomMatrix(40, 80, 12), {
      tileSize: 16,
      kernel: "reference",
    });
    await job.result();
    const id = job.id;
    const ofJob = (p: Proc) => jsonLines(p).filter((l) => l.jobId === id);
    const shardsIn = (lines: Line[], msg: RegExp) => new Set(lines.filter((l) => msg.test(l.msg)).map((l) => l.shard));

    // A worker logs a completion when its reply arrives, which can be just after the job ends.
    await waitFor(cluster.coordinator, (p) => ofJob(p).some((l) => l.msg === "job succeeded"), 15_000, "job succeeded");
    const deadline = Date.now() + 15_000;
    while (shardsIn(cluster.workers.flatMap(ofJob), /^shard completed/).size < shards && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }

    // The coordinator: submitted, started, every shard leased and accepted once, succeeded.
    const coord = ofJob(cluster.coordinator);
    const msgs = coord.map((l) => l.msg);
    expect(msgs[0]).toBe("job submitted");
    expect(coord[0]).toMatchObject({ shards, rows: 96, cols: 80 });
    expect(msgs).toContain("job started");
    expect(msgs.indexOf("job started")).toBeLessThan(msgs.indexOf("job succeeded"));
    expect(shardsIn(coord, /^lease granted$/).size).toBe(shards);
    expect(coord.filter((l) => l.msg === "shard accepted")).toHaveLength(shards);
    expect(shardsIn(coord, /^shard accepted$/).size).toBe(shards);
    expect(coord.find((l) => l.msg === "job succeeded")).toMatchObject({ shards, kernel: "reference" });
    // At the default level (info) the story is still there, in three lines at least.
    expect(coord.filter((l) => l.level >= 30).map((l) => l.msg)).toEqual(
      expect.arrayContaining(["job submitted", "job started", "job succeeded"]),
    );

    // The workers: each shard leased and completed (across both workers).
    const work = cluster.workers.flatMap(ofJob);
    expect(shardsIn(work, /^shard leased$/).size).toBe(shards);
    expect(shardsIn(work, /^shard completed/).size).toBe(shards);
    for (const l of work) expect(l.svc).toBe("worker");

    // Every line, from every process: about a shard → it names the job and the shard;
    // mentions the job anywhere → it carries the job id as `jobId`.
    for (const p of [cluster.coordinator, ...cluster.workers]) {
      const raw = p.stderr.split("\n").filter((l) => l !== "");
      const parsed = jsonLines(p);
      parsed.forEach((l, i) => {
        const where = `${p.name}: ${raw[i]}`;
        expect(l, where).not.toHaveProperty("shardIndex");
        const aboutShard = "shard" in l || "epoch" in l || (/\b(shard|lease)/i.test(l.msg) && !WORKER_WIDE.has(l.msg));
        if (aboutShard) {
          expect(typeof l.jobId, where).toBe("string");
          expect(typeof l.shard, where).toBe("number");
        }
        if (raw[i]?.includes(id)) expect(l.jobId, where).toBe(id);
        // No credential material ever reaches a log line.
        expect(raw[i], where).not.toMatch(/PRIVATE KEY|bearer\s+\S/i);
      });
    }
  });
});

describe("log format", () => {
  test("--log-format pretty writes human lines; JSON stays the default off a terminal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-logfmt-"));
    try {
      const run = async (format: string[]) => {
        const p = spawnNode("coordinator", BIN.coordinator, [
          "--insecure",
          "--port",
          "0",
          "--data-dir",
          join(dir, format.join("") || "auto"),
          ...format,
        ]);
        await waitFor(p, (x) => x.stderr.includes("coordinator ready"), 15_000, "ready line");
        p.child.kill("SIGTERM");
        expect(await p.exited).toBe(0);
        return p.stderr;
      };
      const pretty = await run(["--log-format", "pretty"]);
      const first = pretty.split("\n").find((l) => l.includes("coordinator ready")) ?? "";
      expect(first).toMatch(/INFO/);
      expect(first.trimStart().startsWith("{")).toBe(false);
      const json = await run([]);
      const ready = json
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Line)
        .find((l) => l.msg === "coordinator ready");
      expect(ready).toMatchObject({ level: 30, svc: "coordinator" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
