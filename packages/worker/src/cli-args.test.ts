import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseArgs } from "./cli-args.js";
import { version } from "./version.js";

const base = ["--coordinator", "https://coord.test:7443"];

function config(argv: string[], env: Record<string, string> = {}) {
  const r = parseArgs(argv, env);
  if (!r.ok) throw new Error(`expected ok, got usage (${r.exitCode}):\n${r.usage}`);
  return r.config;
}

function usage(argv: string[], env: Record<string, string> = {}) {
  const r = parseArgs(argv, env);
  if (r.ok) throw new Error("expected a usage result");
  return r;
}

describe("parseArgs", () => {
  it("fills defaults", () => {
    expect(config(base)).toEqual({
      coordinatorUrl: "https://coord.test:7443",
      caFile: undefined,
      threads: undefined,
      name: undefined,
      cacheBytes: 1024 ** 3,
      localStore: "auto",
      maxMessageBytes: 4 * 1024 * 1024,
      shutdownGraceMs: 10_000,
      retryBudgetMs: 0,
      logLevel: "info",
      logFormat: "auto",
      kernels: "auto",
      chaosCrashRate: 0,
      chaosDelayMs: 0,
      chaosDropRate: 0,
      chaosCorruptRate: 0,
      chaosCrashOnShard: undefined,
      peerTimeoutMs: 3_000,
    });
  });

  it("reads every flag", () => {
    const c = config([
      ...base,
      "--ca",
      "ca.pem",
      "--threads",
      "3",
      "--name",
      "gpu-box",
      "--cache-bytes",
      "0",
      "--local-store",
      "off",
      "--max-message-bytes=8388608",
      "--shutdown-grace-ms",
      "500",
      "--retry-budget-ms",
      "60000",
      "--log-level",
      "debug",
      "--log-format",
      "pretty",
      "--kernels",
      "wasm-simd, reference",
    ]);
    expect(c).toMatchObject({
      caFile: "ca.pem",
      threads: 3,
      name: "gpu-box",
      cacheBytes: 0,
      localStore: "off",
      maxMessageBytes: 8_388_608,
      shutdownGraceMs: 500,
      retryBudgetMs: 60_000,
      logLevel: "debug",
      logFormat: "pretty",
      kernels: ["wasm-simd", "reference"],
    });
  });

  it("falls back to the environment, and a flag wins over it", () => {
    const env = {
      DCE_COORDINATOR: "http://localhost:7000",
      DCE_CA: "/etc/dce/ca.pem",
      DCE_WORKER_THREADS: "8",
      DCE_WORKER_NAME: "from-env",
      DCE_CACHE_BYTES: "1000",
      DCE_MAX_MESSAGE_BYTES: "1048576",
      DCE_SHUTDOWN_GRACE_MS: "1",
      DCE_RETRY_BUDGET_MS: "2",
      DCE_LOG_LEVEL: "warn",
      DCE_LOG_FORMAT: "json",
      DCE_WORKER_KERNELS: "native-blas,wasm-simd",
      DCE_CHAOS_CRASH_RATE: "0.2",
      DCE_CHAOS_DELAY_MS: "50",
      DCE_CHAOS_DROP_RATE: "0.1",
      DCE_CHAOS_CORRUPT_RATE: "0.3",
      DCE_CHAOS_CRASH_ON_SHARD: "21",
      DCE_LOCAL_STORE: "off",
    };
    expect(config([], env)).toEqual({
      coordinatorUrl: "http://localhost:7000",
      caFile: "/etc/dce/ca.pem",
      threads: 8,
      name: "from-env",
      cacheBytes: 1000,
      localStore: "off",
      maxMessageBytes: 1_048_576,
      shutdownGraceMs: 1,
      retryBudgetMs: 2,
      logLevel: "warn",
      logFormat: "json",
      kernels: ["native-blas", "wasm-simd"],
      chaosCrashRate: 0.2,
      chaosDelayMs: 50,
      chaosDropRate: 0.1,
      chaosCorruptRate: 0.3,
      chaosCrashOnShard: 21,
      peerTimeoutMs: 3_000,
    });
    const c = config(
      [...base, "--threads", "2", "--log-level", "error", "--kernels", "auto", "--chaos-crash-on-shard", "0"],
      env,
    );
    expect(c.chaosCrashOnShard).toBe(0);
    expect(c.coordinatorUrl).toBe("https://coord.test:7443");
    expect(c.threads).toBe(2);
    expect(c.logLevel).toBe("error");
    expect(c.name).toBe("from-env");
    expect(c.kernels).toBe("auto");
  });

  it("rejects an unknown log format, from a flag or the environment", () => {
    expect(usage([...base, "--log-format", "xml"]).usage).toContain('--log-format must be one of auto, json, pretty, got "xml"');
    expect(usage(base, { DCE_LOG_FORMAT: "text" }).usage).toContain('got "text"');
  });

  it("rejects chaos rates outside [0, 1]", () => {
    for (const bad of ["1.5", "-0.1", "x"]) {
      const r = parseArgs([...base, "--chaos-crash-rate", bad], {});
      expect(r.ok).toBe(false);
    }
    expect(parseArgs([...base, "--chaos-drop-rate", "2"], {}).ok).toBe(false);
    expect(parseArgs([...base, "--chaos-corrupt-rate", "1.01"], {}).ok).toBe(false);
    expect(parseArgs([...base, "--chaos-corrupt-rate", "0.25"], {})).toMatchObject({
      ok: true,
      config: { chaosCorruptRate: 0.25 },
    });
  });

  it("--chaos-crash-on-shard takes a shard index (an integer >= 0)", () => {
    for (const bad of ["-1", "1.5", "x"]) {
      expect(usage([...base, "--chaos-crash-on-shard", bad]).usage).toContain(
        `--chaos-crash-on-shard must be an integer >= 0, got "${bad}"`,
      );
    }
    expect(config([...base, "--chaos-crash-on-shard", "7"]).chaosCrashOnShard).toBe(7);
  });

  it("treats an empty environment variable as unset", () => {
    expect(config(base, { DCE_WORKER_THREADS: "" }).threads).toBeUndefined();
  });

  it("--help and --version print to stdout and exit 0", () => {
    const help = usage(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.usage).toMatch(/Usage: worker/);
    expect(help.usage).toMatch(/--coordinator <url>/);
    expect(help.usage).toMatch(/DCE_WORKER_THREADS/);
    const v = usage(["--version"]);
    expect(v).toEqual({ ok: false, usage: `${version}\n`, exitCode: 0 });
  });

  it.each([
    [[], {}, /--coordinator .* is required/],
    [["--coordinator", "ftp://x"], {}, /http:\/\/ or https:\/\//],
    [["--coordinator", "not a url"], {}, /http:\/\/ or https:\/\//],
    [[...base, "--threads", "0"], {}, /--threads must be an integer >= 1, got "0"/],
    [[...base, "--threads", "2.5"], {}, /--threads must be an integer/],
    [[...base], { DCE_WORKER_THREADS: "many" }, /--threads must be an integer/],
    [[...base, "--cache-bytes", "-1"], {}, /--cache-bytes/],
    [[...base, "--max-message-bytes", "1000"], {}, /--max-message-bytes must be an integer >= 65536/],
    [[...base, "--local-store", "on"], {}, /--local-store must be auto or off, got "on"/],
    [[...base, "--log-level", "loud"], {}, /--log-level must be one of/],
    [
      [...base, "--kernels", "simd"],
      {},
      /--kernels: unknown kernel "simd" \(known: auto, native-avx512, native-blas, wasm-simd, reference\)/,
    ],
    [[...base, "--kernels", "reference,auto"], {}, /--kernels: unknown kernel "auto"/],
    [[...base, "--kernels", "reference,,wasm-simd"], {}, /--kernels: unknown kernel ""/],
    [[...base, "--kernels", "reference,reference"], {}, /"reference" is listed twice/],
    [[...base, "--bogus"], {}, /unknown option '--bogus'/],
    [[...base, "extra"], {}, /too many arguments/],
    [[...base, "--threads"], {}, /argument missing/],
  ] as const)("rejects %j %j with exit code 2", (argv, env, message) => {
    const r = usage([...argv], env);
    expect(r.exitCode).toBe(2);
    expect(r.usage).toMatch(message);
    expect(r.usage).toMatch(/Usage: worker/);
  });

  it("reports every problem at once", () => {
    const r = usage(["--coordinator", "https://x", "--threads", "0", "--log-level", "x"]);
    expect(r.usage).toMatch(/--threads/);
    expect(r.usage).toMatch(/--log-level/);
  });

  it("version matches package.json", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(version).toBe(pkg.version);
  });
});
