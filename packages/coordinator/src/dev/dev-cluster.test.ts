import { describe, expect, it } from "vitest";
import { DEFAULT_DEV_DIR } from "./dev-args.js";
import { resolveWorkerBin } from "./dev-cluster.js";
import { type DevProcess, devBanner, devExports, runDevCommand, shellQuote } from "./dev-command.js";

describe("resolveWorkerBin", () => {
  it("says in one line to install the worker package when it is missing", () => {
    const r = resolveWorkerBin((id) => {
      throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
    });
    expect(r).toEqual({ ok: false, message: "@dce/worker is not installed; run: npm install @dce/worker" });
  });

  it("makes coordinator dev exit 2 with that line and start nothing", async () => {
    let stderr = "";
    let stdout = "";
    const proc = {
      env: {},
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      on: () => {
        throw new Error("no signal handler before the worker bin is found");
      },
    } as unknown as DevProcess;
    const command = {
      kind: "dev",
      dir: DEFAULT_DEV_DIR,
      port: 0,
      workers: 2,
      threads: undefined,
      shutdownGraceMs: 10,
      logLevel: "info",
    } as const;
    const code = await runDevCommand(command, proc, () => ({
      ok: false,
      message: "@dce/worker is not installed; run: npm install @dce/worker",
    }));
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toBe("coordinator dev: @dce/worker is not installed; run: npm install @dce/worker\n");
  });

  it("finds the installed worker bin", () => {
    const r = resolveWorkerBin();
    expect(r.ok && r.path).toMatch(/worker[\\/]bin[\\/]worker\.js$/);
  });
});

describe("the exports coordinator dev prints", () => {
  it("are three lines a shell reads back unchanged, quoted only where needed", () => {
    const text = devExports({
      url: "https://127.0.0.1:7070",
      files: { caPath: "/home/it's me/.dce-dev/certs/ca.pem", token: "dce_abc-_9" } as never,
    });
    expect(text).toBe(
      "export DCE_COORDINATOR=https://127.0.0.1:7070\n" +
        "export DCE_CA='/home/it'\\''s me/.dce-dev/certs/ca.pem'\n" +
        "export DCE_TOKEN=dce_abc-_9\n",
    );
    expect(shellQuote("")).toBe("''");
  });
});

describe("the lines coordinator dev prints on stderr", () => {
  const cluster = (workers: number, threads: number) => ({
    url: "https://127.0.0.1:7070",
    threads,
    files: { dir: "/app/.dce-dev", adminToken: "dce_admin", workers: Array.from({ length: workers }) } as never,
  });

  it("count workers and threads in words that agree with the numbers", () => {
    expect(devBanner(cluster(2, 1), 42).split("\n")[0]).toBe(
      "dce dev cluster: coordinator https://127.0.0.1:7070, 2 workers x 1 thread each, files in /app/.dce-dev",
    );
    expect(devBanner(cluster(1, 4), 42)).toContain(", 1 worker x 4 threads each,");
  });

  it("name the dashboard with its token and the pid to stop", () => {
    const text = devBanner(cluster(2, 2), 42);
    expect(text).toContain("  dashboard: https://127.0.0.1:7070/ui#token=dce_admin\n");
    expect(text).toContain("kill 42 (SIGTERM)");
  });
});
