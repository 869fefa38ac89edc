// `pnpm bench:testbed`: dce on the multi-host test bed (docs/testbed.md), root only. For each
// worker count p it brings up hosts c (coordinator), w1..wp (workers, --local-store off) and
// cl (the SDK) on links of --rate, runs --repeat jobs of n×n float64 one after another (fresh
// bytes each, so no upload is skipped), and reports per job: the wall time seen by the client
// (submit to C in memory), the bytes on the coordinator's link in both directions from its
// veth counters as a multiple of (A+B+C), each worker link's bytes, and the network lower
// bound (the busiest link's bytes over its bandwidth). Then, on a fresh bed of the same
// shape, Dask distributed the same way: `dask-scheduler` on c, one `dask-worker` (threads:
// one per core, as a dce worker's default) on each worker host, and the client
// (bench/dask_testbed.py, NumPy arrays in, C as a NumPy array out) on cl, with the same
// OpenBLAS environment as the dce workers. Prints a table, writes JSON under bench/results/.
// Every bed is removed in `finally`, and every process in it is killed by PID.
//
//   node bench/testbed.mjs [--sizes 2048] [--workers 1,2,4] [--repeat 3] [--rate 1gbit] [--tile 512]
//                          [--dask-chunkings 2x,4x] [--skip dask]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomMatrix } from "@dce/core/testing";
import { parseOptions } from "./usage.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SCRIPT = join(root, "scripts/testbed.sh");
const BIN = {
  coordinator: join(root, "packages/coordinator/bin/coordinator.js"),
  worker: join(root, "packages/worker/bin/worker.js"),
};
const DRIVER = join(root, "test/multihost/client-driver.mjs");
const DASK_CLIENT = join(root, "bench/dask_testbed.py");
const opts = parseOptions(import.meta.url, {
  sizes: { type: "string", default: "2048" },
  workers: { type: "string", default: "1,2,4" },
  repeat: { type: "string", default: "3" },
  rate: { type: "string", default: "1gbit" },
  tile: { type: "string", default: "512" },
  "dask-chunkings": { type: "string", default: "2x,4x" },
  skip: { type: "string", default: "" },
});
const sizes = opts.sizes.split(",").map(Number);
const workerCounts = opts.workers.split(",").map(Number);
const repeat = Number(opts.repeat);
const rateBitsPerSecond = parseRate(opts.rate);
const log = (s) => process.stderr.write(`${s}\n`);
const sh = (args) => execFileSync(SCRIPT, args, { encoding: "utf8", timeout: 30_000 });
const coord = (args) => execFileSync(process.execPath, [BIN.coordinator, ...args], { encoding: "utf8", timeout: 30_000 }).trim();

function parseRate(r) {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(r);
  if (!m) throw new Error(`--rate is tc's spelling, e.g. 1gbit or 100mbit, got ${r}`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9, undefined: 1 }[m[2]?.toLowerCase()];
}

/** A process (node unless `program` says otherwise) in a bed host, in its own process group. */
function inHost(id, host, args, { program = process.execPath, env = process.env } = {}) {
  const child = spawn("ip", ["netns", "exec", `dcetb-${id}-${host}`, program, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env,
  });
  const p = { child, out: "", err: "", exited: new Promise((r) => child.on("exit", (code, sig) => r(code ?? sig))) };
  child.stdout.on("data", (d) => {
    p.out += d;
  });
  child.stderr.on("data", (d) => {
    p.err += d;
  });
  p.kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
    await p.exited;
  };
  return p;
}

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function counters(id, host) {
  const [rx, tx] = sh(["counters", id, host]).trim().split(" ").map(Number);
  return { rx, tx };
}

/** Checks 64 entries of C against dot products. */
function spotCheck(a, b, cBytes, n) {
  const c = new Float64Array(cBytes.buffer, cBytes.byteOffset, n * n);
  let x = 12345;
  for (let t = 0; t < 64; t++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const i = x % n;
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % n;
    let s = 0;
    let mag = 0;
    for (let p = 0; p < n; p++) {
      s += a.data[i * n + p] * b.data[p * n + j];
      mag += Math.abs(a.data[i * n + p] * b.data[p * n + j]);
    }
    if (Math.abs(c[i * n + j] - s) > 1e-12 * Math.max(1, mag)) throw new Error(`C[${i},${j}] = ${c[i * n + j]}, expected ${s}`);
  }
}

/**
 * Brings up a bed of hosts c, w1..wp and cl on links of --rate, runs `body` with it, and
 * always kills every process started in it (by PID, then every process left in its
 * namespaces) and removes it.
 */
