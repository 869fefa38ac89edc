// A process started through `npx coordinator` / `npx worker` runs as node ← sh -c ← npm.
// A supervisor's SIGTERM reaches npm and sh, and sh dies without passing it on. These
// tests start each bin the same way (node under `sh -c`, with the variables npm sets for
// `npm exec`), SIGTERM the shell, and check that the node process drains and exits 0 on
// its own; and that without npm's variables it does not (the watch is what did it).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BIN } from "../support/cluster.js";

interface Launched {
  readonly shell: ChildProcess;
  output: string;
}

const pids = new Set<number>();
const dirs: string[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts `node bin args` under `sh -c` (no exec: like npm's shell), as npm exec would. */
function launch(bin: string, args: string[], npm: boolean): Launched {
  const quoted = [process.execPath, bin, ...args].map((a) => `'${a}'`).join(" ");
  const env: Record<string, string | undefined> = { ...process.env, DCE_LOG_FORMAT: "json" };
  delete env.npm_command;
  delete env.npm_lifecycle_event;
  delete env.DCE_EXIT_WITH_PARENT;
  if (npm) {
    env.npm_command = "exec";
    env.npm_lifecycle_event = "npx";
  }
  // The trailing `; true` keeps sh from exec'ing node, as npm's `sh -c` does here.
  const shell = spawn("sh", ["-c", `${quoted}; true`], { env, stdio: ["ignore", "pipe", "pipe"] });
  if (shell.pid !== undefined) pids.add(shell.pid);
  const l: Launched = { shell, output: "" };
  shell.stdout?.on("data", (d: Buffer) => {
    l.output += d.toString();
  });
  shell.stderr?.on("data", (d: Buffer) => {
    l.output += d.toString();
  });
  return l;
}

/** The node process's pid, from its first JSON log line; waits up to `ms`. */
async function nodePid(l: Launched, marker: RegExp, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = /"pid":(\d+)/.exec(l.output);
    if (m?.[1] !== undefined && marker.test(l.output)) {
      const pid = Number(m[1]);
      pids.add(pid);
      return pid;
    }
    if (Date.now() > deadline) throw new Error(`no ${marker} within ${ms} ms:\n${l.output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function gone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return !alive(pid);
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "dce-npx-"));
  dirs.push(d);
  return d;
}

afterEach(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  pids.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const coordinatorArgs = (dir: string) => ["--dev-no-auth", "--insecure", "--port", "0", "--data-dir", join(dir, "data")];

describe("a bin started by npx acts on the SIGTERM its launcher got", () => {
  it("the coordinator drains and stops when its npm parent is gone", async () => {
    const l = launch(BIN.coordinator, coordinatorArgs(tempDir()), true);
    const pid = await nodePid(l, /coordinator ready/, 20_000);
    l.shell.kill("SIGTERM");
    expect(await gone(pid, 10_000)).toBe(true);
    expect(l.output).toMatch(/"signal":"SIGTERM".*shutting down/);
  });

  it("the worker drains and stops when its npm parent is gone", async () => {
    const c = launch(BIN.coordinator, coordinatorArgs(tempDir()), false);
    await nodePid(c, /coordinator ready/, 20_000);
    const url = /listening on (\S+)/.exec(c.output)?.[1];
    expect(url).toBeDefined();
    const w = launch(BIN.worker, ["--coordinator", url ?? "", "--threads", "1", "--kernels", "reference"], true);
    const pid = await nodePid(w, /registered/, 20_000);
    w.shell.kill("SIGTERM");
    expect(await gone(pid, 15_000)).toBe(true);
    expect(w.output).toMatch(/signal received; draining/);
  });

  it("a bin started without npm outlives its shell (nothing is watched)", async () => {
    const l = launch(BIN.coordinator, coordinatorArgs(tempDir()), false);
    const pid = await nodePid(l, /coordinator ready/, 20_000);
    l.shell.kill("SIGTERM");
    expect(await gone(pid, 2_000)).toBe(false);
    process.kill(pid, "SIGTERM");
    expect(await gone(pid, 10_000)).toBe(true);
  });
});
