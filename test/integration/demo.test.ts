// README's quick start runs `pnpm demo` (a build, then scripts/demo.mjs). The docs test cannot
// run that block (it installs the repository), so this runs the demo itself, as documented:
// the default kernel and shape, the sampled check against a naive multiply, and the
// byte-identity check on one worker. The demo exits non-zero when a check fails.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/cluster.js";
import { exampleEnv } from "../support/doc-run.js";

function runDemo(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, "scripts", "demo.mjs")], {
      cwd: ROOT,
      env: exampleEnv(env),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own group: the coordinator and workers it starts are stopped with it
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const limit = setTimeout(() => {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    }, 150_000);
    child.on("exit", (code) => {
      clearTimeout(limit);
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL"); // anything it left behind
      } catch {
        // the group is already gone
      }
      resolve({ code, stdout, stderr });
    });
  });
}

describe("pnpm demo (README quick start)", () => {
  it("runs a verified job with the default kernel, prints its GFLOP/s, and gets the same bytes on one worker", async () => {
    const r = await runDemo({});
    const context = `stdout:\n${r.stdout}\nstderr:\n${r.stderr.slice(-3000)}`;
    expect(r.code, context).toBe(0);
    expect(r.stdout).toMatch(/C = A\(1536x1024\) x B\(1024x1280\)/);
    expect(r.stdout).toMatch(/[\d.]+ GFLOP\/s end to end \((native-avx512|native-blas|wasm-simd) kernel/);
    expect(r.stdout).toMatch(
      /checked: 4096 sampled entries against an independent naive multiply, all within the rounding bound/,
    );
    expect(r.stdout).toMatch(/is byte-identical to the one on 2 workers/);
  });

  it("with DCE_DEMO_KERNEL=reference and a smaller shape, compares every entry byte for byte", async () => {
    const r = await runDemo({
      DCE_DEMO_KERNEL: "reference",
      DCE_DEMO_M: "96",
      DCE_DEMO_K: "64",
      DCE_DEMO_N: "80",
      DCE_DEMO_TILE: "32",
    });
    const context = `stdout:\n${r.stdout}\nstderr:\n${r.stderr.slice(-3000)}`;
    expect(r.code, context).toBe(0);
    expect(r.stdout).toMatch(/reference kernel/);
    expect(r.stdout).toMatch(/checked: byte-identical to an independent naive multiply \(7680 entries\)/);
    expect(r.stdout).toMatch(/is byte-identical to the one on 2 workers/);
  });
});
