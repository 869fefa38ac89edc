// Every example of the docs runs, so none can rot: each fenced block of README.md and of each
// package's README, and each fenced block of a TSDoc comment (the `@example`s) in the packages'
// sources. Conventions and directives: scripts/doc-blocks.mjs.
//
// - ```ts / ```js blocks and TSDoc examples run with node as modules, against one real cluster:
//   in a folder holding what they read (ca.pem, certs/ca.pem, a.npy, b.npy, worker-1.pem and
//   worker-1-key.pem: a worker certificate of the cluster), with DCE_TOKEN set and the cluster's
//   address in place of the documented https://127.0.0.1:7070. One that exits non-zero or
//   prints to stderr fails. A `prelude` directive supplies what a fragment leaves out. They run
//   as .mjs on every supported Node.js, so a ```ts example is also valid JavaScript.
// - ```sh / ```bash / ```console blocks of one markdown file run in order as one bash session
//   (set -euo pipefail) in an empty folder holding A.npy and B.npy, with the repository's bins
//   on PATH and found by npx as inside the repository, and a free port in place of 7070. What
//   they leave running gets SIGTERM at the end and must exit within 30 s.
// - README's "Use dce in your app" blocks are run by scripts/pack-check.mjs from the packed
//   tarballs (CI), so not here; ```text blocks are not code; any other block must be marked
//   `skip (REASON)`, and the test lists those reasons. A block in none of these fails.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeNpy, parseNpy } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  appSectionBlocks,
  type DocBlock,
  markdownBlocks,
  tsdocBlocks,
  unfencedTsdocExamples,
} from "../../scripts/doc-blocks.mjs";
import { type Cluster, naiveMultiply, ROOT, randomMatrix, startCluster } from "../support/cluster.js";
import { blockMarker, exampleEnv, freePort, runNode, runSession, sessionScript } from "../support/doc-run.js";

const DOCUMENTED_URL = "https://127.0.0.1:7070";
const NODE = new Set(["ts", "js"]);
const SHELL = new Set(["sh", "bash", "console"]);
const TEXT = new Set(["text"]);

const packages = readdirSync(join(ROOT, "packages")).map((p) => `packages/${p}`);
// Every README of the repository (the packages', test/sim's), not only the ones we think of.
const markdownFiles = execFileSync("git", ["ls-files", "README.md", "*/README.md"], { cwd: ROOT, encoding: "utf8" })
  .split("\n")
  .filter((f) => f !== "" && existsSync(join(ROOT, f)));

/** The TypeScript sources of the packages, without tests, test support and generated code. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return e.name === "gen" || e.name === "test-support" ? [] : sources(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts") ? [path] : [];
  });
}

const sourceFiles = packages.flatMap((p) => sources(`${p}/src`));
const blocks: DocBlock[] = [
  ...markdownFiles.flatMap((f) => markdownBlocks(f, readFileSync(join(ROOT, f), "utf8"))),
  ...sourceFiles.flatMap((f) => tsdocBlocks(f, readFileSync(join(ROOT, f), "utf8"))),
];
const packChecked = Object.values(appSectionBlocks(readFileSync(join(ROOT, "README.md"), "utf8")));
const isPackChecked = (b: DocBlock) => packChecked.some((p) => p.file === b.file && p.line === b.line);
const runHere = (b: DocBlock) => b.skip === undefined && !isPackChecked(b);
const nodeBlocks = blocks.filter((b) => runHere(b) && NODE.has(b.lang));
const shellBlocks = blocks.filter((b) => runHere(b) && SHELL.has(b.lang));
const shellFiles = [...new Set(shellBlocks.map((b) => b.file))];
const skipped = blocks.filter((b) => b.skip !== undefined);
const unaccounted = blocks.filter((b) => runHere(b) && !NODE.has(b.lang) && !SHELL.has(b.lang) && !TEXT.has(b.lang));

let cluster: Cluster;
let work: string;

/** A folder for examples: the repository's node_modules (so imports and npx resolve as inside it). */
function exampleDir(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "dce-docs-"));
  if (nodeBlocks.length === 0) return;
  cluster = await startCluster({ workers: 2 });
  const dir = exampleDir("node");
  mkdirSync(join(dir, "certs"));
  writeFileSync(join(dir, "ca.pem"), cluster.ca);
  writeFileSync(join(dir, "certs", "ca.pem"), cluster.ca);
  writeFileSync(join(dir, "worker-1.pem"), readFileSync(cluster.workerCert.cert));
  writeFileSync(join(dir, "worker-1-key.pem"), readFileSync(cluster.workerCert.key));
  writeFileSync(join(dir, "a.npy"), encodeNpy(randomMatrix(40, 30, 1)));
  writeFileSync(join(dir, "b.npy"), encodeNpy(randomMatrix(30, 20, 2)));
});

