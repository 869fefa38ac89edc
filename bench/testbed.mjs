// `pnpm bench:testbed`: dce on the multi-host test bed (docs/testbed.md), root only. For each
// worker count p it brings up hosts c (coordinator), w1..wp (workers, --local-store off) and
// cl (the SDK) on links of --rate, runs --repeat jobs of n×n float64 one after another (fresh
// bytes each, so no upload is skipped), and reports per job: the wall time seen by the client
// (submit to C in memory), the bytes on the coordinator's link in both directions from its
// veth counters as a multiple of (A+B+C), each worker link's bytes, and the network lower
// bound (the busiest link's bytes over its bandwidth). Prints a table, writes JSON under
// bench/results/. Every bed is removed in `finally`.
//
//   node bench/testbed.mjs [--sizes 2048] [--workers 1,2,4] [--repeat 3] [--rate 1gbit] [--tile 512]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { randomMatrix } from "@dce/core/testing";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SCRIPT = join(root, "scripts/testbed.sh");
const BIN = {
  coordinator: join(root, "packages/coordinator/bin/coordinator.js"),
  worker: join(root, "packages/worker/bin/worker.js"),
};
const DRIVER = join(root, "test/multihost/client-driver.mjs");
const { values: opts } = parseArgs({
  options: {
    sizes: { type: "string", default: "2048" },
    workers: { type: "string", default: "1,2,4" },
    repeat: { type: "string", default: "3" },
    rate: { type: "string", default: "1gbit" },
    tile: { type: "string", default: "512" },
  },
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

/** A process in a bed host, in its own process group. */
function inHost(id, host, args) {
  const child = spawn("ip", ["netns", "exec", `dcetb-${id}-${host}`, process.execPath, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
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

async function runBed(p, rows) {
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
      const abc = 3 * n * n * 8;
      for (let r = 0; r < repeat; r++) {
        const job = { key: `bench-${n}-${r}`, m: n, k: n, n, seed: n * 100 + 2 * r, tileSize: Number(opts.tile), kernel: "auto" };
        const hosts = ["c", ...workers];
        const before = Object.fromEntries(hosts.map((h) => [h, counters(id, h)]));
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
        const wall = (ev.find((e) => e.ev === "done").t - ev.find((e) => e.ev === "uploading").t) / 1000;
        const bytes = Object.fromEntries(
          hosts.map((h) => {
            const x = counters(id, h);
            return [h, x.rx - before[h].rx + x.tx - before[h].tx];
          }),
        );
        spotCheck(randomMatrix(n, n, job.seed), randomMatrix(n, n, job.seed + 1), readFileSync(join(out, `${job.key}.bin`)), n);
        // Each direction of a link carries rate bits/s: the busiest direction sets the bound.
        const busiest = Math.max(
          ...hosts.flatMap((h) => {
            const x = counters(id, h);
            return [x.rx - before[h].rx, x.tx - before[h].tx];
          }),
        );
        const bound = (busiest * 8) / rateBitsPerSecond;
        const row = {
          n,
          workers: p,
          repetition: r + 1,
          wallSeconds: wall,
          coordinatorLinkBytes: bytes.c,
          coordinatorLinkPerABC: bytes.c / abc,
          workerLinkPerABC: workers.map((w) => bytes[w] / abc),
          networkBoundSeconds: bound,
          ratioToBound: wall / bound,
        };
        rows.push(row);
        log(JSON.stringify(row));
      }
    }
  } finally {
    await Promise.all(procs.map((x) => x.kill()));
    sh(["down", id]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
const notes = [];
try {
  execFileSync("python3", ["-c", "import distributed"], { stdio: "ignore" });
  notes.push("Dask distributed is installed but not yet run by this benchmark");
} catch {
  notes.push("Dask distributed is not installed here (python3 -c 'import distributed' fails): no Dask column");
}
for (const p of workerCounts) await runBed(p, rows);
const best = (n, p) => {
  const rs = rows.filter((r) => r.n === n && r.workers === p);
  return rs.reduce((a, b) => (b.wallSeconds < a.wallSeconds ? b : a));
};
console.log(`dce on the test bed, ${opts.rate} links, best of ${repeat} (wall = submit to C in memory, bytes both directions)`);
console.log("n     p  wall s  coord link ×(A+B+C)  worker links ×(A+B+C)      net bound s  wall/bound");
for (const n of sizes) {
  for (const p of workerCounts) {
    const r = best(n, p);
    console.log(
      `${String(n).padEnd(5)} ${String(p).padEnd(2)} ${r.wallSeconds.toFixed(2).padStart(6)}  ${r.coordinatorLinkPerABC.toFixed(2).padStart(19)}  ${r.workerLinkPerABC
        .map((x) => x.toFixed(2))
        .join(" ")
        .padEnd(25)}  ${r.networkBoundSeconds.toFixed(2).padStart(11)}  ${r.ratioToBound.toFixed(2).padStart(10)}`,
    );
  }
}
for (const note of notes) console.log(`note: ${note}`);
mkdirSync(join(root, "bench/results"), { recursive: true });
const file = join(root, "bench/results", `testbed-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ rate: opts.rate, repeat, rows, notes }, null, 2));
console.log(`written ${file}`);
