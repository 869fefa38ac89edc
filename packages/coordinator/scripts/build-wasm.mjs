// Builds the verifier's WebAssembly product from asm/panel.ts with AssemblyScript:
//
//   node scripts/build-wasm.mjs            rebuilds wasm/panel-simd.wasm and wasm/panel-relaxed.wasm;
//                                          with CI set, fails instead if they were stale
//   node scripts/build-wasm.mjs --check    builds into a temporary folder and exits 1 unless
//                                          the committed binaries are byte-identical to it
//
// The binaries are committed (the verifier loads one at run time), so a change to the source
// or to the pinned compiler must come with rebuilt binaries; `panel-kernel.test.ts` runs the
// same comparison in the unit tests.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(packageDir, "asm", "panel.ts");
const wasmDir = join(packageDir, "wasm");
/** The binaries and the feature flags of each (relaxed-simd selects relaxed_madd at compile time). */
const targets = [
  { file: "panel-simd.wasm", features: "simd" },
  { file: "panel-relaxed.wasm", features: "simd,relaxed-simd" },
];

/** Compiles one binary into `outDir`. */
async function build(outDir, file, features) {
  const args = [source, "--enable", features, "-O3", "--runtime", "stub", "--noAssert", "--use", "abort="];
  args.push("--outFile", join(outDir, file));
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
  return readFileSync(join(outDir, file));
}

/** Builds one binary into a temporary folder and compares it with (or, outside CI and --check, copies it over) the committed one. */
async function fresh(file, features) {
  const tmp = mkdtempSync(join(tmpdir(), "dce-panel-wasm-"));
  try {
    const bytes = await build(tmp, file, features);
    let committed;
    try {
      committed = readFileSync(join(wasmDir, file));
    } catch {
      committed = undefined;
    }
    if (committed === undefined || !bytes.equals(committed)) {
      if (!(process.argv.includes("--check") || (process.env.CI ?? "false") !== "false")) {
        mkdirSync(wasmDir, { recursive: true });
        copyFileSync(join(tmp, file), join(wasmDir, file));
        console.log(`rebuilt wasm/${file}; commit it`);
        return;
      }
      console.error(`wasm/${file} is stale: run \`node scripts/build-wasm.mjs\` in packages/coordinator and commit wasm/`);
      process.exit(1);
    }
    console.log(`wasm/${file} matches its source`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

for (const { file, features } of targets) await fresh(file, features);