async function withBed(p, body) {
  const id = String(process.pid);
  const workers = Array.from({ length: p }, (_, i) => `w${i + 1}`);
  sh(["down", id]);
  const addr = Object.fromEntries(
    sh(["up", "--id", id, "--rate", opts.rate, "c", ...workers, "cl"])
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([h, , ip]) => [h, ip]),
  );
  const dir = mkdtempSync(join(tmpdir(), "dce-bench-bed-"));
  const procs = [];
  try {
    await body({ id, workers, addr, dir, procs });
  } finally {
    await Promise.all(procs.map((x) => x.kill()));
    sh(["down", id]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `job` (which resolves to the wall seconds) and reads every host's link counters
 * around it: the bytes on each link (both directions) as a multiple of (A+B+C), and the
 * network lower bound, the busiest direction of any link over the link's rate.
 */
async function measured(bed, n, job) {
  const abc = 3 * n * n * 8;
  const hosts = ["c", ...bed.workers];
  const before = Object.fromEntries(hosts.map((h) => [h, counters(bed.id, h)]));
  const wallSeconds = await job();
  const delta = Object.fromEntries(
    hosts.map((h) => {
      const x = counters(bed.id, h);
      return [h, { rx: x.rx - before[h].rx, tx: x.tx - before[h].tx }];
    }),
  );
  const busiest = Math.max(...hosts.flatMap((h) => [delta[h].rx, delta[h].tx]));
  const bound = (busiest * 8) / rateBitsPerSecond;
  return {
    wallSeconds,
    coordinatorLinkBytes: delta.c.rx + delta.c.tx,
    coordinatorLinkPerABC: (delta.c.rx + delta.c.tx) / abc,
    workerLinkPerABC: bed.workers.map((w) => (delta[w].rx + delta[w].tx) / abc),
    networkBoundSeconds: bound,
    ratioToBound: wallSeconds / bound,
  };
}

async function runDce(p, rows) {
  await withBed(p, async (bed) => {
    const { id, workers, addr, dir, procs } = bed;
    const tls = join(dir, "certs");
    const data = join(dir, "data");
    const out = join(dir, "out");
    mkdirSync(out);
    coord(["init-certs", "--out", tls, "--workers", String(p), "--hosts", addr.c]);
    const token = coord(["tokens", "add", "bench", "--data-dir", data]);
    const url = `https://${addr.c}:7443`;
    const c = inHost(id, "c", [
      ...[BIN.coordinator, "--host", addr.c, "--port", "7443", "--tls-dir", tls, "--data-dir", data, "--local-store", "off"],
    ]);
    procs.push(c);
    await until(() => /listening on/.test(c.out), 20_000, "the coordinator");
    for (const [i, w] of workers.entries()) {
      const cert = ["--cert", join(tls, `worker-${i + 1}.pem`), "--key", join(tls, `worker-${i + 1}-key.pem`)];
      const wp = inHost(id, w, [
        BIN.worker,
        "--coordinator",
        url,
        "--ca",
        join(tls, "ca.pem"),
        ...cert,
        "--name",
        w,
        "--local-store",
        "off",
        // Its panel server: peers read the panels it holds instead of the coordinator.
        "--peer-listen",
        `${addr[w]}:7071`,
      ]);
      procs.push(wp);
      await until(() => wp.err.includes("worker registered"), 20_000, `${w} to register`);
    }
    for (const n of sizes) {
      for (let r = 0; r < repeat; r++) {
        const job = { key: `bench-${n}-${r}`, m: n, k: n, n, seed: n * 100 + 2 * r, tileSize: Number(opts.tile), kernel: "auto" };
        const m = await measured(bed, n, async () => {
          const cl = inHost(id, "cl", [
            DRIVER,
            JSON.stringify({ baseUrl: url, caPath: join(tls, "ca.pem"), token, out, jobs: [job] }),
          ]);
          procs.push(cl);
          if ((await cl.exited) !== 0) throw new Error(`client failed: ${cl.out}\n${cl.err}`);
          const ev = cl.out
            .split("\n")
            .filter((l) => l.startsWith("{"))
            .map((l) => JSON.parse(l));
          return (ev.find((e) => e.ev === "done").t - ev.find((e) => e.ev === "uploading").t) / 1000;
        });
        spotCheck(randomMatrix(n, n, job.seed), randomMatrix(n, n, job.seed + 1), readFileSync(join(out, `${job.key}.bin`)), n);
        const row = { engine: "dce", n, workers: p, repetition: r + 1, ...m };
        rows.push(row);
        log(JSON.stringify(row));
      }
    }
  });
}

/** The first Python here that imports Dask distributed, or undefined. */
function daskPython() {
  for (const py of process.env.DCE_BENCH_PYTHON ? [process.env.DCE_BENCH_PYTHON] : ["python3", "/usr/bin/python3"]) {
    try {
      execFileSync(py, ["-c", "import distributed, dask.array"], { stdio: "ignore", timeout: 60_000 });
      return py;
    } catch {}
  }
  return undefined;
}

async function runDask(p, rows, python) {
  // One BLAS thread per task, as each dce kernel thread; the OpenBLAS core type as the dce workers get it.
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
  await withBed(p, async (bed) => {
    const { id, workers, addr, procs } = bed;
    const scheduler = `tcp://${addr.c}:8786`;
    const s = inHost(id, "c", ["-m", "distributed.cli.dask_scheduler", "--host", addr.c, "--port", "8786", "--no-dashboard"], {
      program: python,
      env,
    });
    procs.push(s);
    await until(() => /Scheduler at/.test(s.err), 60_000, "the Dask scheduler");
    for (const w of workers) {
      const wp = inHost(
        id,
        w,
        [
          ...["-m", "distributed.cli.dask_worker", scheduler, "--host", addr[w], "--nworkers", "1"],
          ...["--nthreads", String(cpus().length), "--no-nanny", "--no-dashboard", "--memory-limit", "0"],
        ],
        { program: python, env },
      );
      procs.push(wp);
      await until(() => /Registered to/.test(wp.err), 60_000, `Dask worker ${w} to register`);
    }
    for (const n of sizes) {
      for (const chunking of opts["dask-chunkings"].split(",")) {
        for (let r = 0; r < repeat; r++) {
          const seed = n * 100 + 2 * r;
          let seconds;
          const m = await measured(bed, n, async () => {
            const cl = inHost(id, "cl", [DASK_CLIENT, JSON.stringify({ scheduler, workers: p, n, seed, chunking })], {
              program: python,
              env,
            });
            procs.push(cl);
            if ((await cl.exited) !== 0) throw new Error(`Dask client failed: ${cl.out}\n${cl.err}`);
            seconds = JSON.parse(cl.out.trim().split("\n").at(-1)).seconds;
            return seconds;
          });
          const row = { engine: "dask", chunking, n, workers: p, repetition: r + 1, ...m };
          rows.push(row);
          log(JSON.stringify(row));
        }
      }
    }
  });
}

const rows = [];
const notes = [];
const python = opts.skip.split(",").includes("dask") ? undefined : daskPython();
if (opts.skip.split(",").includes("dask")) notes.push("Dask skipped (--skip dask)");
else if (python === undefined)
  notes.push(
    "Dask distributed is not installed here (python3 -c 'import distributed' fails; Debian: apt-get install python3-distributed): no Dask column",
  );
else
  notes.push(
    "Dask: bytes are counted over the whole client process, which includes its connection and a 256x256 warm-up product (under 0.5% of A+B+C at n=2048)",
  );
for (const p of workerCounts) {
  await runDce(p, rows);
  if (python !== undefined) await runDask(p, rows, python);
}
const best = (engine, n, p) => {
  const rs = rows.filter((r) => r.engine === engine && r.n === n && r.workers === p);
  return rs.length === 0 ? undefined : rs.reduce((a, b) => (b.wallSeconds < a.wallSeconds ? b : a));
};
const f2 = (x, w) => x.toFixed(2).padStart(w);
console.log(
  `the test bed, ${opts.rate} links, best of ${repeat} (wall = submit to C in memory in the client, bytes both directions)`,
);
console.log("engine       n     p  wall s  coord link ×(A+B+C)  worker links ×(A+B+C)      net bound s  wall/bound  dce/Dask");
for (const n of sizes) {
  for (const p of workerCounts) {
    const d = best("dce", n, p);
    const k = best("dask", n, p);
    for (const [name, r] of [
      ["dce", d],
      [k === undefined ? "" : `dask ${k.chunking}`, k],
    ]) {
      if (r === undefined) continue;
      const vs = name === "dce" && k !== undefined ? f2(d.wallSeconds / k.wallSeconds, 8) : "";
      console.log(
        `${name.padEnd(12)} ${String(n).padEnd(5)} ${String(p).padEnd(2)} ${f2(r.wallSeconds, 6)}  ${f2(r.coordinatorLinkPerABC, 19)}  ${r.workerLinkPerABC
          .map((x) => x.toFixed(2))
          .join(" ")
          .padEnd(25)}  ${f2(r.networkBoundSeconds, 11)}  ${f2(r.ratioToBound, 10)}  ${vs}`,
      );
    }
  }
}
for (const note of notes) console.log(`note: ${note}`);
mkdirSync(join(root, "bench/results"), { recursive: true });
const file = join(root, "bench/results", `testbed-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ rate: opts.rate, repeat, rows, notes }, null, 2));
console.log(`written ${file}`);
