import { describe, expect, it } from "vitest";
import { parseArgs } from "./args.js";
import { resolveConfig } from "./server.js";

const serve = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseArgs(argv, env);
  if (!r.ok) throw new Error(`usage: ${r.usage}`);
  if (r.command.kind !== "serve") throw new Error(`expected serve, got ${r.command.kind}`);
  return r.command.options;
};

describe("coordinator retention flags", () => {
  it("keeps finished jobs 7 days by default, and lets a job ask for up to 30 days", () => {
    expect(serve([])).toMatchObject({ retentionMs: 7 * 86_400_000, maxRetentionMs: 30 * 86_400_000 });
    expect(resolveConfig(serve([])).core).toMatchObject({ retentionMs: 7 * 86_400_000, maxRetentionMs: 30 * 86_400_000 });
  });

  it("takes durations with units, from the flag or from DCE_RETENTION / DCE_MAX_RETENTION; the flag wins", () => {
    expect(serve(["--retention", "5s", "--max-retention", "1h"])).toMatchObject({
      retentionMs: 5_000,
      maxRetentionMs: 3_600_000,
    });
    expect(serve([], { DCE_RETENTION: "30m", DCE_MAX_RETENTION: "2d" })).toMatchObject({
      retentionMs: 1_800_000,
      maxRetentionMs: 172_800_000,
    });
    expect(serve(["--retention", "10s"], { DCE_RETENTION: "30m" })).toMatchObject({ retentionMs: 10_000 });
  });

  it("refuses a value without a unit, under 1 s, or a bad environment value, with exit code 2", () => {
    for (const argv of [
      ["--retention", "5"],
      ["--retention", "500ms"],
      ["--max-retention", "7w"],
      ["--retention", "-1d"],
    ]) {
      const r = parseArgs(argv, {});
      expect(r, argv.join(" ")).toMatchObject({ ok: false, exitCode: 2 });
      if (!r.ok) expect(r.usage).toContain(argv[0]);
    }
    const env = parseArgs([], { DCE_RETENTION: "soon" });
    expect(env).toMatchObject({ ok: false, exitCode: 2 });
    if (!env.ok) expect(env.usage).toContain("DCE_RETENTION");
  });

  it("a default retention above the maximum is a usage error, and refused when the config is resolved", () => {
    const r = parseArgs(["--retention", "40d"], {});
    expect(r).toMatchObject({ ok: false, exitCode: 2 });
    if (!r.ok) expect(r.usage).toContain("--retention 40d is above --max-retention 30d");
    expect(() => resolveConfig({ retentionMs: 40 * 86_400_000, maxRetentionMs: 30 * 86_400_000 })).toThrow(
      /retentionMs=3456000000 is above maxRetentionMs/,
    );
    expect(resolveConfig(serve(["--retention", "40d", "--max-retention", "40d"])).core.retentionMs).toBe(3_456_000_000);
  });
});
