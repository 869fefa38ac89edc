#!/usr/bin/env node
// Checks that the simulation catches a broken core. For each mutant it copies
// packages/core into a scratch folder under the OS temp dir (packages/ is never
// touched), applies one source edit, compiles the copy, and runs the simulation
// against it through DCE_SIM_CORE (vitest.config.ts resolves every import of @dce/core
// in the integration project to it, the real coordinator's included). A mutant "dies"
// when the run fails.
//
//   node test/sim/mutation-check.mjs                  every mutant, 10 000 seeds each
//   node test/sim/mutation-check.mjs stale-epoch      one mutant
//   DCE_SIM_SEEDS=2000 node test/sim/mutation-check.mjs
//   DCE_SIM_SEEDS=0 node test/sim/mutation-check.mjs deaths-count-as-attempts   only the chaos modes' 20 seeds
//   DCE_SIM_SUITE=test/sim/sim.test.ts node test/sim/mutation-check.mjs          another suite (default test/sim)
//
// Exit code 0 when every mutant that must die died; 1 otherwise. If the core changed so
// that an edit no longer applies, the script says so (update the `find` text below).
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Gives checkLease a `mut` flag that only complete() sets, so a mutation can be confined to completions. */
const COMPLETION_ONLY = [
  {
    file: "src/leases.ts",
    find: "  nowMs: number,\n): Result<{ job: JobRecord; lease: LeaseRecord }> {",
    replace: "  nowMs: number,\n  mut = true,\n): Result<{ job: JobRecord; lease: LeaseRecord }> {",
  },
  {
    file: "src/leases.ts",
    find: "const r = checkLease(s, e.workerId, key, e.nowMs);",
    replace: "const r = checkLease(s, e.workerId, key, e.nowMs, false);",
  },
  {
    file: "src/leases.ts",
    find: "  const r = checkLease(s, e.workerId, e.lease, e.nowMs);\n  return r.ok ? ok({ worker, ...r.value }) : r;",
    replace:
      '  const r = checkLease(s, e.workerId, e.lease, e.nowMs, e.type === "shard-completed");\n  return r.ok ? ok({ worker, ...r.value }) : r;',
  },
  {
    file: "src/results.ts",
    find: "  const r = checkLease(s, e.workerId, e.lease, e.nowMs);\n  if (r.ok) {",
    replace: "  const r = checkLease(s, e.workerId, e.lease, e.nowMs, false);\n  if (r.ok) {",
  },
];

/** Reports are checked against the shard's current lease, whatever epoch they name. */
const STALE_EPOCH = [
  {
    file: "src/leases.ts",
    find: "if ((epoch !== current && epoch !== backup) || status !== ShardStatus.leased) {",
    replace: "if ((epoch !== current && epoch !== backup && !mut) || status !== ShardStatus.leased) {",
  },
  {
    file: "src/leases.ts",
    find: "const lease = s.leases.get(epoch);",
    replace: "const lease = s.leases.get(epoch) ?? (mut ? s.leases.get(current) : undefined);",
  },
];

/** A repeated completion of an accepted shard is accepted again; counters stay consistent so checkInvariants is quiet. */
const SECOND_COMPLETION = [
  {
    file: "src/leases.ts",
    find: 'if (current === epoch) return err({ kind: "already-completed", jobId: job.id, shardIndex, epoch });',
    replace:
      'if (current === epoch && !mut) return err({ kind: "already-completed", jobId: job.id, shardIndex, epoch });\n' +
      "    if (current === epoch) return ok({ job, lease: { epoch, jobId: job.id, shardIndex, workerId, grantedAtMs: nowMs, expiresAtMs: nowMs + 1 } });",
  },
  {
    file: "src/results.ts",
    find: "  job.leasedCount--;\n  job.durationsMs.push",
    replace: "  if (job.shardStatus[shard] !== ShardStatus.done) job.leasedCount--;\n  job.durationsMs.push",
  },
  {
    file: "src/results.ts",
    find: "  job.shardStatus[shard] = ShardStatus.done;\n  job.doneCount++;",
    replace: "  if (job.shardStatus[shard] !== ShardStatus.done) job.doneCount++;\n  job.shardStatus[shard] = ShardStatus.done;",
  },
];

/** A flag that is always true: the mutation applies to heartbeats and failure reports as well. */
const EVERYWHERE = [
  {
    file: "src/leases.ts",
    find: "  nowMs: number,\n): Result<{ job: JobRecord; lease: LeaseRecord }> {",
    replace: "  nowMs: number,\n  mut = true,\n): Result<{ job: JobRecord; lease: LeaseRecord }> {",
  },
];

