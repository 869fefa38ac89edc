// Processes for the benchmark: a real TLS coordinator and worker processes on loopback.
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@dce/client-sdk";
import { addToken, generateDevCertificates } from "@dce/coordinator";
import { logCollector } from "./trace.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const BIN = {
  coordinator: join(root, "packages/coordinator/bin/coordinator.js"),
  worker: join(root, "packages/worker/bin/worker.js"),
  dce: join(root, "packages/client-sdk/bin/dce.js"),
};
let certs;
let dir;

/** Extra node options for the coordinator and workers (`DCE_BENCH_NODE_ARGS="--trace-gc"`; NODE_OPTIONS refuses some). */
function nodeArgs() {
  return (process.env.DCE_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
}

/**
 * Makes the dev CA and certificates under `workDir`, one for each of up to `maxWorkers`
 * worker processes; call once before {@link startCluster}.
 */
export async function prepare(workDir, maxWorkers = 16) {
  dir = workDir;
  certs = await generateDevCertificates({ outDir: join(dir, "certs"), workers: maxWorkers });
  return certs;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Peak resident set (VmHWM) of a live process, in bytes. */
export function peakRss(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function waitForLine(child, needle, what, timeoutMs = 30_000) {
  return new Promise((res, rej) => {
    let buf = "";
    const timer = setTimeout(() => rej(new Error(`${what}: no "${needle}" within ${timeoutMs} ms:\n${buf}`)), timeoutMs);
    const onData = (d) => {
      buf += d;
      if (buf.length > 1e6) buf = buf.slice(-1e5);
      if (buf.includes(needle)) {
        clearTimeout(timer);
        child.stderr.off("data", onData);
        child.stderr.resume();
        res();
      }
    };
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`${what} exited with ${code}:\n${buf}`));
    });
  });
}

/**
 * A coordinator process and `workers` worker processes offering `kernels`;
 * `coordinatorArgs` are extra coordinator flags (e.g. `--local-store off`). With `trace`,
 * every process logs at debug level and the lines `bench/trace.mjs` reads are kept.
 */
export async function startCluster({ workers, kernels, threads, coordinatorArgs = [], trace = false }) {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const dataDir = mkdtempSync(join(dir, "data-"));
  // Secure by default: each worker presents its own CA-signed certificate, the client a token.
  const token = await addToken(dataDir, "bench", "client");
  // /metrics is for operators: bench/trace.mjs reads it with a token of its own.
  const adminToken = await addToken(dataDir, "bench-admin", "admin");
  const coordinator = spawn(
    process.execPath,
    [
      ...(process.env.DCE_BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.DCE_BENCH_PROF] : []),
      ...nodeArgs(),
      BIN.coordinator,
      "--port",
      String(port),
      "--tls-dir",
      certs.dir,
      "--data-dir",
      dataDir,
      "--log-level",
      trace ? "debug" : (process.env.DCE_BENCH_LOGLEVEL ?? "warn"),
      "--log-format",
      "json",
      ...coordinatorArgs,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  coordinator.stderr.setEncoding("utf8");
  if (process.env.DCE_BENCH_LOGDIR)
    coordinator.stderr.pipe(createWriteStream(join(process.env.DCE_BENCH_LOGDIR, "coordinator.log")));
  let coordLog = "";
  const coordTrace = logCollector();
  const workerTraces = [];
  coordinator.stderr.on("data", (d) => {
    coordLog = (coordLog + d).slice(-20_000);
    if (trace) coordTrace.feed(d);
  });
  await waitUntilServing(url, coordinator);
  const procs = [];
  if (workers > certs.workers.length)
    throw new Error(`${workers} workers, but prepare() wrote ${certs.workers.length} certificates`);
  for (let i = 0; i < workers; i++) {
    const w = spawn(
      process.execPath,
      [
        ...(process.env.DCE_BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.DCE_BENCH_PROF] : []),
        ...nodeArgs(),
        BIN.worker,
        "--coordinator",
        url,
        "--ca",
        certs.caCert,
        "--cert",
        certs.workers[i].cert,
        "--key",
        certs.workers[i].key,
        "--threads",
        String(threads),
        "--kernels",
        kernels,
        "--name",
        `bench-w${i + 1}`,
        "--log-level",
        trace ? "debug" : (process.env.DCE_BENCH_LOGLEVEL ?? "info"),
        "--log-format",
        "json",
      ],
      { stdio: ["ignore", process.env.DCE_BENCH_LOGDIR ? "pipe" : "ignore", "pipe"] },
    );
    w.stderr.setEncoding("utf8");
    if (process.env.DCE_BENCH_LOGDIR) w.stdout.pipe(createWriteStream(join(process.env.DCE_BENCH_LOGDIR, `worker-${i + 1}.out`)));
    const collector = logCollector();
    workerTraces.push(collector);
    if (trace) w.stderr.on("data", (d) => collector.feed(d));
    if (process.env.DCE_BENCH_LOGDIR) w.stderr.pipe(createWriteStream(join(process.env.DCE_BENCH_LOGDIR, `worker-${i + 1}.log`)));
    procs.push(w);
  }
  await Promise.all(procs.map((w, i) => waitForLine(w, "worker registered", `worker ${i + 1}`)));
  const client = createClient({ baseUrl: url, ca: readFileSync(certs.caCert, "utf8"), token });
  return {
    url,
    token,
    adminToken,
    client,
    coordinator,
    workers: procs,
    coordLog: () => coordLog,
    /** The kept debug lines (see `trace`): the coordinator's and all workers'. */
    traceLines: {
      coordinator: coordTrace,
      workers: {
        get lines() {
          return workerTraces.flatMap((c) => c.lines);
        },
        clear: () => {
          for (const c of workerTraces) c.clear();
        },
      },
    },
    /** PIDs by role, for bench/bytes.mjs. */
    pids() {
      return { coordinator: coordinator.pid, ...Object.fromEntries(procs.map((w, i) => [`worker ${i + 1}`, w.pid])) };
    },
    rss() {
      return { coordinator: peakRss(coordinator.pid), workers: procs.map((w) => peakRss(w.pid)) };
    },
    async stop() {
      for (const p of [...procs, coordinator]) p.kill(process.env.DCE_BENCH_PROF ? "SIGINT" : "SIGKILL");
      await Promise.all(
        [...procs, coordinator].map(
          (p) => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", r))),
        ),
      );
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function waitUntilServing(url, child) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`coordinator exited with ${child.exitCode}`);
    try {
      execFileSync(
        "node",
        [
          "-e",
          `require("node:https").get("${url}/healthz",{ca:require("node:fs").readFileSync(${JSON.stringify(certs.caCert)})},r=>process.exit(r.statusCode===200?0:1)).on("error",()=>process.exit(1))`,
        ],
        { stdio: "ignore" },
      );
      return;
    } catch {
      if (Date.now() > deadline) throw new Error("coordinator did not start serving within 20 s");
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
