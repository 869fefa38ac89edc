// The native-avx512 kernel's own promises: where it is offered, that every element's bits
// depend on its row of A and column of B only (so tiles, threads and retries give the
// same C), and that a stop request ends its work within one block. Its agreement with the
// reference on odd shapes runs with the other kernels in kernels.test.ts and
// verify-kernels.test.ts.
import { readdirSync, readFileSync } from "node:fs";
import fc from "fast-check";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type ComputePool, createThreadPool } from "../pool.js";
import { avx512Unavailable } from "../test-support/avx512.js";
import { compileThreadScript, removeCompiledThreadScript } from "../test-support/compile-thread.js";
import { listKernels } from "./kernel.js";
import { createNativeAvx512Kernel, nativeAvx512Name } from "./native-avx512.js";
import { referenceKernel } from "./reference.js";
import { KernelStoppedError } from "./support.js";
import type { Kernel } from "./types.js";

/** Values over ±20 binades, deterministic. */
function random(len: number, seed: number): Float64Array {
  let x = seed >>> 0 || 1;
  return Float64Array.from({ length: len }, (_, i) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32 - 0.5) * 2 ** ((i * 7) % 41) * 2 ** -20;
  });
}

const bits = (x: Float64Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

function product(kernel: Kernel, m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(m * n).fill(Number.NaN);
  kernel.gemm(m, n, k, a, b, c);
  return c;
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

const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

const title = avx512Unavailable === undefined ? nativeAvx512Name : `${nativeAvx512Name} (skipped: ${avx512Unavailable})`;

describe.skipIf(avx512Unavailable !== undefined)(title, () => {
  const pools: ComputePool[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  afterAll(() => removeCompiledThreadScript());

  it("is offered first, with a fingerprint naming its arithmetic and micro-kernel shape", () => {
    const kernel = createNativeAvx512Kernel();
    expect(kernel.fingerprint).toMatch(/^native-avx512\/1\/\d+x\d+ kc\d+ mc\d+ nc\d+$/);
    expect(listKernels()[0]?.name).toBe(nativeAvx512Name);
  });

  it("agrees with the reference element by element on shapes across its register tile and cache blocks", () => {
    const kernel = createNativeAvx512Kernel();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 210 }),
        fc.integer({ min: 1, max: 75 }),
        fc.integer({ min: 1, max: 530 }),
        fc.integer(),
        (m, n, k, seed) => {
          const a = random(m * k, seed);
          const b = random(k * n, seed + 1);
          const got = product(kernel, m, n, k, a, b);
          const want = product(referenceKernel, m, n, k, a, b);
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              let s = 0;
              for (let p = 0; p < k; p++) s += Math.abs((a[i * k + p] as number) * (b[p * n + j] as number));
              const err = Math.abs((got[i * n + j] as number) - (want[i * n + j] as number));
              expect(err).toBeLessThanOrEqual(2 * k * 2 ** -53 * s);
            }
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("gives every element the same bits wherever it sits: any block of rows and columns equals that part of the whole", () => {
    // An element is one FMA chain over k: neither edge tiles, nor cache blocks of m and n,
    // nor the size of the product change it. This is what makes C byte-identical across
    // worker counts and tilings.
    const kernel = createNativeAvx512Kernel();
    const [m, n, k] = [401, 263, 600];
    const a = random(m * k, 1);
    const b = random(k * n, 2);
    const whole = product(kernel, m, n, k, a, b);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: m - 1 }),
        fc.integer({ min: 0, max: n - 1 }),
        fc.integer({ min: 1, max: m }),
        fc.integer({ min: 1, max: n }),
        (r0, c0, rows, cols) => {
          const tm = Math.min(rows, m - r0);
          const tn = Math.min(cols, n - c0);
          const tile = new Float64Array(tm * tn).fill(Number.NaN);
          kernel.gemmStrided?.(tm, tn, k, a.subarray(r0 * k, (r0 + tm) * k), b.subarray(c0), n, tile);
          let differing = 0;
          for (let i = 0; i < tm; i++) {
            for (let j = 0; j < tn; j++) {
              if (!Object.is(tile[i * tn + j], whole[(r0 + i) * n + c0 + j])) differing++;
            }
          }
          expect(differing).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("computes the same bits on 1 and 2 threads, tile by tile, as in one call on the main thread", async () => {
    const [m, n, k] = [150, 90, 700];
    const a = random(m * k, 3);
    const b = random(k * n, 4);
    const whole = product(createNativeAvx512Kernel(), m, n, k, a, b);
    for (const threads of [1, 2]) {
      const pool = createThreadPool({ threads, threadUrl: compileThreadScript() });
      pools.push(pool);
      // Tiles of 40 × 30 with ragged edges, all in flight at once.
      const tiles: Promise<void>[] = [];
      for (let r0 = 0; r0 < m; r0 += 40) {
        for (let c0 = 0; c0 < n; c0 += 30) {
          const [tm, tn] = [Math.min(40, m - r0), Math.min(30, n - c0)];
          const panel = new Float64Array(k * tn);
          for (let p = 0; p < k; p++) panel.set(b.subarray(p * n + c0, p * n + c0 + tn), p * tn);
          tiles.push(
            pool.run({ kernel: nativeAvx512Name, m: tm, n: tn, k, a: a.slice(r0 * k, (r0 + tm) * k), b: panel }).then(({ c }) => {
              for (let i = 0; i < tm; i++) {
                const want = whole.subarray((r0 + i) * n + c0, (r0 + i) * n + c0 + tn);
                expect(bits(c.subarray(i * tn, (i + 1) * tn))).toEqual(bits(want));
              }
            }),
          );
        }
      }
      await Promise.all(tiles);
    }
  });

  it("stops before any work once the stop flag is set, and an unset flag changes nothing", () => {
    const kernel = createNativeAvx512Kernel();
    const [m, n, k] = [37, 53, 600];
    const a = random(m * k, 11);
    const b = random(k * n, 12);
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const c = new Float64Array(m * n);
    kernel.gemm(m, n, k, a, b, c, stop);
    expect(bits(c)).toEqual(bits(product(kernel, m, n, k, a, b)));
    Atomics.store(stop, 0, 1);
    const untouched = new Float64Array(m * n).fill(7);
    expect(() => kernel.gemm(m, n, k, a, b, untouched, stop)).toThrow(KernelStoppedError);
    expect(untouched.every((x) => x === 7)).toBe(true); // checked before the first block
    expect(() => kernel.gemmStrided?.(m, n, k, a, b, n, untouched, stop)).toThrow(KernelStoppedError);
  });

  // Terminating a thread cannot interrupt native code: without the stop flag the thread
  // would finish its product (seconds of CPU here). CPU time, not wall time, so that other
  // load on the machine does not change the outcome.
  it("aborted in a worker thread, stops within a block and frees the slot", async () => {
    const pool = createThreadPool({ threads: 1, threadUrl: compileThreadScript(), inlineMaxMadds: 0 });
    pools.push(pool);
    // A fresh task each time: the pool transfers (detaches) the arrays it is given.
    const one = () => ({ kernel: nativeAvx512Name, m: 1, n: 1, k: 1, a: Float64Array.of(5), b: Float64Array.of(6) });
    await pool.run(one()); // addon loaded and self-checked
    const n = 3072; // 29 G multiply-adds: about 0.7 s of CPU at 80 GFLOP/s
    const a = new Float64Array(n * n).fill(0.5);
    const b = new Float64Array(n * n).fill(2);
    const ac = new AbortController();
    const before = threadTicks();
    const long = pool.run({ kernel: nativeAvx512Name, m: n, n, k: n, a, b }, ac.signal);
    let kernelTid: string | undefined;
    for (let waited = 0; kernelTid === undefined; waited += 5) {
      if (waited > 10_000) throw new Error("the kernel thread never started computing");
      await new Promise((r) => setTimeout(r, 5));
      kernelTid = [...threadTicks()].find(([tid, t]) => tid !== String(process.pid) && t - (before.get(tid) ?? 0) >= 10)?.[0];
    }
    const abortCpu = cpuMs();
    ac.abort(new Error("lease lost"));
    await expect(long).rejects.toThrow("lease lost");
    expect((await pool.run(one())).c[0]).toBe(30);
    // At most one block (MC·NC·KC ≈ 2·10^8 multiply-adds, a few ms) and a fresh thread.
    expect(cpuMs() - abortCpu).toBeLessThan(300);
    const after = threadTicks().get(kernelTid as string);
    await new Promise((r) => setTimeout(r, 500));
    const later = threadTicks().get(kernelTid as string);
    expect(later === undefined || later - (after ?? 0) <= 1, `kernel thread ticks ${after} then ${later}`).toBe(true);
  });
});