afterAll(async () => {
  await cluster?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the docs' examples", () => {
  it("finds examples in every README and in the TSDoc of the SDK", () => {
    const files = new Set(blocks.map((b) => b.file));
    expect([...files]).toEqual(expect.arrayContaining(["README.md", "packages/client-sdk/README.md", "test/sim/README.md"]));
    expect(blocks.some((b) => b.file.startsWith("packages/client-sdk/src/"))).toBe(true);
    expect(shellBlocks.length).toBeGreaterThan(0);
  });

  it("every block is run here or by the pack check, is text, or is marked skip with a reason", () => {
    const where = (b: DocBlock) => `${b.file}:${b.line} (\`\`\`${b.lang || "with no language"})`;
    expect(unaccounted.map(where), "tag a block sh/ts/text, or mark it <!-- docs-test: skip (reason) -->").toEqual([]);
    expect(packChecked.filter((b) => b.skip !== undefined).map(where), "the pack check runs these").toEqual([]);
  });

  it("every TSDoc @example is a fenced block, so it is found and run", () => {
    const unfenced = sourceFiles.flatMap((f) =>
      unfencedTsdocExamples(readFileSync(join(ROOT, f), "utf8")).map((line) => `${f}:${line}`),
    );
    expect(unfenced, "put the example's code in a ```ts block right after @example").toEqual([]);
  });

  // Listed with their reasons: a reviewer sees what is not run and why.
  it.each(skipped.map((b) => ({ ...b, reason: b.skip ?? "" })))("not run: $file line $line ($reason)", ({ reason }) => {
    expect(reason.length).toBeGreaterThan(10);
  });

  it.each(packChecked)("run by scripts/pack-check.mjs from the tarballs: $file line $line", (b) => {
    expect(b.code.length).toBeGreaterThan(0);
  });

  it.each(nodeBlocks)("runs $file line $line", async (b) => {
    const dir = join(work, "node");
    const path = join(dir, `${b.file.replace(/[/.]/g, "_")}_${b.line}.mjs`);
    writeFileSync(
      path,
      [b.prelude, b.code]
        .filter((c) => c !== undefined)
        .join("\n")
        .replaceAll(DOCUMENTED_URL, cluster.url),
    );
    rmSync(join(dir, "c.npy"), { force: true });
    const r = await runNode(path, dir, exampleEnv({ DCE_TOKEN: cluster.token }), {
      limitMs: 60_000,
      servesForS: b.servesForS,
    });
    expect(r.stderr, `stdout:\n${r.stdout}`).toBe("");
    if (b.servesForS !== undefined) expect(r.runningAtSigterm, `still running after ${b.servesForS} s`).toBe(true);
    expect(r.code).toBe(0);
    if (b.code.includes('"c.npy"')) {
      // The example that writes C wrote the right product.
      const a = parseNpy(readFileSync(join(dir, "a.npy")));
      const bm = parseNpy(readFileSync(join(dir, "b.npy")));
      const c = parseNpy(readFileSync(join(dir, "c.npy")));
      expect([c.rows, c.cols]).toEqual([a.rows, bm.cols]);
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += (a.data[k] ?? 0) * (bm.data[k * bm.cols] ?? 0);
      expect(c.data[0]).toBeCloseTo(s, 10);
    }
  });

  it.each(shellFiles)(
    "runs the shell blocks of %s in one session",
    async (file) => {
      const dir = exampleDir(`sh-${file.replace(/[/.]/g, "_")}`);
      const [a, b] = [randomMatrix(120, 80, 3), randomMatrix(80, 100, 4)];
      writeFileSync(join(dir, "A.npy"), encodeNpy(a));
      writeFileSync(join(dir, "B.npy"), encodeNpy(b));
      const port = String(await freePort());
      const mine = shellBlocks.filter((b) => b.file === file);
      const script = sessionScript(mine, (code) => code.replaceAll("7070", port));
      const path = [join(dir, "node_modules", ".bin"), process.env["PATH"] ?? ""].join(":");
      const r = await runSession(script, dir, exampleEnv({ PATH: path }), { limitMs: 200_000, graceMs: 30_000 });
      const last = mine.filter((b) => r.stderr.includes(blockMarker(b))).at(-1);
      const context = `last block started: ${last ? `${last.file} line ${last.line}` : "none"}\nstdout:\n${r.stdout.slice(-3000)}\nstderr:\n${r.stderr.slice(-5000)}\n${r.logs}`;
      expect(r.code, context).toBe(0);
      expect(
        mine.every((b) => r.stderr.includes(blockMarker(b))),
        context,
      ).toBe(true);
      expect(r.leftRunning, `something the blocks started outlived SIGTERM by 30 s\n${context}`).toBe(false);
      if (existsSync(join(dir, "C.npy"))) {
        // A block that wrote C wrote the right product (any kernel's order: within 1e-12 of the naive sums).
        const c = parseNpy(readFileSync(join(dir, "C.npy")));
        expect([c.rows, c.cols]).toEqual([a.rows, b.cols]);
        const want = naiveMultiply(a, b);
        const worst = want.reduce((m, w, i) => Math.max(m, Math.abs(w - (c.data[i] ?? Number.NaN))), 0);
        expect(worst).toBeLessThan(1e-12);
      }
    },
    240_000,
  );
});
