// Builds the optional native addons with node-gyp (native/binding.gyp):
//
//   node scripts/build-native.mjs     writes native/build/Release/dce_avx512.node (our AVX-512
//                                     kernel, needs only a C compiler) and dce_blas.node
//                                     (against OpenBLAS), or explains why not
//
// It runs in `pnpm build` in the repository, and as the published package's `install`
// script, so the addon is compiled on the machine that runs it (never shipped prebuilt):
// there node-gyp is npm's own (`npm_config_node_gyp`). `npm rebuild @dce/worker` runs it
// again, e.g. after installing OpenBLAS.
//
// Never fails the build: without OpenBLAS (Debian: `apt-get install libopenblas-dev`) it
// builds dce_avx512 alone and prints one "native-blas not built" line; without a compiler
// or the Node.js headers it prints one "native kernels not built" line. It exits 0 either
// way, and the worker simply does not offer the kernels that are missing. It never downloads anything: node-gyp
// gets the headers of the running Node.js (`--nodedir`), and is skipped when there are none.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(packageDir, "native");
const blasAddon = join(nativeDir, "build", "Release", "dce_blas.node");
const avx512Addon = join(nativeDir, "build", "Release", "dce_avx512.node");

/** The prefix of the running Node.js if it ships its headers (`include/node/node_api.h`). */
function localNodeDir() {
  const prefix = resolve(dirname(process.execPath), "..");
  const headers = join(prefix, "include", "node");
  return existsSync(join(headers, "node_api.h")) && existsSync(join(headers, "common.gypi")) ? prefix : undefined;
}

function skip(reason) {
  console.log(`native kernels not built (optional; the worker runs without them): ${reason}`);
  process.exit(0);
}

// In the repository the install hook has nothing to do: `pnpm build` builds the addon.
if (process.env.npm_lifecycle_event === "install" && existsSync(join(packageDir, "tsconfig.json"))) process.exit(0);
if (process.env.DCE_SKIP_NATIVE === "1") skip("DCE_SKIP_NATIVE=1");
const nodedir = localNodeDir();
if (nodedir === undefined) skip(`no Node.js headers next to ${process.execPath}`);
let nodeGyp;
try {
  nodeGyp = createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
} catch {
  // An installed package: npm runs install scripts with its own node-gyp.
  nodeGyp = process.env.npm_config_node_gyp;
  if (!nodeGyp || !existsSync(nodeGyp)) skip("node-gyp is not installed");
}
/** Runs `node-gyp rebuild` with extra gyp variables; the failure's best line, or undefined. */
function rebuild(gypArgs) {
  const res = spawnSync(
    process.execPath,
    [nodeGyp, "rebuild", "--directory", nativeDir, `--nodedir=${nodedir}`, "--loglevel=error", ...gypArgs],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 300_000,
    },
  );
  if (res.status === 0) return undefined;
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  // The compiler's first error says it best (e.g. "cblas.h: No such file or directory").
  const firstError = output
    .split("\n")
    .find((l) => /error|cannot find/i.test(l))
    ?.trim();
  return firstError ?? (res.error?.message || `node-gyp exited with ${res.status}`);
}

const built = (file) => join("native", "build", "Release", file);
const failure = rebuild([]);
if (failure === undefined && existsSync(blasAddon) && existsSync(avx512Addon)) {
  console.log(`built ${built("dce_avx512.node")} and ${built("dce_blas.node")}`);
} else {
  // Most often OpenBLAS is missing: build the addon that does not need it.
  console.log(`native-blas not built (optional; the worker runs without it): ${failure ?? "no dce_blas.node"}`);
  const second = rebuild(["--", "-Dwith_openblas=0"]);
  if (second !== undefined || !existsSync(avx512Addon)) skip(second ?? "no dce_avx512.node");
  console.log(`built ${built("dce_avx512.node")}`);
}
