// `pnpm demo`: an embedded TLS coordinator and two worker processes on loopback run a
// real random matrix multiplication, and the result is verified against an
// independent naive multiply. Exits non-zero if anything disagrees.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@dce/client-sdk";
import { addToken, generateDevCertificates, startCoordinator } from "@dce/coordinator";
import { randomMatrix } from "@dce/core/testing";
import { pino } from "pino";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const M = Number(process.env.DCE_DEMO_M ?? 384);
const K = Number(process.env.DCE_DEMO_K ?? 512);
const N = Number(process.env.DCE_DEMO_N ?? 448);
const TILE = Number(process.env.DCE_DEMO_TILE ?? 96);

function naive(a, b) {
  const c = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += a.data[i * a.cols + k] * b.data[k * b.cols + j];
      c[i * b.cols + j] = s;
    }
  return c;
}

const dir = mkdtempSync(join(tmpdir(), "dce-demo-"));
const workers = [];
let coordinator;
let exitCode = 1;
try {
  // What an operator does once (secure by default, as `coordinator init-certs`): a CA with
  // a server certificate and one certificate per worker (worker-1.pem, worker-2.pem), and a
  // bearer token for the client and one for the admin.
  const certs = await generateDevCertificates({ outDir: join(dir, "certs"), workers: 2 });
  const dataDir = join(dir, "data");
  const clientToken = await addToken(dataDir, "demo", "client");
  const adminToken = await addToken(dataDir, "demo-admin", "admin");
  coordinator = await startCoordinator({
    host: "127.0.0.1",
    port: 0,
    tlsDir: certs.dir,
    dataDir,
    logger: pino({ level: "warn" }, pino.destination(2)),
  });
  console.log(`coordinator listening on ${coordinator.url} (TLS + worker certificates + client tokens, CA ${certs.caCert})`);
  // The admin token of this throw-away cluster goes in the URL fragment, which the
  // browser never sends to the server; /metrics takes it as a bearer header.
  console.log(
    `dashboard: ${coordinator.url}/ui#token=${adminToken}   (DCE_DEMO_HOLD_MS=60000 keeps the cluster up after the job)`,
  );
  console.log(`metrics:   curl --cacert ${certs.caCert} -H "Authorization: Bearer ${adminToken}" ${coordinator.url}/metrics`);
  for (const [i, cert] of certs.workers.entries()) {
    // Each worker has its own certificate: its CN (worker-1, worker-2) is the identity its
    // leases are bound to, and the one its wrong results would count against.
    const name = `demo-w${i + 1}`;
    const w = spawn(
      process.execPath,
      [
        join(root, "packages/worker/bin/worker.js"),
        "--coordinator",
        coordinator.url,
        "--ca",
        certs.caCert,
        "--cert",
        cert.cert,
        "--key",
        cert.key,
        "--threads",
        "1",
        "--name",
        name,
      ],
      { stdio: ["ignore", "inherit", "pipe"] },
    );
    workers.push(w);
  }
  // Wait until both workers have registered, so the wall time below is the job's alone.
  await Promise.all(
    workers.map(
      (w) =>
        new Promise((res, rej) => {
          let log = "";
          const onData = (d) => {
            log += d;
            if (log.includes("worker registered")) {
              w.stderr.off("data", onData);
              w.stderr.resume();
              res();
            }
          };
          w.stderr.on("data", onData);
          w.on("exit", (code) => rej(new Error(`worker exited with ${code}: ${log}`)));
        }),
    ),
  );
  console.log("2 worker processes registered");

  const a = randomMatrix(M, K, 1);
  const b = randomMatrix(K, N, 2);
  const client = createClient({ baseUrl: coordinator.url, ca: readFileSync(certs.caCert, "utf8"), token: clientToken });
  const t0 = performance.now();
  const job = await client.submitMatMul(a, b, { tileSize: TILE, kernel: "reference" });
  let last = "";
  for await (const p of job.progress()) {
    const line = `  ${p.state} ${p.shardsDone}/${p.shardsTotal} shards`;
    if (line !== last) console.log(line);
    last = line;
  }
  const c = await job.result();
  const seconds = (performance.now() - t0) / 1000;
  const status = await job.status();

  const expected = naive(a, b);
  const same = Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength).equals(Buffer.from(expected.buffer));
  const gflops = (2 * M * N * K) / seconds / 1e9;
  console.log(`job ${job.id}: C = A(${M}x${K}) x B(${K}x${N}), ${status.shardsTotal} shards of ${TILE}x${TILE}, 2 workers`);
  console.log(`wall time ${seconds.toFixed(3)} s, ${gflops.toFixed(2)} GFLOP/s end to end (reference kernel)`);
  if (c.rows !== M || c.cols !== N || !same) {
    console.error("VERIFICATION FAILED: result differs from the independent naive multiply");
  } else {
    console.log("verified: byte-identical to an independent naive multiply");
    exitCode = 0;
    const holdMs = Number(process.env.DCE_DEMO_HOLD_MS ?? 0);
    if (holdMs > 0) {
      // Keep the cluster up so the dashboard and /metrics can be looked at.
      console.log(`holding the cluster for ${holdMs} ms (DCE_DEMO_HOLD_MS)`);
      await new Promise((r) => setTimeout(r, holdMs));
    }
  }
} catch (e) {
  console.error(`demo failed: ${e instanceof Error ? e.stack : String(e)}`);
} finally {
  for (const w of workers) w.kill("SIGTERM");
  await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r() : w.on("exit", r)))));
  await coordinator?.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
