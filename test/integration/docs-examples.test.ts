// Every TypeScript example in the READMEs runs as written against a real cluster: each
// ```ts block is saved as a module in a folder that holds what the example reads
// (ca.pem, certs/ca.pem, a.npy, b.npy) and run with node, with DCE_TOKEN set and the
// coordinator's address in place of the documented https://127.0.0.1:7070. A block that
// throws, prints an error or exits non-zero fails its test.
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeNpy, parseNpy } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, ROOT, randomMatrix, startCluster } from "../support/cluster.js";

const DOCUMENTED_URL = "https://127.0.0.1:7070";
const FILES = ["README.md", "packages/client-sdk/README.md"];

/** The ```ts blocks of a markdown file, with the line each starts on. */
function tsBlocks(file: string): { line: number; code: string }[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const out: { line: number; code: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]?.trim() !== "```") end++;
    out.push({ line: start, code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return out;
}

const examples = FILES.flatMap((file) => tsBlocks(file).map((b) => ({ file, ...b })));

let cluster: Cluster;
let work: string;

beforeAll(async () => {
  cluster = await startCluster({ workers: 2 });
  work = mkdtempSync(join(tmpdir(), "dce-docs-"));
  // The examples import @dce/client-sdk as an app would: resolve it from the repository's install.
  symlinkSync(join(ROOT, "node_modules"), join(work, "node_modules"), "dir");
  mkdirSync(join(work, "certs"));
  copyFileSync(cluster.caPath, join(work, "ca.pem"));
  copyFileSync(cluster.caPath, join(work, "certs", "ca.pem"));
  writeFileSync(join(work, "a.npy"), encodeNpy(randomMatrix(40, 30, 1)));
  writeFileSync(join(work, "b.npy"), encodeNpy(randomMatrix(30, 20, 2)));
});

afterAll(async () => {
  await cluster?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

function run(path: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path], {
      cwd: work,
      env: { ...process.env, DCE_TOKEN: cluster.token },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("documented TypeScript examples run as written", () => {
  it("finds the examples", () => {
    expect(examples.map((e) => e.file)).toEqual(expect.arrayContaining(FILES));
  });

  it.each(examples)("$file line $line", async ({ file, line, code }) => {
    expect(code).toContain(DOCUMENTED_URL);
    const path = join(work, `${file.replace(/[/.]/g, "_")}_${line}.mjs`);
    writeFileSync(path, code.replaceAll(DOCUMENTED_URL, cluster.url));
    rmSync(join(work, "c.npy"), { force: true });
    const r = await run(path);
    expect(r.stderr, `stdout:\n${r.stdout}`).toBe("");
    expect(r.code).toBe(0);
    if (code.includes('"c.npy"')) {
      // The example that writes C wrote the right product.
      const a = parseNpy(readFileSync(join(work, "a.npy")));
      const b = parseNpy(readFileSync(join(work, "b.npy")));
      const c = parseNpy(readFileSync(join(work, "c.npy")));
      expect([c.rows, c.cols]).toEqual([a.rows, b.cols]);
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += (a.data[k] ?? 0) * (b.data[k * b.cols] ?? 0);
      expect(c.data[0]).toBeCloseTo(s, 10);
    }
  });
});
