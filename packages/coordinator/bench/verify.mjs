// Micro-benchmark (not a test): the CPU the coordinator spends checking one job's results
// (Freivalds' test, docs/verification.md), on one thread, with the default tiling of each
// size, through the real Verifier reading A and B from files, all tiles honest.
//
//   pnpm --filter @dce/coordinator build && node packages/coordinator/bench/verify.mjs [--sizes 1024,2048,4096] [--runs 5]
//       [--coordinator DIST/index.js] [--json]
//
// Per size and run it prints the job's total CPU (process.cpuUsage: the Verifier runs
// inline, on this one thread) and wall time, and, when the coordinator given has the band
// pass (dist/verify/work.js with runBand), the split: projection of B (once per job), A pass
// (once per row band, summed), Ĉ pass and verdict (per tile, summed). `--coordinator` points
// at another build's dist/index.js, e.g. one of main, for a before/after comparison: an older
// build gets only the total, the first check (projection of B + its tile) and the later ones.
//
// Honest tiles come from the worker's fastest kernel (set OPENBLAS_CORETYPE=Haswell
// OPENBLAS_L2_SIZE=512 as the workers have them). Min/median/max over the runs.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1024,2048,4096" },
    runs: { type: "string", default: "5" },
    coordinator: { type: "string", default: join(here, "../dist/index.js") },
    json: { type: "boolean", default: false },
  },
});
const coordinatorUrl = pathToFileURL(values.coordinator).href;
const { Verifier } = await import(coordinatorUrl);
const work = await import(new URL("verify/work.js", coordinatorUrl).href).catch(() => undefined);
const core = await import("@dce/core");
const { autoTile, DEFAULT_SPEC_LIMITS, planMatMul, tileBounds, probesFromWords } = core;
const { randomMatrix } = await import("@dce/core/testing");
const worker = await import(pathToFileURL(join(here, "../../worker/dist/index.js")).href);

function fastestKernel() {
  for (const name of ["native-avx512", "native-blas", "wasm-simd", "reference"]) {
    try {
      return worker.createKernel(name);
    } catch {}
  }
  throw new Error("no worker kernel available");
}

const cpuMs = (since) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const fmt = (st) => `${st.min.toFixed(1)}/${st.median.toFixed(1)}/${st.max.toFixed(1)}`;

