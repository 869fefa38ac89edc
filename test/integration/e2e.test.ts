import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { createClient } from "@dce/client-sdk";
import { JobService, JobState } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// A real TLS coordinator and three real worker processes on loopback; jobs go in
// through the SDK and every result is checked bit for bit against a naive multiply.

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ workers: 3 });
});
afterAll(async () => {
  await cluster?.close();
});

const shapes: [string, number, number, number, number][] = [
  // name, M, K, N, tile
  ["1x1 by 1x1", 1, 1, 1, 0],
  ["1xn by nx1", 1, 50, 1, 0],
  ["nx1 by 1xn", 40, 1, 30, 7],
  ["1xn by nxm", 1, 64, 33, 8],
  ["primes 257x129 by 129x383, tile 64", 257, 129, 383, 64],
  ["tile that does not divide the shape", 100, 37, 70, 33],
  ["tile larger than the matrix", 5, 6, 7, 500],
  ["square 128, tile 16 (64 shards)", 128, 128, 128, 16],
];

describe("end to end over TLS with 3 workers", () => {
  test.each(shapes)("%s", async (_name, m, k, n, tile) => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(m, k, m * 1000 + k);
    const b = randomMatrix(k, n, n * 1000 + k + 1);
    const job = await client.submitMatMul(a, b, { ...(tile ? { tileSize: tile } : {}), kernel: "reference" });
    const c = await job.result();
    expect(c.rows).toBe(m);
    expect(c.cols).toBe(n);
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    const st = await job.status();
    expect(st.state).toBe("succeeded");
    expect(st.shardsDone).toBe(st.shardsTotal);
  });

  test("NaN and infinities propagate as IEEE 754 says", async () => {
    const client = createClient(cluster.clientOptions);
    const a = { rows: 2, cols: 2, data: new Float64Array([Number.NaN, 1, Number.POSITIVE_INFINITY, 2]) };
    const b = { rows: 2, cols: 2, data: new Float64Array([1, 0, 0, Number.NEGATIVE_INFINITY]) };
    const c = await (await client.submitMatMul(a, b, { kernel: "reference" })).result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    expect(Number.isNaN(c.data[0])).toBe(true);
  });

  test("the same idempotency key returns the same job", async () => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(9, 9, 5);
    const j1 = await client.submitMatMul(a, a, { idempotencyKey: "same-key-1" });
    const j2 = await client.submitMatMul(a, a, { idempotencyKey: "same-key-1" });
    expect(j2.id).toBe(j1.id);
    await expect(client.submitMatMul(a, randomMatrix(9, 9, 6), { idempotencyKey: "same-key-1" })).rejects.toMatchObject({
      code: 6, // ALREADY_EXISTS
    });
    await j1.result();
  });

  test("progress() ends at the terminal state with every shard done", async () => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(64, 64, 9);
    const job = await client.submitMatMul(a, a, { tileSize: 8 });
    let last: { state: string; shardsDone: number; shardsTotal: number } | undefined;
    for await (const p of job.progress()) last = p;
    expect(last?.state).toBe("succeeded");
    expect(last?.shardsDone).toBe(64);
    expect(last?.shardsTotal).toBe(64);
  });
});

