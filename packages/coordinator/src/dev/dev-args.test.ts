import { describe, expect, it } from "vitest";
import { parseArgs } from "../args.js";

function dev(argv: string[], env: Record<string, string> = {}) {
  const r = parseArgs(["dev", ...argv], env);
  if (!r.ok || r.command.kind !== "dev") throw new Error(`not a dev command: ${JSON.stringify(r)}`);
  return r.command;
}

describe("coordinator dev flags", () => {
  it("defaults to two workers on port 7070 in .dce-dev", () => {
    expect(dev([])).toEqual({
      kind: "dev",
      dir: ".dce-dev",
      port: 7070,
      workers: 2,
      threads: undefined,
      shutdownGraceMs: 10_000,
      logLevel: "info",
    });
  });

  it("takes each flag, and the flag over its environment variable", () => {
    const env = { DCE_DEV_WORKERS: "5", DCE_PORT: "9000", DCE_DEV_DIR: "envdir", DCE_WORKER_THREADS: "3" };
    expect(
      dev(["--workers", "3", "--port", "0", "--dir", "x", "--threads", "2", "--shutdown-grace-ms", "500"], env),
    ).toMatchObject({
      workers: 3,
      port: 0,
      dir: "x",
      threads: 2,
      shutdownGraceMs: 500,
    });
    expect(dev([], env)).toMatchObject({ workers: 5, port: 9000, dir: "envdir", threads: 3 });
  });

  it.each([
    [["--workers", "0"], /--workers must be an integer from 1 to 1000, got '0'/],
    [["--port", "70000"], /--port must be an integer from 0 to 65535/],
    [["--threads", "x"], /--threads must be an integer >= 1/],
    [["--log-level", "loud"], /loud/],
  ])("refuses %j with exit code 2", (argv, message) => {
    const r = parseArgs(["dev", ...argv], {});
    expect(r.ok).toBe(false);
    expect(!r.ok && r.exitCode).toBe(2);
    expect(!r.ok && r.usage).toMatch(message);
  });

  it("refuses a bad environment fallback like the flag", () => {
    const r = parseArgs(["dev"], { DCE_DEV_WORKERS: "many" });
    expect(!r.ok && r.usage).toMatch(/--workers must be an integer/);
  });
});
