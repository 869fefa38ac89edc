// Running the docs' examples (test/integration/docs-examples.test.ts): a TypeScript block as a
// node module, and the shell blocks of one markdown file as one bash session in a process group
// of its own, so that everything the blocks started, in the background too, can be stopped.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { DocBlock } from "../../scripts/doc-blocks.mjs";

/** What a finished process printed and how it ended. */
export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of an example: this process's, without any `DCE_*` variable, plus `extra`. */
export function exampleEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DCE_")) env[k] = v;
  return { ...env, ...extra };
}

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Runs `node path` in `cwd`. With `servesForS`, the process must still run after that many
 * seconds; it is then sent SIGTERM. Any other process is SIGKILLed after `limitMs`.
 */
export function runNode(
  path: string,
  cwd: string,
  env: Record<string, string>,
  o: { limitMs: number; servesForS?: number | undefined },
): Promise<Ran & { runningAtSigterm: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let running = true;
    let runningAtSigterm = false;
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const serve =
      o.servesForS === undefined
        ? undefined
        : setTimeout(() => {
            runningAtSigterm = running;
            child.kill("SIGTERM");
          }, o.servesForS * 1000);
    const limit = setTimeout(() => child.kill("SIGKILL"), o.limitMs);
    child.on("exit", (code, signal) => {
      running = false;
      clearTimeout(limit);
      if (serve) clearTimeout(serve);
      resolve({ code, signal, stdout, stderr, runningAtSigterm });
    });
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Single-quotes `s` for bash. */
function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The marker line a session prints to stderr before each block, so a failure names its block. */
export function blockMarker(b: DocBlock): string {
  return `docs-test: running ${b.file} line ${b.line}`;
}

/**
 * One bash script for the shell blocks of one file, in order: a plain block runs in the
 * script itself (so its exports reach the next block); a `background until "TEXT"` block runs
 * in a background subshell whose output goes to a log, and the script goes on once the log
 * holds TEXT (it fails, showing the log, if the block ends first or 90 s pass).
 */
export function sessionScript(blocks: DocBlock[], edit: (code: string) => string): string {
  const parts = ["set -euo pipefail"];
  for (const b of blocks) {
    // A console block shows a session: its commands are the lines after a "$ " prompt.
    const body =
      b.lang === "console"
        ? b.code
            .split("\n")
            .filter((l) => l.startsWith("$ "))
            .map((l) => l.slice(2))
            .join("\n")
        : b.code;
    const code = edit([b.prelude, body].filter((c) => c !== undefined).join("\n"));
    parts.push(`echo ${quote(blockMarker(b))} >&2`);
    if (b.background === undefined) {
      parts.push(code);
      continue;
    }
    const log = `.docs-test-line-${b.line}.log`;
    const text = quote(b.background);
    parts.push(
      `( set -euo pipefail\n${code}\n) > ${log} 2>&1 &`,
      `bg=$!`,
      `for _ in $(seq 450); do grep -qF -- ${text} ${log} && break; kill -0 "$bg" 2>/dev/null || break; sleep 0.2; done`,
      `grep -qF -- ${text} ${log} || { echo "docs-test: ${b.file} line ${b.line} never printed "${text}"; its output:" >&2; tail -n 40 ${log} >&2; exit 1; }`,
    );
  }
  return `${parts.join("\n")}\n`;
}

/**
 * Runs `script` with bash in `cwd`, in a process group of its own. When bash has exited (or
 * after `limitMs`), the group (what the blocks left running) is sent SIGTERM and given
 * `graceMs` to exit, then SIGKILLed. `leftRunning` tells whether anything outlived the grace.
 */
export async function runSession(
  script: string,
  cwd: string,
  env: Record<string, string>,
  o: { limitMs: number; graceMs: number },
): Promise<Ran & { leftRunning: boolean; logs: string }> {
  const child = spawn("bash", ["-c", script], { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const pgid = child.pid ?? -1;
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    const limit = setTimeout(() => {
      stderr += `\ndocs-test: the session ran past ${o.limitMs} ms`;
      if (groupAlive(pgid)) process.kill(-pgid, "SIGKILL");
    }, o.limitMs);
    child.on("exit", (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal });
    });
  });
  if (groupAlive(pgid)) process.kill(-pgid, "SIGTERM");
  const deadline = Date.now() + o.graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100);
  const leftRunning = groupAlive(pgid);
  if (leftRunning) process.kill(-pgid, "SIGKILL");
  return { ...ended, stdout, stderr, leftRunning, logs: backgroundLogs(cwd) };
}

/** The tails of the background blocks' logs in `dir`, for a failure message. */
function backgroundLogs(dir: string): string {
  return readdirSync(dir)
    .filter((f) => f.startsWith(".docs-test-line-") && statSync(join(dir, f)).isFile())
    .map((f) => `--- ${f}\n${readFileSync(join(dir, f), "utf8").slice(-3000)}`)
    .join("\n");
}
