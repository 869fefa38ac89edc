import { describe, expect, it } from "vitest";
import { parseArgs } from "./args.js";
import { parseByteSize, parseDuration } from "./args-storage.js";
import { resolveConfig } from "./server.js";

const serve = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseArgs(argv, env);
  if (!r.ok) throw new Error(`usage: ${r.usage}`);
  if (r.command.kind !== "serve") throw new Error("not serve");
  return r.command.options;
};

describe("coordinator flags for the data dir's upkeep", () => {
  it("parses durations and sizes with units", () => {
    expect(parseDuration("--x", "250ms")).toBe(250);
    expect(parseDuration("--x", "90s")).toBe(90_000);
    expect(parseDuration("--x", "15m")).toBe(900_000);
    expect(parseDuration("--x", "1h")).toBe(3_600_000);
    expect(parseDuration("--x", "7d")).toBe(604_800_000);
    expect(parseDuration("--x", "0")).toBe(0);
    expect(parseByteSize("--x", "512MiB")).toBe(512 * 1024 ** 2);
    expect(parseByteSize("--x", "2GiB")).toBe(2 * 1024 ** 3);
    expect(parseByteSize("--x", "1.5gib")).toBe(1.5 * 1024 ** 3);
    expect(parseByteSize("--x", "1GB")).toBe(1e9);
    expect(parseByteSize("--x", "4096")).toBe(4096);
    expect(() => parseDuration("--blob-grace", "soon")).toThrow(
      "--blob-grace must be a duration like 90s, 15m, 1h or 250ms, got 'soon'",
    );
    expect(() => parseByteSize("--min-free-bytes", "-1GiB")).toThrow("--min-free-bytes must be a size like 512MiB");
    expect(() => parseByteSize("--min-free-bytes", "2 parsecs")).toThrow("got '2 parsecs'");
  });

  it("defaults to a 1 h grace, a pass every 60 s and the automatic watermark", () => {
    const o = serve([]);
    expect(o).toMatchObject({ blobGraceMs: 3_600_000, gcIntervalMs: 60_000 });
    expect(o.minFreeBytes).toBeUndefined();
    const config = resolveConfig(o);
    expect(config.gc).toEqual({ graceMs: 3_600_000, intervalMs: 60_000 });
    expect(config.minFreeBytes).toBeUndefined();
  });

  it("takes the flags, or DCE_* when a flag is absent; the flag wins", () => {
    expect(serve(["--blob-grace", "30s", "--gc-interval", "5s", "--min-free-bytes", "512MiB"])).toMatchObject({
      blobGraceMs: 30_000,
      gcIntervalMs: 5_000,
      minFreeBytes: 512 * 1024 ** 2,
    });
    const env = { DCE_BLOB_GRACE: "2m", DCE_GC_INTERVAL: "0", DCE_MIN_FREE_BYTES: "2GiB" };
    expect(serve([], env)).toMatchObject({ blobGraceMs: 120_000, gcIntervalMs: 0, minFreeBytes: 2 * 1024 ** 3 });
    expect(serve(["--min-free-bytes", "0"], env)).toMatchObject({ minFreeBytes: 0 });
    expect(serve(["--min-free-bytes", "auto"], env).minFreeBytes).toBeUndefined();
  });

  it("refuses bad values with exit code 2, naming the flag or variable", () => {
    const r = parseArgs(["--gc-interval", "often"], {});
    expect(r).toMatchObject({ ok: false, exitCode: 2 });
    expect(r.ok ? "" : r.usage).toContain("--gc-interval must be a duration");
    const e = parseArgs([], { DCE_MIN_FREE_BYTES: "lots" });
    expect(e).toMatchObject({ ok: false, exitCode: 2 });
    expect(e.ok ? "" : e.usage).toContain("DCE_MIN_FREE_BYTES: --min-free-bytes must be a size");
    expect(() => resolveConfig({ blobGraceMs: -1 })).toThrow("blobGraceMs=-1; it must be an integer >= 0");
  });
});
