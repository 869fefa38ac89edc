import { readdirSync, readFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { referenceKernel } from "./kernels/reference.js";
import { type ComputePool, createThreadPool } from "./pool.js";
import { compileThreadScript, removeCompiledThreadScript } from "./test-support/compile-thread.js";
import { openblasInstalled } from "./test-support/openblas.js";

const pools: ComputePool[] = [];
function pool(threads: number): ComputePool {
  // Every product to a thread: these tests are about the threads (inline runs are tested below).
  const p = createThreadPool({ threads, threadUrl: compileThreadScript(), inlineMaxMadds: 0 });
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

/** CPU time of this process so far, all threads (the pool's included), in milliseconds. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** CPU time of each thread of this process so far, in clock ticks, by thread id (Linux). */
function threadTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks.set(tid, Number(fields[11]) + Number(fields[12])); // utime + stime
    } catch {
      // the thread exited meanwhile
    }
  }
  return ticks;
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
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

  it("aborting a running task frees its slot for the task queued behind it", async () => {
    const p = pool(1);
    const size = 700; // ~0.3 G multiply-adds: about a second of CPU
    const ac = new AbortController();
    const long = p.run(
      { kernel: "reference", m: size, n: size, k: size, a: random(size * size, 4), b: random(size * size, 5) },
      ac.signal,
    );
    const next = p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(7), b: Float64Array.of(6) });
    setTimeout(() => ac.abort(new Error("cancelled")), 20);
    await expect(long).rejects.toThrow("cancelled");
    const abortCpu = cpuMs();
    expect((await next).c[0]).toBe(42);
    // A fresh thread, not the rest of the aborted product (CPU time: immune to other load).
    expect(cpuMs() - abortCpu).toBeLessThan(300);
  });

  // Terminating a thread cannot interrupt native code: without the stop flag the old
  // thread goes on with its product (about 0.6 s of CPU here). CPU time, not wall time,
  // so that other load on the machine does not change the outcome.
  it.skipIf(!openblasInstalled)(
    "native-blas abort: the kernel itself stops within a panel, and the slot takes work again once its thread has exited",
    async () => {
      const p = pool(1);
      const n = 2560; // 17 G multiply-adds: about 0.7 s of CPU at 48 GFLOP/s
      await p.run({ kernel: "native-blas", m: 1, n: 1, k: 1, a: Float64Array.of(1), b: Float64Array.of(1) }); // addon loaded
      const a = new Float64Array(n * n).fill(0.5);
      const b = new Float64Array(n * n).fill(2);
      const ac = new AbortController();
      const before = threadTicks();
      const long = p.run({ kernel: "native-blas", m: n, n, k: n, a, b }, ac.signal);
      // The kernel's thread: the one (not the main thread) that has computed for 100 ms.
      let kernelTid: string | undefined;
      await until(() => {
        const busy = [...threadTicks()].find(([tid, t]) => tid !== String(process.pid) && t - (before.get(tid) ?? 0) >= 10);
        kernelTid = busy?.[0];
        return kernelTid !== undefined;
      }, 10_000);
      const abortCpu = cpuMs();
      ac.abort(new Error("lease lost"));
      await expect(long).rejects.toThrow("lease lost");
      const { c } = await p.run({ kernel: "native-blas", m: 1, n: 1, k: 1, a: Float64Array.of(5), b: Float64Array.of(6) });
      expect(c[0]).toBe(30);
      // Until the next task ran: at most one panel (2^30 multiply-adds, ~45 ms) and a fresh
      // thread, not the rest of the product.
      expect(cpuMs() - abortCpu).toBeLessThan(300);
      // And the kernel's thread computes nothing more (it has exited, or at least stopped).
      const after = threadTicks().get(kernelTid as string);
      await new Promise((r) => setTimeout(r, 500));
      const later = threadTicks().get(kernelTid as string);
      expect(later === undefined || later - (after ?? 0) <= 1, `kernel thread ticks ${after} then ${later}`).toBe(true);
    },
  );

  it("aborting every task of a batch of tiny tasks leaves the pool working", async () => {
    const p = pool(1);
    const ac = new AbortController();
    const runs = Array.from({ length: 64 }, (_, i) =>
      p.run({ kernel: "reference", m: 2, n: 2, k: 2, a: Float64Array.of(i, 0, 0, i), b: Float64Array.of(1, 2, 3, 4) }, ac.signal),
    );
    queueMicrotask(() => queueMicrotask(() => ac.abort(new Error("job cancelled"))));
    const settled = await Promise.allSettled(runs);
    expect(settled.every((r) => r.status === "rejected")).toBe(true);
    const after = await Promise.all(
      [1, 2, 3].map((x) => p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: Float64Array.of(x), b: Float64Array.of(3) })),
    );
    expect(after.map((r) => r.c[0])).toEqual([3, 6, 9]);
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

  it("a tiny product runs on the calling thread with the same bits; a larger one still goes to a thread", async () => {
    // No thread can start here: only a product computed on the calling thread succeeds.
    const p = createThreadPool({ threads: 1, threadUrl: new URL("file:///nonexistent/kernel-thread.js") });
    pools.push(p);
    const [m, n, k, ldb] = [16, 24, 40, 64];
    const a = random(m * k, 11);
    const b = random(k * ldb, 12);
    const cols = Float64Array.from({ length: k * n }, (_, i) => b[Math.floor(i / n) * ldb + 8 + (i % n)] as number);
    const want = expected(m, n, k, a, cols);
    const { c } = await p.run({ kernel: "reference", m, n, k, a, b, bColStart: 8, ldb });
    expect(new Uint8Array(c.buffer)).toEqual(new Uint8Array(want.buffer));
    const big = 65;
    await expect(
      p.run({ kernel: "reference", m: big, n: big, k: big, a: new Float64Array(big * big), b: new Float64Array(big * big) }),
    ).rejects.toThrow();
  });

  it("a missing thread script fails the task instead of respawning forever", async () => {
    const p = createThreadPool({ threads: 1, threadUrl: new URL("file:///nonexistent/kernel-thread.js"), inlineMaxMadds: 0 });
    pools.push(p);
    await expect(
      p.run({ kernel: "reference", m: 1, n: 1, k: 1, a: new Float64Array(1), b: new Float64Array(1) }),
    ).rejects.toThrow(/kernel thread died/);
  });
});
