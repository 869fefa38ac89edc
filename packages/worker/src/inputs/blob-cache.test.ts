import { describe, expect, it } from "vitest";
import { createBlobCache } from "./blob-cache.js";

const never = new AbortController().signal;
const matrix = (len: number, fill = 1) => new Float64Array(len).fill(fill);

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("createBlobCache", () => {
  it("loads once and serves later calls from the cache", async () => {
    const cache = createBlobCache({ budgetBytes: 1024 });
    let loads = 0;
    const load = async () => {
      loads++;
      return matrix(4);
    };
    const first = await cache.getOrLoad("b", load, never);
    const second = await cache.getOrLoad("b", load, never);
    expect(second).toBe(first);
    expect(loads).toBe(1);
    expect(cache.sizeBytes).toBe(32);
  });

  it("merges concurrent loads of the same blob", async () => {
    const cache = createBlobCache({ budgetBytes: 1024 });
    const d = deferred<Float64Array>();
    let loads = 0;
    const load = () => {
      loads++;
      return d.promise;
    };
    const calls = [cache.getOrLoad("b", load, never), cache.getOrLoad("b", load, never)];
    d.resolve(matrix(2));
    const [x, y] = await Promise.all(calls);
    expect(x).toBe(y);
    expect(loads).toBe(1);
  });

  it("evicts the least recently used entry beyond the budget", async () => {
    const cache = createBlobCache({ budgetBytes: 64 }); // room for two 4-element matrices
    const load = (v: number) => async () => matrix(4, v);
    await cache.getOrLoad("a", load(1), never);
    await cache.getOrLoad("b", load(2), never);
    cache.get("a"); // a is now more recent than b
    await cache.getOrLoad("c", load(3), never);
    expect(cache.get("a")).toBeDefined();
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("c")).toBeDefined();
    expect(cache.sizeBytes).toBe(64);
  });

  it("does not cache a matrix larger than the budget", async () => {
    const cache = createBlobCache({ budgetBytes: 16 });
    const m = await cache.getOrLoad("big", async () => matrix(4), never);
    expect(m.length).toBe(4);
    expect(cache.get("big")).toBeUndefined();
    expect(cache.sizeBytes).toBe(0);
  });

  it("aborts the shared load only when every waiter has left", async () => {
    const cache = createBlobCache({ budgetBytes: 1024 });
    let loadSignal: AbortSignal | undefined;
    const d = deferred<Float64Array>();
    const load = (s: AbortSignal) => {
      loadSignal = s;
      return d.promise;
    };
    const ac1 = new AbortController();
    const ac2 = new AbortController();
    const p1 = cache.getOrLoad("b", load, ac1.signal);
    const p2 = cache.getOrLoad("b", load, ac2.signal);
    ac1.abort(new Error("one"));
    await expect(p1).rejects.toThrow("one");
    expect(loadSignal?.aborted).toBe(false);
    ac2.abort(new Error("two"));
    await expect(p2).rejects.toThrow("two");
    expect(loadSignal?.aborted).toBe(true);
    d.reject(new Error("aborted"));
    // the next caller starts a fresh load
    const again = await cache.getOrLoad("b", async () => matrix(1, 7), never);
    expect(again[0]).toBe(7);
  });

  it("a failed load is not cached and is retried by the next caller", async () => {
    const cache = createBlobCache({ budgetBytes: 1024 });
    await expect(cache.getOrLoad("b", async () => Promise.reject(new Error("boom")), never)).rejects.toThrow("boom");
    expect((await cache.getOrLoad("b", async () => matrix(1, 5), never))[0]).toBe(5);
  });
});
