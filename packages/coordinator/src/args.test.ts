import { describe, expect, it } from "vitest";
import { parseArgs } from "./args.js";
import { DEFAULT_CONNECTION_LIMITS } from "./connection-guard.js";
import { resolveConfig, resolveConnectionLimits } from "./server.js";

function serve(argv: string[], env: Record<string, string> = {}) {
  const r = parseArgs(argv, env);
  if (!r.ok || r.command.kind !== "serve") throw new Error(`not a serve command: ${JSON.stringify(r)}`);
  return r.command.options;
}

describe("coordinator limit flags", () => {
  it("defaults every limit to the documented value", () => {
    const o = serve([]);
    expect(resolveConnectionLimits(o)).toEqual(DEFAULT_CONNECTION_LIMITS);
    const c = resolveConfig(o);
    expect(c.core.maxActiveJobsPerClient).toBe(256);
    expect(c.core.limits).toMatchObject({ maxDim: 1 << 20, maxMatrixBytes: 1 << 30, maxJobBytes: 2 ** 31 });
    expect([c.maxLongPollMs, c.maxShardsPerAcquire, c.maxOpenUploads, c.uploadIdleMs]).toEqual([30_000, 1024, 64, 600_000]);
    expect(o.maxDeadlineMs).toBe(24 * 3_600_000);
  });

  it("takes each limit from its flag, and the flag over its environment variable", () => {
    const o = serve(
      [
        "--max-dim=10",
        "--max-job-bytes=4096",
        "--max-active-jobs-per-client=3",
        "--max-connections=7",
        "--idle-timeout-ms=1500",
        "--max-deadline-ms=5000",
        "--max-long-poll-ms=0",
      ],
      { DCE_MAX_CONNECTIONS: "9", DCE_REQUEST_TIMEOUT_MS: "2500" },
    );
    const c = resolveConfig(o);
    expect(c.core.limits.maxDim).toBe(10);
    expect(c.core.limits.maxJobBytes).toBe(4096);
    expect(c.core.maxActiveJobsPerClient).toBe(3);
    expect(c.maxLongPollMs).toBe(0);
    expect(o.maxDeadlineMs).toBe(5000);
    expect(resolveConnectionLimits(o)).toMatchObject({ maxConnections: 7, idleTimeoutMs: 1500, requestTimeoutMs: 2500 });
  });

  it("refuses a bad value in a flag or in the environment with exit code 2", () => {
    expect(parseArgs(["--max-connections=0"], {})).toMatchObject({ ok: false, exitCode: 2 });
    expect(parseArgs(["--idle-timeout-ms=abc"], {})).toMatchObject({ ok: false, exitCode: 2 });
    const env = parseArgs([], { DCE_MAX_DIM: "-1" });
    expect(env).toMatchObject({ ok: false, exitCode: 2 });
    expect(!env.ok && env.usage).toContain("DCE_MAX_DIM");
  });

  it("resolveConfig names a bad programmatic limit", () => {
    expect(() => resolveConfig({ limits: { maxJobBytes: 0 } })).toThrow(/maxJobBytes=0/);
    expect(() => resolveConnectionLimits({ idleTimeoutMs: 5 })).toThrow(/idleTimeoutMs=5/);
  });
});

describe("coordinator failure flags", () => {
  it("--max-shard-deaths defaults to 32, takes the flag over DCE_MAX_SHARD_DEATHS, and 0 turns it off", () => {
    expect(resolveConfig(serve([])).core.maxShardDeaths).toBe(32);
    expect(resolveConfig(serve([], { DCE_MAX_SHARD_DEATHS: "0" })).core.maxShardDeaths).toBe(0);
    expect(resolveConfig(serve(["--max-shard-deaths", "8"], { DCE_MAX_SHARD_DEATHS: "0" })).core.maxShardDeaths).toBe(8);
    expect(resolveConfig(serve(["--max-attempts", "2"])).core).toMatchObject({ maxAttempts: 2, maxShardDeaths: 32 });
    expect(parseArgs(["--max-shard-deaths=-1"], {})).toMatchObject({ ok: false, exitCode: 2 });
    expect(() => resolveConfig({ maxShardDeaths: 1.5 })).toThrow(/maxShardDeaths=1.5/);
  });

  it("--help explains that a worker death is not a failed attempt", () => {
    const r = parseArgs(["--help"], {});
    const text = r.ok && r.command.kind === "print" ? r.command.text.replace(/\s+/g, " ") : "";
    expect(text).toContain("--max-shard-deaths <n>");
    expect(text).toContain("a worker dying with it is not one");
    expect(text).toContain("(env DCE_MAX_SHARD_DEATHS)");
  });
});

describe("coordinator verification flags", () => {
  it("verifies by default, quarantines after 3, picks the thread count itself", () => {
    const c = resolveConfig(serve([]));
    expect(c.verify.enabled).toBe(true);
    expect(c.verify.threads).toBeGreaterThanOrEqual(1);
    expect(c.verify.threads).toBeLessThanOrEqual(4);
    expect(c.core.quarantineAfterRejections).toBe(3);
  });

  it("takes --verify, --verify-threads and --quarantine-after from flags over the environment", () => {
    const fromEnv = resolveConfig(serve([], { DCE_VERIFY: "off", DCE_VERIFY_THREADS: "3", DCE_QUARANTINE_AFTER: "0" }));
    expect([fromEnv.verify.enabled, fromEnv.verify.threads, fromEnv.core.quarantineAfterRejections]).toEqual([false, 3, 0]);
    const flags = resolveConfig(
      serve(["--verify", "on", "--verify-threads", "2", "--quarantine-after", "5"], {
        DCE_VERIFY: "off",
        DCE_QUARANTINE_AFTER: "1",
      }),
    );
    expect([flags.verify.enabled, flags.verify.threads, flags.core.quarantineAfterRejections]).toEqual([true, 2, 5]);
  });

  it("refuses bad values with exit code 2, and resolveConfig names them", () => {
    expect(parseArgs(["--verify", "maybe"], {})).toMatchObject({ ok: false, exitCode: 2 });
    expect(parseArgs(["--quarantine-after=-1"], {})).toMatchObject({ ok: false, exitCode: 2 });
    expect(parseArgs([], { DCE_VERIFY_THREADS: "x" })).toMatchObject({ ok: false, exitCode: 2 });
    expect(() => resolveConfig({ verifyThreads: 0 })).toThrow(/verifyThreads=0/);
    expect(() => resolveConfig({ quarantineAfter: 1.5 })).toThrow(/quarantineAfter=1.5/);
  });
});
