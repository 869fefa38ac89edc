import { expect } from "vitest";
import type { BedCluster, JobSpec } from "./bed-cluster.js";
import { type HostProc, until } from "./testbed.js";

// What every partition scenario checks afterwards, and the jobs they run.

/** `count` jobs of C = (m×k)·(k×n) in `tile`² tiles, keys prefixed by `prefix`. */
export function jobs(prefix: string, count: number, m: number, k: number, n: number, tile: number): JobSpec[] {
  return Array.from({ length: count }, (_, i) => ({ key: `${prefix}-${i}`, m, k, n, seed: 1000 + 10 * i, tileSize: tile }));
}

export function shardsOf(js: JobSpec[]): number {
  return js.reduce((s, j) => s + Math.ceil(j.m / j.tileSize) * Math.ceil(j.n / j.tileSize), 0);
}

/** Waits for the client driver to end (bounded) and returns its exit code. */
export async function clientEnds(p: HostProc, timeoutMs: number): Promise<number | string> {
  let code: number | string | undefined;
  void p.exited.then((x) => {
    code = x;
  });
  await until(() => code !== undefined, timeoutMs, "the client to end", p);
  return code as number | string;
}

/** Sum of the samples of metric `name` whose labels include `label` (e.g. `worker_name="w1"`; "" for all). */
export function metric(m: Map<string, number>, name: string, label = ""): number {
  let s = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && k.includes(label)) s += v;
  return s;
}

/**
 * After a scenario: every job of `batches` completed with the clean run's bytes, each shard
 * was accepted exactly once, and the coordinator's invariant checks never fired.
 */
export function expectClean(c: BedCluster, batches: Array<{ proc: HostProc; jobs: JobSpec[] }>): Map<string, number> {
  for (const b of batches) {
    const evs = c.events(b.proc);
    expect(
      evs.filter((e) => e.ev === "fatal"),
      b.proc.stderr.slice(-2000),
    ).toEqual([]);
    expect(evs.some((e) => e.ev === "all-done")).toBe(true);
    expect(c.wrongResults(b.jobs)).toEqual([]);
  }
  const m = c.metrics();
  const all = batches.flatMap((b) => b.jobs);
  expect(metric(m, "dce_shards_completed_total")).toBe(shardsOf(all));
  expect(metric(m, "dce_jobs_finished_total", 'state="succeeded"')).toBe(all.length);
  expect(c.coordinator.stderr).not.toContain("INVARIANT VIOLATED");
  expect(c.coordinator.stderr).not.toContain('"msg":"job failed"');
  console.log(`panels read from peers: ${c.workers.map((w) => `${w.name} ${c.peerReads(w)}`).join(", ")}`);
  return m;
}
