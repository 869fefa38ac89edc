// Test support (excluded from the build): the kernel thread script only exists as
// JavaScript in dist/, but unit tests run from src/. This transpiles the thread
// entry and the modules it imports into a temporary directory, once per test file.
// The directory mirrors the package (`src/…` next to links to `wasm/` and `native/`) so
// that kernels find their binaries relative to themselves, as they do from `dist/`.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const srcDir = fileURLToPath(new URL("../", import.meta.url));
const packageDir = fileURLToPath(new URL("../../", import.meta.url));
const threadSources = [
  "kernel-thread.ts",
  "internal/gemm.ts",
  "internal/matrix.ts",
  "internal/thread-protocol.ts",
  "kernels/kernel.ts",
  "kernels/names.ts",
  "kernels/native-avx512.ts",
  "kernels/native-blas.ts",
  "kernels/reference.ts",
  "kernels/self-check.ts",
  "kernels/shape.ts",
  "kernels/support.ts",
  "kernels/wasm-simd.ts",
];

let compiled: URL | undefined;
let compiledDir: string | undefined;

/** Deletes the compiled script (call from `afterAll`, after every pool is closed). */
export function removeCompiledThreadScript(): void {
  if (compiledDir !== undefined) rmSync(compiledDir, { recursive: true, force: true });
  compiled = undefined;
  compiledDir = undefined;
}

/** Returns the URL of a runnable `kernel-thread.js` built from the current sources. */
export function compileThreadScript(): URL {
  if (compiled !== undefined) return compiled;
  const outDir = mkdtempSync(join(tmpdir(), "dce-worker-thread-"));
  compiledDir = outDir;
  writeFileSync(join(outDir, "package.json"), '{ "type": "module" }\n');
  for (const asset of ["wasm", "native"]) symlinkSync(join(packageDir, asset), join(outDir, asset), "dir");
  for (const rel of threadSources) {
    const out = ts.transpileModule(readFileSync(join(srcDir, rel), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      fileName: rel,
    });
    const file = join(outDir, "src", rel.replace(/\.ts$/, ".js"));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, out.outputText);
  }
  compiled = pathToFileURL(join(outDir, "src", "kernel-thread.js"));
  return compiled;
}
