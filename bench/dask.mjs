// The Dask distributed column of `pnpm bench`: runs bench/dask_bench.py (a LocalCluster of
// 2 worker processes x 1 thread, NumPy arrays in the client) with the environment the dce
// workers get, and stops every process it started by PID, even on failure.
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const script = join(dirname(fileURLToPath(import.meta.url)), "dask_bench.py");

/** The first Python that can import `distributed` (Debian's python3-distributed lives in /usr/bin/python3). */
export function findDaskPython(candidates) {
  for (const py of candidates) {
    try {
      execFileSync(py, ["-c", "import distributed, dask.array"], { stdio: "ignore", timeout: 60_000 });
      return py;
    } catch {}
  }
  return undefined;
}

/** PIDs of every live descendant of `pid` (from /proc/PID/task/TID/children). */
export function descendants(pid) {
  const out = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift();
    let kids = [];
    try {
      for (const t of readdirSync(`/proc/${p}/task`)) {
        kids.push(...readFileSync(`/proc/${p}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number));
      }
    } catch {
      kids = [];
    }
    for (const k of kids) {
      out.push(k);
      queue.push(k);
    }
  }
  return out;
}

/** Kills `pid` if it is still one of ours (a Python process: a PID freed on exit may have been reused). */
function killPid(pid) {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("python")) return;
    process.kill(pid, "SIGKILL");
  } catch {}
}

/**
 * Dask's times per size (the fastest of `chunkings`) and its 64x64 latency, or
 * `{ note }` when Dask is missing or failed. `env` is the dce workers' environment.
 */
export async function daskTimes({ sizes, repeat, chunkings, latency, env, log }) {
  // DCE_BENCH_PYTHON names the one interpreter to use; otherwise the first of these with Dask.
  const candidates = process.env.DCE_BENCH_PYTHON ? [process.env.DCE_BENCH_PYTHON] : ["python3", "/usr/bin/python3"];
  const python = findDaskPython(candidates);
  if (!python)
    return {
      note: `Dask missing (no ${candidates.join(" / ")} imports distributed; Debian: apt-get install python3-distributed); Dask column skipped`,
    };
  const cfg = JSON.stringify({ sizes, repeat, chunkings, latency });
  // One BLAS thread per worker process, as each dce kernel thread; the rest of the environment as the workers get it.
  const childEnv = { ...env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
  const child = spawn(python, [script, cfg], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  const started = new Set();
  let out = "";
  let err = "";
  let result;
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    err = (err + d).slice(-20_000);
    for (const line of String(d)
      .split("\n")
      .filter((l) => l.startsWith("  dask:")))
      log?.(line);
  });
  child.stdout.on("data", (d) => {
    out += d;
    let i = out.indexOf("\n");
    while (i >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      i = out.indexOf("\n");
      if (!line.trim()) continue;
      const msg = JSON.parse(line);
      if (msg.pids) {
        for (const p of msg.pids) started.add(p);
        for (const p of descendants(child.pid)) started.add(p);
      }
      if (msg.result) result = msg.result;
    }
  });
  try {
    const code = await new Promise((res) => child.once("exit", (c, s) => res(c ?? s)));
    if (code !== 0 || !result)
      return { note: `Dask run failed (${python} exited ${code}): ${err.trim().split("\n").slice(-3).join(" | ")}` };
    return { python, ...result };
  } finally {
    // Whatever the script left behind (it closes its cluster itself on success).
    for (const p of [child.pid, ...started, ...descendants(child.pid)]) killPid(p);
  }
}
