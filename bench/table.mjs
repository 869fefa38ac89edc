// The table `pnpm bench` prints: every figure of the run's results (the same object that
// is written as JSON under bench/results/).
import { multiples } from "./bytes.mjs";
import { formatPhases } from "./trace.mjs";

function mib(bytes) {
  return bytes === undefined ? "?" : `${(bytes / 2 ** 20).toFixed(0)}`;
}

const ratio = (x) => (x === undefined ? "-" : `${x.toFixed(2)}x`);

/** The lines of the table for `results` (see bench/run.mjs for its shape). */
export function formatTable(results, sizes) {
  const lines = [];
  const { numpy, dask } = results;
  lines.push(`dce bench  node ${results.node}  ${results.cores} cores  ${results.startedAt}`);
  lines.push(`environment of the dce workers and Dask: ${envText(results.env)}`);
  if (numpy && !numpy.note) {
    lines.push(
      `NumPy, 2 cores (rows split over 2 threads x 1 BLAS thread; OPENBLAS_CORETYPE/L2_SIZE unset): ${sizes.map((n) => `n=${n} ${numpy[String(n)]?.toFixed(3)} s`).join("  ")}`,
    );
  }
  if (dask && !dask.note) {
    lines.push(
      `Dask distributed ${dask.versions.distributed} (${dask.python}, NumPy ${dask.versions.numpy}, ${dask.versions.blas?.join(", ")}),`,
    );
    lines.push("  LocalCluster of 2 worker processes x 1 thread (1 BLAS thread each), started before timing;");
    lines.push(
      `  NumPy in the client -> da.from_array -> (A @ B).compute() -> NumPy in the client; fastest chunking of ${Object.keys(dask.sizes[String(sizes[0])]?.chunkings ?? {}).join(", ")}:`,
    );
    lines.push(
      `  ${sizes.map((n) => `n=${n} ${dask.sizes[String(n)].seconds.toFixed(3)} s (${dask.sizes[String(n)].best})`).join("  ")}`,
    );
  }
  lines.push("");
  lines.push("path: default = local store on (same host) and verification on; rpc only = coordinator --local-store off;");
  lines.push("      no verify = coordinator --verify off.");
  lines.push(
    "what             path       n      kernel        workers  wall s   GFLOP/s  x NumPy  x Dask  coord RSS MiB  worker RSS MiB",
  );
  if (dask && !dask.note) {
    for (const n of sizes) {
      const s = dask.sizes[String(n)].seconds;
      const np = numpy?.[String(n)];
      lines.push(
        [
          "Dask distributed".padEnd(16),
          dask.sizes[String(n)].best.padEnd(10),
          String(n).padEnd(6),
          "numpy (BLAS)".padEnd(13),
          "2x1t".padEnd(8),
          s.toFixed(3).padStart(7),
          ((2 * n ** 3) / s / 1e9).toFixed(1).padStart(9),
          ratio(np ? s / np : undefined).padStart(8),
          "-".padStart(7),
        ].join(" "),
      );
    }
  }
  for (const r of results.rows) {
    if (r.kind !== "sdk" && r.kind !== "cli") continue;
    lines.push(
      [
        (r.kind === "sdk" ? "SDK" : "CLI dce submit").padEnd(16),
        (r.path ?? "default").padEnd(10),
        String(r.n).padEnd(6),
        r.kernel.padEnd(13),
        `${r.workers}x${r.threadsPerWorker ?? 1}t`.padEnd(8),
        r.seconds.toFixed(3).padStart(7),
        ((2 * r.n ** 3) / r.seconds / 1e9).toFixed(1).padStart(9),
        ratio(r.ratioToNumpy).padStart(8),
        ratio(r.ratioToDask).padStart(7),
        mib(r.rss.coordinator).padStart(14),
        r.rss.workers.map(mib).join(", ").padStart(15),
      ].join(" "),
    );
  }
  const withBytes = results.rows.filter((r) => r.kind === "sdk" && r.bytes);
  if (withBytes.length > 0) {
    lines.push("");
    lines.push("bytes per job (fastest run), as multiples of A+B+C: net = TCP sent/received (TLS records, from ss);");
    lines.push(
      "  file = read/written through read/write calls other than TCP (files, plus a little pipe traffic; /proc/PID/io);",
    );
    lines.push("  cpu = CPU time the process used during the job, every thread (/proc/PID/stat, 10 ms ticks)");
    for (const r of withBytes) {
      const parts = Object.entries(r.bytes).map(
        ([role, b]) =>
          `${role} net ${multiples(b.netSent, b.netReceived, r.matrixBytes)} file ${multiples(b.fileRead, b.fileWritten, r.matrixBytes)} cpu ${b.cpuMs === undefined ? "?" : `${b.cpuMs} ms`}`,
      );
      lines.push(
        `  ${r.path.padEnd(9)} n=${String(r.n).padEnd(5)} ${r.kernel} ${r.workers}w (A+B+C ${mib(r.matrixBytes)} MiB): ${parts.join(" | ")}`,
      );
    }
  }
  const traced = results.rows.filter((r) => r.kind === "sdk" && r.jobs);
  if (traced.length > 0) {
    lines.push("");
    for (const l of [
      "trace, per job, in ms (processes log at debug level for this): upload = submit called -> job created;",
      "  grant wait = created -> first lease; compute = first lease -> last result's report arrives (kernel = kernel",
      "  time summed over shards, checks = all checking time on the verifier's threads; both overlap compute);",
      "  verification = the last report's wait for its checks; assembly = last result accepted -> C sealed;",
      "  download = sealed -> C in the client.",
    ])
      lines.push(l);
    for (const r of traced) {
      r.jobs.forEach((j, i) => {
        lines.push(
          `  ${r.path.padEnd(9)} n=${String(r.n).padEnd(5)} ${r.kernel} ${r.workers}w job ${i + 1}: ${j.seconds.toFixed(3)} s = ${j.phases ? formatPhases(j.phases) : "?"}`,
        );
      });
    }
  }
  lines.push("");
  for (const r of results.rows) {
    if (r.kind === "kernel")
      lines.push(
        `kernel alone, one thread, n=1024: ${r.kernel.padEnd(16)} ${r.gflops ? `${r.gflops["1024"].toFixed(1)} GFLOP/s  (${r.fingerprint})` : `unavailable: ${r.unavailable}`}`,
      );
  }
  for (const r of results.rows) {
    if (r.kind === "tiny-shards")
      lines.push(
        `tiny shards: 1024x16 . 16x1024, tile 8 (${r.shards} shards), reference kernel: ${r.shardsPerSecond.toFixed(0)} shards/s  (coord RSS ${mib(r.rss.coordinator)} MiB)`,
      );
    if (r.kind === "latency")
      lines.push(
        `latency: 64x64 submit -> result, ${r.count} sequential jobs: p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms${daskLatency(dask)}`,
      );
  }
  for (const n of results.notes) lines.push(`note: ${n}`);
  return lines;
}

function daskLatency(dask) {
  const l = dask && !dask.note ? dask.latency : undefined;
  return l ? `   (Dask, ${l.count} jobs: p50 ${l.p50Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms)` : "";
}

function envText(env) {
  return ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"].map((k) => `${k}=${env?.[k] ?? "(unset)"}`).join(" ");
}
