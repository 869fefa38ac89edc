// Builds the wasm-simd kernel binaries from asm/gemm.ts with AssemblyScript:
//
//   node scripts/build-wasm.mjs            rebuilds wasm/gemm-simd.wasm and wasm/gemm-relaxed.wasm;
//                                          with CI set, fails instead if they were stale
//   node scripts/build-wasm.mjs --check    builds into a temporary folder and exits 1 unless
//                                          the committed binaries are byte-identical to it
//
// The binaries are committed (the kernel loads them at run time and its fingerprint hashes
// them), so a change to the source or to the pinned compiler must come with rebuilt
// binaries. A developer's build rewrites them (commit the result); CI's build refuses stale
// ones, and `wasm-build.test.ts` runs the same comparison in the unit tests.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The source every binary is compiled from. */
export const wasmSource = join(packageDir, "asm", "gemm.ts");
/** Where the committed binaries live. */
export const wasmDir = join(packageDir, "wasm");

/**
 * The binaries and the feature flags of each. Both come from one source: the
 * ASC_FEATURE_RELAXED_SIMD constant selects relaxed_madd or mul + add at compile time.
 */
export const wasmTargets = [
  { file: "gemm-simd.wasm", features: "simd" },
  { file: "gemm-relaxed.wasm", features: "simd,relaxed-simd" },
];

/**
 * Compiles every target into `outDir`.
 *
 * @param {string} outDir
 * @returns {Promise<void>}
 */
export async function buildWasm(outDir) {
  for (const { file, features } of wasmTargets) {
    const args = [
      wasmSource,
      "--enable",
      features,
      "-O3",
      // No allocator, no GC and no imports: the kernel only uses raw memory.
      "--runtime",
      "stub",
      "--noAssert",
      "--use",
      "abort=",
      "--outFile",
      join(outDir, file),
    ];
    let stderr = "";
    const { error } = await asc.main(args, {
      stderr: {
        write(s) {
          stderr += s;
          return true;
        },
      },
    });
    if (error) throw new Error(`asc ${args.join(" ")} failed: ${error.message}\n${stderr}`);
  }
}

/**
 * Rebuilds into a temporary folder and compares with the committed binaries.
 *
 * @returns {Promise<string[]>} one line per binary that is missing or differs; empty when fresh
 */
export async function checkWasm() {
  const tmp = mkdtempSync(join(tmpdir(), "dce-wasm-"));
  try {
    await buildWasm(tmp);
    const problems = [];
    for (const { file } of wasmTargets) {
      const fresh = readFileSync(join(tmp, file));
      let committed;
      try {
        committed = readFileSync(join(wasmDir, file));
      } catch {
        problems.push(`wasm/${file} is missing`);
        continue;
      }
      if (!fresh.equals(committed)) {
        problems.push(`wasm/${file} (${committed.length} bytes) differs from a fresh build (${fresh.length} bytes)`);
      }
    }
    return problems;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Rebuilds the committed binaries: writes those that changed and returns their names.
 *
 * @returns {Promise<string[]>}
 */
export async function updateWasm() {
  const tmp = mkdtempSync(join(tmpdir(), "dce-wasm-"));
  try {
    await buildWasm(tmp);
    const changed = [];
    mkdirSync(wasmDir, { recursive: true });
    for (const { file } of wasmTargets) {
      const fresh = readFileSync(join(tmp, file));
      let committed;
      try {
        committed = readFileSync(join(wasmDir, file));
      } catch {
        committed = undefined;
      }
      if (committed === undefined || !fresh.equals(committed)) {
        copyFileSync(join(tmp, file), join(wasmDir, file));
        changed.push(`wasm/${file}`);
      }
    }
    return changed;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const stale = "the committed wasm is stale: run `pnpm --filter @dce/worker build:wasm` and commit packages/worker/wasm/";

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--check") || (process.env.CI ?? "false") !== "false") {
    const problems = await checkWasm();
    for (const p of problems) console.error(p);
    if (problems.length > 0) {
      console.error(stale);
      process.exit(1);
    }
    console.log("wasm binaries match their source");
  } else {
    const changed = await updateWasm();
    console.log(changed.length === 0 ? "wasm binaries are up to date" : `rebuilt ${changed.join(", ")}: commit them`);
  }
}