const dir = mkdtempSync(join(tmpdir(), "dce-bench-verify-"));
const kernel = fastestKernel();
const runs = Number(values.runs);
try {
  if (!values.json) console.log(`node ${process.version}; tiles from ${kernel.name}; ms min/median/max over ${runs} runs`);
  for (const n of values.sizes.split(",").map(Number)) {
    const a = randomMatrix(n, n, 1).data;
    const b = randomMatrix(n, n, 2).data;
    const aPath = join(dir, `a-${n}`);
    const bPath = join(dir, `b-${n}`);
    writeFileSync(aPath, new Uint8Array(a.buffer));
    writeFileSync(bPath, new Uint8Array(b.buffer));
    const { tileRows, tileCols } = autoTile(n, n, n, DEFAULT_SPEC_LIMITS.maxTileBytes);
    const desc = { rows: n, cols: n, blobId: "" };
    const plan = planMatMul({ a: desc, b: desc, tileRows, tileCols, kernel: "reference" });
    const c = new Float64Array(n * n);
    kernel.gemm(n, n, n, a, b, c);
    const tiles = [];
    for (let s = 0; s < plan.shardCount; s++) {
      const bd = tileBounds(plan, s);
      const w = bd.colEnd - bd.colStart;
      const t = new Float64Array((bd.rowEnd - bd.rowStart) * w);
      for (let i = bd.rowStart; i < bd.rowEnd; i++)
        t.set(c.subarray(i * n + bd.colStart, i * n + bd.colEnd), (i - bd.rowStart) * w);
      tiles.push({ bd, bytes: new Uint8Array(t.buffer) });
    }
    const total = [];
    const wall = [];
    const first = [];
    const later = [];
    const split = { project: [], band: [], tile: [] };
    for (let r = 0; r < runs + 1; r++) {
      const v = new Verifier({ threads: 0 });
      const job = { id: `n${n}-${r}`, plan, aPath, bPath };
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      let firstMs = 0;
      for (const [s, t] of tiles.entries()) {
        const verdict = await v.check(job, t.bd, t.bytes);
        if (!verdict.ok) throw new Error(`honest tile ${s} rejected: ${verdict.reason}`);
        if (s === 0) firstMs = cpuMs(c0);
      }
      const jobCpu = cpuMs(c0);
      const jobWall = performance.now() - t0;
      await v.close();
      if (r === 0) continue; // warm-up: compile and tier up
      total.push(jobCpu);
      wall.push(jobWall);
      first.push(firstMs);
      later.push((jobCpu - firstMs) / Math.max(1, tiles.length - 1));
      if (work?.runBand) split.project.push(...splitRun(work, plan, aPath, bPath, tiles, split));
    }
    const line = {
      n,
      tile: `${tileRows}x${tileCols}`,
      shards: plan.shardCount,
      jobCpuMs: stats(total),
      jobWallMs: stats(wall),
      firstCheckCpuMs: stats(first),
      laterCheckCpuMs: stats(later),
      ...(split.tile.length > 0
        ? { projectMs: stats(split.project), bandPassesMs: stats(split.band), tilePassesMs: stats(split.tile) }
        : {}),
    };
    if (values.json) console.log(JSON.stringify(line));
    else {
      console.log(
        `n=${n} tile ${line.tile} (${line.shards} shards): job CPU ${fmt(line.jobCpuMs)} ms (wall ${fmt(line.jobWallMs)}); ` +
          `first check ${fmt(line.firstCheckCpuMs)}, each later one ${fmt(line.laterCheckCpuMs)}`,
      );
      if (line.projectMs) {
        console.log(
          `  split: projection of B ${fmt(line.projectMs)}; A passes (all bands) ${fmt(line.bandPassesMs)}; ` +
            `Ĉ passes + verdicts (all tiles) ${fmt(line.tilePassesMs)}`,
        );
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** One job's work, piece by piece through the verifier's own work functions, timed on this thread. */
function splitRun(w, plan, aPath, bPath, tiles, split) {
  const { PANEL_WIDTH, FREIVALDS_ROUNDS, probePanel } = core;
  const words = Uint32Array.from({ length: FREIVALDS_ROUNDS * plan.cols }, (_, i) => (i * 2654435761) >>> 0);
  const probes = probePanel(probesFromWords(words, FREIVALDS_ROUNDS, plan.cols), plan.cols);
  const wv = new Float64Array(2 * Math.ceil(plan.colTiles / 2) * plan.inner * PANEL_WIDTH);
  let c0 = process.cpuUsage();
  w.runProject({ kind: "project", bPath, k: plan.inner, cols: plan.cols, tileCols: plan.tileCols, probes, w: wv });
  const projectMs = cpuMs(c0);
  let bandMs = 0;
  let tileMs = 0;
  const bands = new Map();
  for (const t of tiles) {
    const { bd } = t;
    let sums = bands.get(bd.rowStart);
    if (!sums) {
      const m = bd.rowEnd - bd.rowStart;
      sums = { y: new Float64Array(m * 2 * Math.ceil(plan.colTiles / 2) * PANEL_WIDTH), aAbs: new Float64Array(m) };
      c0 = process.cpuUsage();
      w.runBand({ kind: "band", aPath, k: plan.inner, blocks: plan.colTiles, ...bd, w: wv, y: sums.y, aAbs: sums.aAbs });
      bandMs += cpuMs(c0);
      bands.set(bd.rowStart, sums);
    }
    c0 = process.cpuUsage();
    const r = w.runCheck({
      kind: "check",
      k: plan.inner,
      tileCols: plan.tileCols,
      blocks: plan.colTiles,
      ...bd,
      tile: t.bytes,
      probes,
      y: sums.y,
      aAbs: sums.aAbs,
    });
    tileMs += cpuMs(c0);
    if (!r.ok) throw new Error(`honest tile rejected: ${r.reason}`);
  }
  split.band.push(bandMs);
  split.tile.push(tileMs);
  return [projectMs];
}
