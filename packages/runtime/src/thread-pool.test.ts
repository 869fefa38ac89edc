import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createThreadPool, type ThreadPool } from "./thread-pool.js";

// A thread script of a few lines: doubles numbers, dies on request, spins until stopped.
const dir = mkdtempSync(join(tmpdir(), "dce-thread-pool-test-"));
const url = pathToFileURL(join(dir, "thread.mjs"));
writeFileSync(
  url,
  `import { parentPort, workerData } from "node:worker_threads";
parentPort.on("message", ({ id, tasks }) => {
  if (tasks.includes("die")) process.exit(3);
  if (tasks.includes("spin")) for (;;) if (Atomics.load(workerData.stop, 0) === 1) break;
  parentPort.postMessage({ id, results: tasks.map((t) => (t === "fail" ? { error: "no" } : { value: t * 2 })), size: tasks.length });
});
`,
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Task = number | "die" | "spin" | "fail";
const pools: ThreadPool<Task, number>[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function pool(threads: number, batchable?: (t: Task) => boolean, seen: number[] = []): ThreadPool<Task, number> {
  const p = createThreadPool<Task, number>({
    threads,
    url,
    threadLabel: "test thread",
    closedMessage: "test pool is closed",
    encode: (id, tasks) => {
      seen.push(tasks.length);
      return { message: { id, tasks }, transfer: [] };
    },
    decode: (reply) =>
      (reply as { results: { value?: number; error?: string }[] }).results.map((r) =>
        r.error === undefined ? { ok: true, value: r.value as number } : { ok: false, error: new Error(r.error) },
      ),
    ...(batchable === undefined ? {} : { batchable }),
  });
  pools.push(p);
  return p;
}

describe("createThreadPool", () => {
  it("runs tasks on threads and answers each with its value and thread time", async () => {
    const p = pool(2);
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => p.run(x)));
    expect(out.map((r) => r.value)).toEqual([2, 4, 6, 8, 10]);
    for (const r of out) expect(r.threadMs).toBeGreaterThanOrEqual(0);
    await expect(p.run("fail")).rejects.toThrow("no");
  });

  it("sends batchable tasks queued in one turn together, spread over the idle threads", async () => {
    const seen: number[] = [];
    const p = pool(2, () => true, seen);
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => p.run(i)));
    expect(out.map((r) => r.value)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    // The dispatch rule the kernel pool had: ceil(waiting / idle threads) beside the first task.
    expect(seen).toEqual([6, 4]);
  });

  it("rejects the task of a thread that died, and runs the next one on a fresh thread", async () => {
    const p = pool(1);
    await expect(p.run("die")).rejects.toThrow(/^test thread died: exit code 3$/);
    expect((await p.run(21)).value).toBe(42);
  });

  it("aborting a running task stops its thread (stop flag set) and the slot works again after", async () => {
    const p = pool(1);
    const ac = new AbortController();
    const spinning = p.run("spin", ac.signal);
    const queued = p.run(4);
    setTimeout(() => ac.abort(new Error("stop it")), 50);
    await expect(spinning).rejects.toThrow("stop it");
    expect((await queued).value).toBe(8);
  });

  it("close() rejects queued and later tasks, and is idempotent", async () => {
    const p = pool(1);
    const running = expect(p.run("spin")).rejects.toThrow("test pool is closed");
    const queued = expect(p.run(1)).rejects.toThrow("test pool is closed");
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await closing;
    await running;
    await queued;
    await expect(p.run(1)).rejects.toThrow("test pool is closed");
  });

  it("rejects a task that cannot be posted (a detached buffer) at once, and the slot takes the next task", async () => {
    const detached = new ArrayBuffer(8);
    structuredClone(detached, { transfer: [detached] });
    const p = createThreadPool<number, number>({
      threads: 1,
      url,
      threadLabel: "test thread",
      closedMessage: "test pool is closed",
      // As the kernels' encode does: a view on the task's buffer (throws when it is detached).
      encode: (id, tasks) => ({
        message: { id, tasks, views: tasks.includes(13) ? [new Float64Array(detached)] : [] },
        transfer: [],
      }),
      decode: (reply) => (reply as { results: { value: number }[] }).results.map((r) => ({ ok: true, value: r.value })),
    });
    try {
      await expect(p.run(13)).rejects.toThrow(/detached/i);
      expect((await p.run(5)).value).toBe(10);
    } finally {
      await p.close();
    }
  });

  it("refuses a thread count that is not a positive integer", () => {
    expect(() => pool(0)).toThrow(RangeError);
  });
});
