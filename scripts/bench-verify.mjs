// Cost of checking results at the coordinator (Freivalds' test, docs/verification.md),
// measured on the Verifier itself with honest tiles: the one-off projection of B per job
// and the check of each tile, for a large-tile job and for the tiny-shard case.
//
//   node scripts/bench-verify.mjs            # n=4096 tile 1024, and 1024×16·16×1024 tile 8
//   DCE_BENCH_N=2048 DCE_BENCH_TILE=512 node scripts/bench-verify.mjs
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Verifier } from "@dce/coordinator";
import { planMatMul, tileBounds } from "@dce/core";
import { randomMatrix } from "@dce/core/testing";

const env = process.env;
const N = Number(env.DCE_BENCH_N ?? 4096);
const TILE = Number(env.DCE_BENCH_TILE ?? 1024);
const dir = mkdtempSync(join(tmpdir(), "dce-bench-verify-"));

/** An honest tile of A·B (ascending k), computed here for the benchmark only. */
function tile(a, b, k, cols, bd) {
  const m = bd.rowEnd - bd.rowStart;
  const n = bd.colEnd - bd.colStart;
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const row = c.subarray(i * n, (i + 1) * n);
    for (let l = 0; l < k; l++) {
      const av = a[(bd.rowStart + i) * k + l];
      const off = l * cols + bd.colStart;
      for (let j = 0; j < n; j++) row[j] += av * b[off + j];
    }
  }
  return new Uint8Array(c.buffer);
}

async function run(label, m, k, n, tileSize, shards, threads) {
  const a = randomMatrix(m, k, 1).data;
  const b = randomMatrix(k, n, 2).data;
  const aPath = join(dir, `a-${label}`);
  const bPath = join(dir, `b-${label}`);
  writeFileSync(aPath, new Uint8Array(a.buffer));
  writeFileSync(bPath, new Uint8Array(b.buffer));
  const plan = planMatMul({
    a: { rows: m, cols: k, blobId: "" },
    b: { rows: k, cols: n, blobId: "" },
    tileRows: tileSize,
    tileCols: tileSize,
    kernel: "reference",
  });
  const verifier = new Verifier({ threads });
  const job = { id: label, plan, aPath, bPath };
  const count = Math.min(shards, plan.shardCount);
  const tiles = [];
  for (let s = 0; s < count; s++) {
    const bd = tileBounds(plan, s);
    tiles.push({ bd, bytes: tile(a, b, k, n, bd) });
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const first = await verifier.check(job, tiles[0].bd, tiles[0].bytes);
  const prepareAndFirstMs = performance.now() - t0;
  const t1 = performance.now();
  const per = [];
  for (let s = 1; s < count; s++) {
    const v = await verifier.check(job, tiles[s].bd, tiles[s].bytes);
    if (!v.ok || !first.ok) throw new Error(`honest tile rejected: ${JSON.stringify(v)}`);
    per.push(v.ms);
  }
  const wallMs = performance.now() - t1;
  const cpu = process.cpuUsage(cpu0);
  await verifier.close();
  per.sort((x, y) => x - y);
  const median = per[Math.floor(per.length / 2)] ?? first.ms;
  console.log(
    `${label}: A ${m}x${k}, B ${k}x${n}, tile ${tileSize} (${plan.shardCount} shards), ${threads} thread(s): ` +
      `projection of B + first check ${prepareAndFirstMs.toFixed(1)} ms; ` +
      `per further check median ${median < 1 ? `${(median * 1000).toFixed(1)} µs` : `${median.toFixed(2)} ms`} ` +
      `(${count - 1} checks, ${((wallMs * 1000) / Math.max(1, count - 1)).toFixed(1)} µs wall each, ` +
      `process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms in all)`,
  );
}

try {
  await run("large", N, N, N, TILE, Number(env.DCE_BENCH_SHARDS ?? 4), 1);
  await run("tiny", 1024, 16, 1024, 8, 16384, 1);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