/** @type {{ name: string; why: string; mustDie: boolean; edits: { file: string; find: string; replace: string }[] }[]} */
const MUTANTS = [
  {
    name: "stale-epoch-completion",
    why: "(a) CompleteShards is checked against the shard's current lease, not the reported epoch (heartbeats unchanged)",
    mustDie: true,
    edits: [...COMPLETION_ONLY, ...STALE_EPOCH],
  },
  {
    name: "stale-epoch-everywhere",
    why: "(a') the same for every report (completion, failure, heartbeat)",
    mustDie: true,
    edits: [...EVERYWHERE, ...STALE_EPOCH],
  },
  {
    name: "stale-epoch-literal",
    why: "only the epoch comparison deleted (the lease map, keyed by epoch, still fences except for garbled keys)",
    mustDie: true,
    edits: [
      {
        file: "src/leases.ts",
        find: "if ((epoch !== current && epoch !== backup) || status !== ShardStatus.leased) {",
        replace: "if (status !== ShardStatus.leased) {",
      },
    ],
  },
  {
    name: "second-completion",
    why: "(b) a repeated CompleteShards of an accepted shard is accepted again (heartbeats unchanged)",
    mustDie: true,
    edits: [...COMPLETION_ONLY, ...SECOND_COMPLETION],
  },
  {
    name: "second-completion-everywhere",
    why: "(b') the same for every report",
    mustDie: true,
    edits: [...EVERYWHERE, ...SECOND_COMPLETION],
  },
  {
    name: "restart-epoch-floor",
    why: "restoreCoreState ignores the durable epoch floor (epochs resume above accepted ones only)",
    mustDie: true,
    edits: [{ file: "src/durable.ts", find: "s.nextEpoch = Math.max(1, model.epochFloor);", replace: "s.nextEpoch = 1;" }],
  },
  {
    name: "deaths-count-as-attempts",
    why: "issue 12: an expired lease counts against maxAttempts again, as before (the crash-storm mode must fail)",
    mustDie: true,
    edits: [
      {
        file: "src/tick.ts",
        find: "    job.shardAttempts[shard] = Math.max(0, (job.shardAttempts[shard] ?? 1) - 1);\n    requeue(",
        replace: "    requeue(",
      },
    ],
  },
  {
    name: "deaths-never-poison",
    why: "issue 12: worker deaths never fail a job (the poison mode must fail)",
    mustDie: true,
    edits: [
      {
        file: "src/poison.ts",
        find: "  if (rule.maxShardDeaths <= 0) return { poison: false };",
        replace: "  if (rule.maxShardDeaths >= 0) return { poison: false };",
      },
    ],
  },
];

const only = process.argv[2];
const seeds = process.env.DCE_SIM_SEEDS ?? "10000";
/** The suite to run against each mutant (DCE_SIM_SUITE; default every file under test/sim). */
const suite = process.env.DCE_SIM_SUITE ?? "test/sim";
let ok = true;
for (const m of MUTANTS.filter((x) => only === undefined || x.name === only)) {
  const dir = mkdtempSync(join(tmpdir(), `dce-mutant-${m.name}-`));
  try {
    // The copy keeps its path depth so `extends: ../../tsconfig.base.json` still resolves.
    const core = join(dir, "packages", "core");
    cpSync(join(root, "packages/core/src"), join(core, "src"), { recursive: true });
    for (const f of ["package.json", "tsconfig.json", "tsconfig.build.json"])
      cpSync(join(root, "packages/core", f), join(core, f));
    cpSync(join(root, "tsconfig.base.json"), join(dir, "tsconfig.base.json"));
    for (const e of m.edits) {
      const path = join(core, e.file);
      const src = readFileSync(path, "utf8");
      if (!src.includes(e.find)) throw new Error(`mutant ${m.name}: ${e.file} no longer contains ${JSON.stringify(e.find)}`);
      writeFileSync(path, src.replace(e.find, e.replace));
    }
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(core, "tsconfig.build.json")], { stdio: "inherit" });
    const started = Date.now();
    const run = spawnSync("pnpm", ["exec", "vitest", "run", "--project", "integration", suite], {
      cwd: root,
      env: { ...process.env, DCE_SIM_CORE: join(core, "dist/index.js"), DCE_SIM_SEEDS: seeds, FORCE_COLOR: "0" },
      encoding: "utf8",
    });
    const out = `${run.stdout}\n${run.stderr}`;
    const died = run.status !== 0;
    const firstFailure = out.match(/seed \d+ failed: .*/)?.[0] ?? "(no failing seed)";
    const counts = [...out.matchAll(/(\d+) of (\d+) seeds failed/g)].map((x) => Number(x[1]));
    const failing = counts.reduce((a, b) => a + b, 0);
    const verdict = died ? "KILLED" : "survived";
    console.log(
      `${m.name}: ${verdict} (${failing} of ${seeds} seeds failed, ${((Date.now() - started) / 1000).toFixed(1)} s) — ${m.why}`,
    );
    if (died) console.log(`  first: ${firstFailure}`);
    if (died !== m.mustDie) ok = false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
process.exit(ok ? 0 : 1);
