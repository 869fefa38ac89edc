// Builds the verifier's WebAssembly product from asm/panel.ts with AssemblyScript:
//
//   node scripts/build-wasm.mjs            rebuilds wasm/panel.wasm; with CI set, fails instead if it was stale
//   node scripts/build-wasm.mjs --check    builds into a temporary folder and exits 1 unless
//                                          the committed binary is byte-identical to it
//
// The binary is committed (the verifier loads it at run time), so a change to the source or
// to the pinned compiler must come with a rebuilt binary; `panel-kernel.test.ts` runs the
// same comparison in the unit tests.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(packageDir, "asm", "panel.ts");
const wasmDir = join(packageDir, "wasm");
const file = "panel.wasm";

/** Compiles the binary into `outDir`. */
async function build(outDir) {
  const args = [source, "--enable", "simd", "-O3", "--runtime", "stub", "--noAssert", "--use", "abort="];
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

/** Builds into a temporary folder; returns the fresh bytes and the committed ones (undefined when missing). */
async function fresh() {
  const tmp = mkdtempSync(join(tmpdir(), "dce-panel-wasm-"));
  try {
    const bytes = await build(tmp);
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
    console.log("wasm binary matches its source");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await fresh();
