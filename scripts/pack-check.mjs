// Checks that the packages are publishable and that README's "Use dce in your app"
// works as written: `pnpm pack:tarballs`, then the section's shell block runs in an empty
// folder (npm install of the tarballs, npx coordinator init-certs / tokens add /
// coordinator / worker, node app.mjs with the section's app.mjs), on a free port instead
// of 7070. The app checks every entry of C; the bins, SIGTERMed through npx, must drain
// and exit. Then the section's "Development cluster" block runs in the same folder
// (npx coordinator dev on a free port, eval of its exports, npx dce submit, kill): C is
// checked entry by entry, and every process it started must be gone. Also checks that
// the SDK alone installs without the logger (pino), that every tarball is complete
// (scripts/tarball-contents.mjs), and that the worker's install compiled its native kernel.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { appSectionBlocks, DEV_SECTION, APP_SECTION as SECTION } from "./doc-blocks.mjs";
import { tarballProblems } from "./tarball-contents.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "dce-pack-"));
const RUN_LIMIT_MS = 240_000;
let group;

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
}

/** README's app section: the blocks this check runs (the docs test leaves exactly these to it). */
function sectionBlocks() {
  const { sh, js, dev } = appSectionBlocks(readFileSync(join(root, "README.md"), "utf8"));
  return { sh: sh.code, js: js.code, dev: dev.code };
}

/** Runs `script` with bash in `cwd`, in a process group of its own; resolves with its exit code and stdout. */
async function runScript(script, cwd, what) {
  const child = spawn("bash", ["-c", `set -euo pipefail\n${script}`], {
    cwd,
    env: { ...process.env, DCE_REPO: root },
    stdio: ["ignore", "pipe", "inherit"],
    // Its own process group: npx, sh and the node bins can all be found (and stopped) by it.
    detached: true,
  });
  group = child.pid;
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
    process.stdout.write(d);
  });
  const code = await new Promise((res) => {
    const timer = setTimeout(() => {
      console.error(`${what} did not finish within ${RUN_LIMIT_MS} ms`);
      res(-1);
    }, RUN_LIMIT_MS);
    child.on("exit", (c) => {
      clearTimeout(timer);
      res(c);
    });
  });
  if (code !== 0) throw new Error(`${what} exited with ${code}`);
  return out;
}

/** Waits up to 20 s for every process of the current group to exit. */
async function groupGone(what) {
  const deadline = Date.now() + 20_000;
  while (groupAlive(group) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (groupAlive(group)) throw new Error(`${what} was still running 20 s after its npx was SIGTERMed`);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function hasCompiler() {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

try {
  run("pnpm", ["pack:tarballs"], root);
  const files = readdirSync(join(root, "tarballs")).filter((f) => f.endsWith(".tgz"));
  console.log(`packed: ${files.join(", ")}`);
  if (files.length !== 6) throw new Error(`expected 6 tarballs, got ${files.length}`);
  // README and licence, source maps that resolve, every native source the install compiles.
  const problems = files.flatMap((f) => tarballProblems(join(root, "tarballs", f)).map((p) => `${f}: ${p}`));
  if (problems.length > 0) throw new Error(`the tarballs are incomplete:\n${problems.join("\n")}`);

  // The SDK alone: three tarballs, and no logger among what they pull in.
  const sdk = join(work, "sdk-only");
  mkdirSync(sdk);
  writeFileSync(join(sdk, "package.json"), JSON.stringify({ name: "sdk-only", private: true, type: "module" }));
  const sdkTarballs = files.filter((f) => /^dce-(proto|runtime|client-sdk)-/.test(f)).map((f) => join(root, "tarballs", f));
  run("npm", ["install", "--no-audit", "--no-fund", ...sdkTarballs], sdk);
  if (existsSync(join(sdk, "node_modules", "pino"))) throw new Error("installing the SDK alone pulled in pino");
  run("node", ["-e", 'import("@dce/client-sdk").then((m) => { if (!m.createClient) process.exit(1); })'], sdk);
  console.log(`the SDK alone installs ${readdirSync(join(sdk, "node_modules")).length} top-level entries, no pino`);

  // README's section, as written, on a free port.
  const app = join(work, "app");
  mkdirSync(app);
  const port = String(await freePort());
  const { sh, js, dev } = sectionBlocks();
  writeFileSync(join(app, "app.mjs"), js.replaceAll("7070", port));
  const out = await runScript(sh.replaceAll("7070", port), app, `README's "${SECTION}"`);
  if (!/, 0 entries differ from a naive multiply/.test(out)) throw new Error("app.mjs did not report a correct C");
  // The worker's install script compiles native-avx512 wherever there is a C compiler.
  const addon = join(app, "node_modules/@dce/worker/native/build/Release/dce_avx512.node");
  if (hasCompiler() && !existsSync(addon)) throw new Error("npm install did not build the worker's dce_avx512.node");
  if (!/: cancelled\n/.test(out) || !/^listed: \S+ cancelled$/m.test(out) || /^listed: .* succeeded$/m.test(out))
    throw new Error(`app.mjs did not cancel, list and delete as the README says:\n${out}`);
  // `kill %1 %2 %3` signalled npx; the bins must see it and exit on their own.
  await groupGone("a bin started by npx");
  console.log("every bin started through npx drained and exited after SIGTERM to npx");

  // The development cluster, in the same folder: inputs of small integers, so C is exact.
  const npy = `
    import { readFileSync, writeFileSync } from "node:fs";
    import { encodeNpy, parseNpy } from "@dce/client-sdk";
    const m = (rows, cols, s) => ({ rows, cols, data: Float64Array.from({ length: rows * cols }, (_, i) => ((i * s) % 7) - 3) });
    const [a, b] = [m(70, 50, 3), m(50, 60, 5)];
    if (process.argv[1] === "write") {
      writeFileSync("A.npy", encodeNpy(a));
      writeFileSync("B.npy", encodeNpy(b));
    } else {
      const c = parseNpy(readFileSync("C.npy"));
      let wrong = c.rows === a.rows && c.cols === b.cols ? 0 : 1;
      for (let i = 0; i < a.rows; i++)
        for (let j = 0; j < b.cols; j++) {
          let s = 0;
          for (let k = 0; k < a.cols; k++) s += a.data[i * a.cols + k] * b.data[k * b.cols + j];
          if (c.data[i * b.cols + j] !== s) wrong++;
        }
      if (wrong > 0) throw new Error(\`C from the dev cluster: \${wrong} entries differ from a naive multiply\`);
    }`;
  execFileSync("node", ["--input-type=module", "-e", npy, "write"], { cwd: app, stdio: "inherit" });
  await runScript(dev.replaceAll("npx coordinator dev", "npx coordinator dev --port 0"), app, `README's "${DEV_SECTION}"`);
  execFileSync("node", ["--input-type=module", "-e", npy, "check"], { cwd: app, stdio: "inherit" });
  await groupGone("the dev cluster (coordinator dev or one of its workers)");
  console.log("the dev cluster computed C exactly and left no process behind after kill");
  console.log("pack check passed");
} finally {
  if (group !== undefined && groupAlive(group)) process.kill(-group, "SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
