// The one-command development cluster: `coordinator dev` through its bin (a shell evals
// its exports and runs `dce submit` with them; SIGTERM stops every process it started;
// a second run on the same folder keeps the CA and the token), and the SDK's
// startLocalCluster (a client that computes C, and close() that leaves no process behind).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeNpy, type LocalCluster, type Matrix, parseNpy, startLocalCluster } from "@dce/client-sdk";
import { afterEach, describe, expect, it } from "vitest";
import { BIN, type Proc, randomMatrix, spawnNode, waitFor } from "../support/cluster.js";

const pids = new Set<number>();
const dirs: string[] = [];
const clusters: LocalCluster[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** PIDs of the processes whose parent is `pid` (Linux /proc). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-dev-test-"));
  dirs.push(dir);
  return dir;
}

/** Starts `coordinator dev` on a free port and waits for its three exports. */
async function startDev(dir: string): Promise<Proc> {
  const dev = spawnNode("coordinator dev", BIN.coordinator, ["dev", "--port", "0", "--workers", "2", "--dir", join(dir, "dev")]);
  if (dev.child.pid) pids.add(dev.child.pid);
  await waitFor(dev, (p) => p.stdout.includes("DCE_TOKEN="), 120_000, "the exports");
  for (const pid of childPids(dev.child.pid ?? -1)) pids.add(pid);
  return dev;
}

/** Runs `dce submit A.npy B.npy -o C.npy` in `dir` from a shell that evals the exports first. */
function submitWithExports(dir: string, exports: string): ReturnType<typeof spawnSync> {
  writeFileSync(join(dir, "dev.env"), exports);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ["DCE_COORDINATOR", "DCE_CA", "DCE_TOKEN"]) delete env[name];
  return spawnSync(
    "sh",
    ["-c", `eval "$(cat dev.env)" && exec "$0" "$1" submit A.npy B.npy -o C.npy`, process.execPath, BIN.dce],
    { cwd: dir, env, encoding: "utf8", timeout: 120_000 },
  );
}

/** Entry (i, j) of A·B summed in k order. */
function entry(a: Matrix, b: Matrix, i: number, j: number): number {
  let s = 0;
  for (let k = 0; k < a.cols; k++) s += (a.data[i * a.cols + k] ?? 0) * (b.data[k * b.cols + j] ?? 0);
  return s;
}

function expectProduct(a: Matrix, b: Matrix, c: Matrix): void {
  expect([c.rows, c.cols]).toEqual([a.rows, b.cols]);
  for (let i = 0; i < c.rows; i++) {
    for (let j = 0; j < c.cols; j++) expect(c.data[i * c.cols + j]).toBeCloseTo(entry(a, b, i, j), 9);
  }
}

afterEach(async () => {
  for (const c of clusters.splice(0)) await c.close().catch(() => {});
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  pids.clear();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("coordinator dev", () => {
  it("prints exports a shell evals to submit, stops every process on SIGTERM, and keeps its CA and token", async () => {
    const dir = tempDir();
    const a = randomMatrix(37, 23, 1);
    const b = randomMatrix(23, 19, 2);
    writeFileSync(join(dir, "A.npy"), encodeNpy(a));
    writeFileSync(join(dir, "B.npy"), encodeNpy(b));

    const dev = await startDev(dir);
    const lines = dev.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^export DCE_COORDINATOR=https:\/\/127\.0\.0\.1:\d+$/);
    expect(lines[1]).toBe(`export DCE_CA=${join(dir, "dev", "certs", "ca.pem")}`);
    expect(lines[2]).toMatch(/^export DCE_TOKEN=dce_[A-Za-z0-9_-]+$/);
    // The dashboard's URL goes to stderr, which may arrive a moment after stdout's exports.
    await waitFor(dev, (p) => p.stderr.includes("/ui#token="), 10_000, "the dashboard URL");
    const workers = childPids(dev.child.pid ?? -1);
    expect(workers).toHaveLength(2);

    const r = submitWithExports(dir, dev.stdout);
    expect(r.status, String(r.stderr)).toBe(0);
    expectProduct(a, b, parseNpy(readFileSync(join(dir, "C.npy"))));

    const ca = readFileSync(join(dir, "dev", "certs", "ca.pem"), "utf8");
    dev.child.kill("SIGTERM");
    expect(await dev.exited).toBe(0);
    for (const pid of workers) expect(alive(pid), `worker ${pid}`).toBe(false);

    // The same folder again: the CA stays (certificates issued from it stay valid), and the
    // printed token works; it is the same one, so shells that evaluated the first run keep working.
    const again = await startDev(dir);
    expect(readFileSync(join(dir, "dev", "certs", "ca.pem"), "utf8")).toBe(ca);
    expect(again.stdout.split("\n")[2]).toBe(lines[2]);
    rmSync(join(dir, "C.npy"));
    const r2 = submitWithExports(dir, again.stdout);
    expect(r2.status, String(r2.stderr)).toBe(0);
    expectProduct(a, b, parseNpy(readFileSync(join(dir, "C.npy"))));
    const workers2 = childPids(again.child.pid ?? -1);
    again.child.kill("SIGTERM");
    expect(await again.exited).toBe(0);
    for (const pid of workers2) expect(alive(pid), `worker ${pid}`).toBe(false);
  });

  it("restarts a worker that dies", async () => {
    const dev = await startDev(tempDir());
    const [first] = childPids(dev.child.pid ?? -1);
    expect(first).toBeDefined();
    process.kill(first ?? -1, "SIGKILL");
    await waitFor(dev, (p) => p.stderr.includes("worker exited unexpectedly; restarting it"), 30_000, "the restart");
    await waitFor(dev, () => childPids(dev.child.pid ?? -1).length === 2, 30_000, "two workers again");
    const workers = childPids(dev.child.pid ?? -1);
    for (const pid of workers) pids.add(pid);
    expect(workers).not.toContain(first);
    dev.child.kill("SIGTERM");
    expect(await dev.exited).toBe(0);
    for (const pid of workers) expect(alive(pid), `worker ${pid}`).toBe(false);
  });

  it("leaves no worker behind when it is killed without a chance to stop them", async () => {
    const dev = await startDev(tempDir());
    const workers = childPids(dev.child.pid ?? -1);
    expect(workers).toHaveLength(2);
    dev.child.kill("SIGKILL");
    await dev.exited;
    // Each worker's launcher watch sees its parent go and drains.
    const deadline = Date.now() + 20_000;
    while (workers.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const pid of workers) expect(alive(pid), `worker ${pid}`).toBe(false);
  });
});

describe("startLocalCluster", () => {
  it("gives a client that computes C, and close() stops the coordinator and its workers", async () => {
    const cluster = await startLocalCluster({ workers: 2, threads: 1 });
    clusters.push(cluster);
    pids.add(cluster.pid);
    const workers = childPids(cluster.pid);
    for (const pid of workers) pids.add(pid);
    expect(workers).toHaveLength(2);
    expect(cluster.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.ca).toContain("BEGIN CERTIFICATE");

    const a = randomMatrix(31, 17, 3);
    const b = randomMatrix(17, 29, 4);
    const job = await cluster.client.submitMatMul(a, b);
    expectProduct(a, b, await job.result());

    await cluster.close();
    for (const pid of [cluster.pid, ...workers]) expect(alive(pid), `process ${pid}`).toBe(false);
    expect(() => readdirSync(cluster.dir)).toThrow(/ENOENT/);
  });
});