describe("small jobs travel inline", () => {
  test("SubmitJob takes small matrices inline and GetJob returns a small C inline, same bytes", async () => {
    const jobs = cluster.raw(JobService);
    const a = randomMatrix(9, 7, 1);
    const b = randomMatrix(7, 5, 2);
    const bytes = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const sub = await jobs.submitJob({
      matmul: {
        a: { rows: 9, cols: 7, inlineData: bytes(a.data) },
        b: { rows: 7, cols: 5, inlineData: bytes(b.data) },
        kernel: "reference",
      },
    });
    const res = await jobs.getJob({ jobId: sub.jobId, waitMs: 20_000, untilTerminal: true, inlineResultMaxBytes: 1 << 20 });
    expect(res.status?.state).toBe(JobState.SUCCEEDED);
    const c = res.result;
    expect([c?.rows, c?.cols]).toEqual([9, 5]);
    const data = c?.inlineData ?? new Uint8Array(0);
    expect(c?.blobId).toBe(createHash("sha256").update(data).digest("hex"));
    expect(sameBytes(new Float64Array(data.slice().buffer), naiveMultiply(a, b))).toBe(true);
    // a C larger than the caller's inline limit comes back as a reference only
    const small = await jobs.getJob({ jobId: sub.jobId, inlineResultMaxBytes: 100 });
    expect(small.result).toBeUndefined();
  });

  test("inline data that is the wrong size or contradicts its blob id is INVALID_ARGUMENT; over 1 MiB is RESOURCE_EXHAUSTED", async () => {
    const jobs = cluster.raw(JobService);
    const a = new Uint8Array(new Float64Array([1, 2, 3, 4]).buffer);
    const submit = (ref: { rows: number; cols: number; blobId?: string; inlineData: Uint8Array }) =>
      jobs.submitJob({ matmul: { a: ref, b: { rows: 2, cols: 2, inlineData: a }, kernel: "reference" } });
    await expect(submit({ rows: 2, cols: 3, inlineData: a })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(submit({ rows: 2, cols: 2, blobId: "0".repeat(64), inlineData: a })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    const big = new Uint8Array(1024 * 1024 + 8);
    await expect(submit({ rows: 1, cols: big.byteLength / 8, inlineData: big })).rejects.toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: expect.stringContaining("maxInlineBytes"),
    });
  });
});

describe("determinism and failures", () => {
  test("a worker SIGKILLed mid-shard still gives the same bytes", async () => {
    // One worker first, so the one we kill certainly holds a lease; a second one finishes the job.
    const local = await startCluster({ workers: 1, leaseTtlMs: 1000 });
    onTestFinished(() => local.close());
    const client = createClient(local.clientOptions);
    // Shards of 128x128 with k=3000 take ~100 ms each in the reference kernel.
    const a = randomMatrix(384, 3000, 31);
    const b = randomMatrix(3000, 384, 32);
    const job = await client.submitMatMul(a, b, { tileSize: 128, kernel: "reference" });
    for (let i = 0; i < 2000 && (await job.status()).shardsDone < 1; i++) await new Promise((r) => setTimeout(r, 5));
    // Right after a completion the worker is between shards; give it time to be inside the next one.
    await new Promise((r) => setTimeout(r, 40));
    for (let i = 0; i < 2000 && (await job.status()).shardsLeased < 1; i++) await new Promise((r) => setTimeout(r, 2));
    local.workers[0]!.child.kill("SIGKILL");
    await local.addWorker("rescuer");
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    const st = await job.status();
    expect(st.state).toBe("succeeded");
    // The killed worker's shard was taken over: its lease expired, or a straggler backup won.
    expect(local.coordinator.stderr).toMatch(/"msg":"lease expired"|"msg":"backup leased for straggler"/);
  });

  test("one job gives byte-identical C with 1 worker and with 3 workers", async () => {
    const a = randomMatrix(200, 150, 41);
    const b = randomMatrix(150, 170, 42);
    const digest = async (workers: number) => {
      const local = await startCluster({ workers });
      try {
        const client = createClient(local.clientOptions);
        const c = await (await client.submitMatMul(a, b, { tileSize: 32 })).result();
        return createHash("sha256")
          .update(new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength))
          .digest("hex");
      } finally {
        await local.close();
      }
    };
    const one = await digest(1);
    const three = await digest(3);
    expect(three).toBe(one);
  });

  test("a client that does not trust the server's CA is refused", async () => {
    const other = createClient({ baseUrl: cluster.url });
    await expect(other.getJobHandle("x").status()).rejects.toMatchObject({ code: 14 }); // UNAVAILABLE: TLS verify failed
  });

  test("SIGTERM drains a worker and it exits 0", async () => {
    const w = await cluster.addWorker("drainer");
    w.child.kill("SIGTERM");
    expect(await w.exited).toBe(0);
  });
});
