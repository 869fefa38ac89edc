// `pnpm demo`: an embedded TLS coordinator and two worker processes on loopback run a
// real random matrix multiplication with the default (fastest) kernel, and the result
// is checked against an independent naive multiply: sampled entries within the rigorous
// rounding bound for any summation order, or, with DCE_DEMO_KERNEL=reference, every
// byte. Exits non-zero if anything disagrees.
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
const M = Number(process.env.DCE_DEMO_M ?? 1536);
const K = Number(process.env.DCE_DEMO_K ?? 1024);
const N = Number(process.env.DCE_DEMO_N ?? 1280);
/** Tile side; unset, the coordinator picks tiles from the shape. */
const TILE = process.env.DCE_DEMO_TILE === undefined ? undefined : Number(process.env.DCE_DEMO_TILE);
/** Kernel; unset, each worker runs the fastest kernel that passed its start-up self-check. */
const KERNEL = process.env.DCE_DEMO_KERNEL;
/** Entries of C recomputed naively when not every byte is compared. */
const SAMPLES = 4096;
const U = 2 ** -53;

/**
 * Recomputes entries of C = A·B naively, in k order, and checks each against the engine's.
 * `exact`: every entry, byte for byte (the reference kernel sums in the same order).
 * Otherwise a seeded sample of entries, each within the bound any summation order and
 * FMA use must meet: |ĉ − c| ≤ γ_k · Σ|a||b|, γ_k = k·u / (1 − k·u), doubled to cover
 * the naive sum's own rounding.
 * @returns the number of entries checked and the largest error seen as a share of its bound.
 */
function check(a, b, c, exact) {
  const k = a.cols;
  const gamma = (k * U) / (1 - k * U);
  let worst = 0;
  let x = 0x9e3779b9;
  const total = exact ? a.rows * b.cols : Math.min(SAMPLES, a.rows * b.cols);
  for (let t = 0; t < total; t++) {
    let i;
    let j;
    if (exact) {
      i = Math.floor(t / b.cols);
      j = t % b.cols;
    } else {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      i = (x >>> 0) % a.rows;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      j = (x >>> 0) % b.cols;
    }
    let s = 0;
    let abs = 0;
    for (let p = 0; p < k; p++) {
      const prod = a.data[i * k + p] * b.data[p * b.cols + j];
      s += prod;
      abs += Math.abs(prod);
    }
    const got = c.data[i * b.cols + j];
    if (exact) {
      if (!Object.is(got, s)) return { checked: t, worst: Number.POSITIVE_INFINITY };
      continue;
    }
    const bound = 2 * gamma * abs;
    const share = bound === 0 ? (got === s ? 0 : Number.POSITIVE_INFINITY) : Math.abs(got - s) / bound;
    if (!(share <= 1)) return { checked: t, worst: Number.POSITIVE_INFINITY };
    worst = Math.max(worst, share);
  }
  return { checked: total, worst };
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
  const job = await client.submitMatMul(a, b, {
    ...(TILE === undefined ? {} : { tileSize: TILE }),
    ...(KERNEL === undefined ? {} : { kernel: KERNEL }),
  });
  let last = "";
  for await (const p of job.progress()) {
    const line = `  ${p.state} ${p.shardsDone}/${p.shardsTotal} shards`;
    if (line !== last) console.log(line);
    last = line;
  }
  const c = await job.result();
  const seconds = (performance.now() - t0) / 1000;
  const status = await job.status();

  const gflops = (2 * M * N * K) / seconds / 1e9;
  const kernel = status.kernel.split("/")[0];
  console.log(
    `job ${job.id}: C = A(${M}x${K}) x B(${K}x${N}), ${status.shardsTotal} shards of ${status.tileRows}x${status.tileCols}, 2 workers x 1 thread`,
  );
  console.log(
    `wall time ${seconds.toFixed(3)} s, ${gflops.toFixed(2)} GFLOP/s end to end (${kernel} kernel; every tile verified by the coordinator)`,
  );
  const exact = kernel === "reference";
  const { checked, worst } = c.rows === M && c.cols === N ? check(a, b, c, exact) : { checked: 0, worst: Infinity };
  if (!Number.isFinite(worst)) {
    console.error("VERIFICATION FAILED: result differs from the independent naive multiply");
  } else {
    console.log(
      exact
        ? `checked: byte-identical to an independent naive multiply (${checked} entries)`
        : `checked: ${checked} sampled entries against an independent naive multiply, all within the rounding bound (largest error ${(worst * 100).toFixed(3)}% of it)`,
    );
    // Byte-identical whatever the number of workers: stop one, run the same product again
    // on the other alone with the same kernel, and compare every byte.
    const second = workers[1];
    second.kill("SIGTERM");
    await new Promise((r) => (second.exitCode !== null ? r() : second.on("exit", r)));
    const again = await client.submitMatMul(a, b, {
      kernel,
      ...(TILE === undefined ? {} : { tileSize: TILE }),
      idempotencyKey: `${job.id}-one-worker`,
    });
    const c1 = await again.result();
    const sameBytes = Buffer.from(c1.data.buffer, c1.data.byteOffset, c1.data.byteLength).equals(
      Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength),
    );
    if (!sameBytes) {
      console.error("VERIFICATION FAILED: the same product on 1 worker differs from the one on 2 workers");
    } else {
      console.log(`checked: the same product on 1 worker (job ${again.id}) is byte-identical to the one on 2 workers`);
      exitCode = 0;
    }
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
