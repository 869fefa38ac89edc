import { afterAll, afterEach, describe, expect, it } from "vitest";
import { referenceKernel } from "./kernels/reference.js";
import { type ComputePool, createThreadPool } from "./pool.js";
import { compileThreadScript, removeCompiledThreadScript } from "./test-support/compile-thread.js";

const pools: ComputePool[] = [];
function pool(threads: number): ComputePool {
  const p = createThreadPool({ threads, threadUrl: compileThreadScript() });
  pools.push(p);
  return p;
}
afterAll(() => removeCompiledThreadScript());
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function random(len: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: len }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31 - 0.5;
  });
}

function expected(m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(m * n);
  referenceKernel.gemm(m, n, k, a, b, c);
  return c;
}

describe("createThreadPool", () => {
  it("computes in a thread with the same bits as the kernel on the main thread", async () => {
    const p = pool(2);
    const [m, n, k] = [7, 13, 5];
    const a = random(m * k, 1);
    const b = random(k * n, 2);
    const want = expected(m, n, k, a, b);
    const { c, computeMs } = await p.run({ kernel: "reference", m, n, k, a, b });
    expect(new Uint8Array(c.buffer)).toEqual(new Uint8Array(want.buffer));
    expect(computeMs).toBeGreaterThanOrEqual(0);
    // ownership of a whole buffer passes to the thread
    expect(a.length).toBe(0);
  });

  it("copies views instead of detaching a shared parent buffer", async () => {
    const p = pool(1);
    const parent = random(20, 3);
    const b = parent.subarray(4, 8); // 4×1
    const { c } = await p.run({ kernel: "reference", m: 1, n: 1, k: 4, a: Float64Array.of(1, 1, 1, 1), b });
    expect(parent.length).toBe(20);
    expect(c[0]).toBe(0 + (parent[4] as number) + (parent[5] as number) + (parent[6] as number) + (parent[7] as number));
  });

  it("runs more tasks than threads, queueing the rest", async () => {
    const p = pool(2);
    const runs = Array.from({ length: 6 }, (_, i) =>
      p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(i), b: Float64Array.of(2) }),
    );
    const results = await Promise.all(runs);
    expect(results.map((r) => r.c[0])).toEqual([0, 2, 4, 6, 8, 10]);
  });

  it("reports kernel errors without losing the thread", async () => {
    const p = pool(1);
    await expect(p.run({ kernel: "nope", m: 1, n: 1, k: 1, a: new Float64Array(1), b: new Float64Array(1) })).rejects.toThrow(
      /unknown kernel/,
    );
    const { c } = await p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(3), b: Float64Array.of(4) });
    expect(c[0]).toBe(12);
  });

  it("aborting a running task terminates its thread at once and a fresh thread takes over", async () => {
    const p = pool(1);
    const size = 700; // ~0.3 G multiply-adds: far longer than the abort delay
    const ac = new AbortController();
    const started = Date.now();
    const long = p.run(
      { kernel: "reference", m: size, n: size, k: size, a: random(size * size, 4), b: random(size * size, 5) },
      ac.signal,
    );
    setTimeout(() => ac.abort(new Error("lease lost")), 20);
    await expect(long).rejects.toThrow("lease lost");
    expect(Date.now() - started).toBeLessThan(1_000);
    const { c } = await p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(5), b: Float64Array.of(6) });
    expect(c[0]).toBe(30);
  });

  it("aborting a queued task removes it from the queue", async () => {
    const p = pool(1);
    const ac = new AbortController();
    const first = p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(1), b: Float64Array.of(1) });
    const second = p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(2), b: Float64Array.of(1) }, ac.signal);
    ac.abort(new Error("gone"));
    await expect(second).rejects.toThrow("gone");
    expect((await first).c[0]).toBe(1);
  });

  it("runs many tiny tasks in batches, each with its own correct result; a task aborted inside a batch is rejected alone", async () => {
    const p = pool(2);
    const tasks = Array.from({ length: 300 }, (_, i) => {
      const [m, n, k] = [1 + (i % 8), 1 + ((i * 3) % 8), 1 + ((i * 7) % 16)];
      return { m, n, k, a: random(m * k, i + 1), b: random(k * n, i + 1000) };
    });
    const wants = tasks.map((t) => expected(t.m, t.n, t.k, t.a, t.b));
    const doomed = new AbortController();
    const runs = tasks.map((t, i) =>
      p.run({ kernel: "reference", ...t, a: t.a.slice(), b: t.b.slice() }, i === 150 ? doomed.signal : undefined),
    );
    queueMicrotask(() => queueMicrotask(() => doomed.abort(new Error("stop this one"))));
    const settled = await Promise.allSettled(runs);
    for (const [i, r] of settled.entries()) {
      if (i === 150) {
        expect(r.status).toBe("rejected");
        continue;
      }
      expect(r.status).toBe("fulfilled");
      if (r.status === "fulfilled")
        expect(new Uint8Array(r.value.c.buffer)).toEqual(new Uint8Array((wants[i] as Float64Array).buffer));
    }
    // the pool still works
    const t = tasks[0] as (typeof tasks)[number];
    const again = await p.run({ kernel: "reference", ...t, a: t.a.slice(), b: t.b.slice() });
    expect(new Uint8Array(again.c.buffer)).toEqual(new Uint8Array((wants[0] as Float64Array).buffer));
  });

  it("close() is idempotent and rejects later runs", async () => {
    const p = pool(1);
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await closing;
    await expect(
      p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: new Float64Array(1), b: new Float64Array(1) }),
    ).rejects.toThrow(/closed/);
  });

  it("a missing thread script fails the task instead of respawning forever", async () => {
    const p = createThreadPool({ threads: 1, threadUrl: new URL("file:///nonexistent/kernel-thread.js") });
    pools.push(p);
    await expect(
      p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: new Float64Array(1), b: new Float64Array(1) }),
    ).rejects.toThrow(/kernel thread died/);
  });
});
