import { describe, expect, it } from "vitest";
import { type CliCommand, DEFAULT_COORDINATOR, type ParseResult, parseArgs } from "./cli-args.js";

const ok = (r: ParseResult): CliCommand => {
  if (!r.ok) throw new Error(`expected ok, got usage: ${r.usage}`);
  return r.command;
};
const usage = (r: ParseResult): { usage: string; exitCode: number } => {
  if (r.ok) throw new Error(`expected a usage error, got ${JSON.stringify(r.command)}`);
  return r;
};
const split = (s: string): string[] => s.split(" ").filter((x) => x !== "");

describe("parseArgs", () => {
  it("parses a waiting submit with defaults", () => {
    expect(ok(parseArgs(split("submit a.npy b.npy -o c.npy"), {}))).toEqual({
      kind: "submit",
      connection: { baseUrl: DEFAULT_COORDINATOR, timeoutMs: 30_000, localStore: "auto" },
      json: false,
      aPath: "a.npy",
      bPath: "b.npy",
      outputPath: "c.npy",
      wait: true,
    });
  });

  it("parses every submit option", () => {
    const cmd = ok(
      parseArgs(
        split(
          "submit a.npy b.npy --no-wait --json --tile 128x256 --kernel blocked --idempotency-key run-1 --priority -7 --coordinator http://localhost:9 --timeout-ms 500 --local-store off",
        ),
        {},
      ),
    );
    expect(cmd).toEqual({
      kind: "submit",
      connection: { baseUrl: "http://localhost:9", timeoutMs: 500, localStore: "off" },
      json: true,
      aPath: "a.npy",
      bPath: "b.npy",
      wait: false,
      tileSize: { rows: 128, cols: 256 },
      kernel: "blocked",
      idempotencyKey: "run-1",
      priority: -7,
    });
  });

  it("reads a square --tile N", () => {
    const cmd = ok(parseArgs(split("submit a b -o c --tile 64"), {}));
    expect(cmd.kind === "submit" && cmd.tileSize).toEqual({ rows: 64, cols: 64 });
  });

  it("falls back to DCE_COORDINATOR, DCE_CA and DCE_TIMEOUT_MS, and the flags win", () => {
    const env = { DCE_COORDINATOR: "https://env:1", DCE_CA: "/env/ca.pem", DCE_TIMEOUT_MS: "1234", DCE_LOCAL_STORE: "off" };
    expect(ok(parseArgs(split("status j1"), env)).connection).toEqual({
      baseUrl: "https://env:1",
      caPath: "/env/ca.pem",
      timeoutMs: 1234,
      localStore: "off",
    });
    expect(
      ok(parseArgs(split("status j1 --coordinator https://flag:2 --ca /flag.pem --timeout-ms 9 --local-store auto"), env))
        .connection,
    ).toEqual({
      baseUrl: "https://flag:2",
      caPath: "/flag.pem",
      timeoutMs: 9,
      localStore: "auto",
    });
    expect(
      ok(parseArgs(split("status j1 --max-message-bytes 8388608"), { DCE_MAX_MESSAGE_BYTES: "1000000" })).connection,
    ).toMatchObject({
      maxMessageBytes: 8_388_608,
    });
    expect(ok(parseArgs(split("status j1"), { DCE_MAX_MESSAGE_BYTES: "1000000" })).connection).toMatchObject({
      maxMessageBytes: 1_000_000,
    });
    // Empty env values count as unset.
    expect(ok(parseArgs(split("status j1"), { DCE_COORDINATOR: "", DCE_CA: "" })).connection).toEqual({
      baseUrl: DEFAULT_COORDINATOR,
      timeoutMs: 30_000,
      localStore: "auto",
    });
  });

  it("parses status, result, cancel and watch", () => {
    expect(ok(parseArgs(split("status j1 --json"), {}))).toMatchObject({ kind: "status", jobId: "j1", json: true });
    expect(ok(parseArgs(split("result j1 -o out.npy"), {}))).toMatchObject({
      kind: "result",
      jobId: "j1",
      outputPath: "out.npy",
    });
    expect(ok(parseArgs(["cancel", "j1", "--reason", "no longer needed"], {}))).toMatchObject({
      kind: "cancel",
      jobId: "j1",
      reason: "no longer needed",
    });
    expect(ok(parseArgs(split("cancel j1"), {}))).not.toHaveProperty("reason");
    expect(ok(parseArgs(split("watch j1"), {}))).toMatchObject({ kind: "watch", jobId: "j1", json: false });
  });

  it.each([
    ["submit a.npy b.npy", /-o\/--output is required unless --no-wait/],
    ["submit a.npy b.npy -o c.npy --no-wait", /cannot be combined with --no-wait/],
    ["submit a.npy -o c.npy", /missing required argument/],
    ["submit a b c -o d", /too many arguments/],
    ["submit a b -o c --tile 0", /--tile must be N or RxC/],
    ["submit a b -o c --tile 4x", /--tile must be N or RxC/],
    ["submit a b -o c --tile -3", /--tile/],
    ["submit a b -o c --kernel=", /--kernel must not be empty/],
    [`submit a b -o c --idempotency-key ${"k".repeat(129)}`, /--idempotency-key must be 1 to 128/],
    ["submit a b -o c --priority 101", /--priority must be an integer from -100 to 100, got '101'/],
    ["submit a b -o c --priority=-101", /--priority must be an integer from -100 to 100/],
    ["submit a b -o c --priority 1.5", /--priority must be an integer from -100 to 100/],
    ["submit a b -o c --priority high", /--priority must be an integer from -100 to 100/],
    ["submit a b -o c --timeout-ms 0", /--timeout-ms must be a positive integer/],
    ["submit a b -o c --timeout-ms 1.5", /--timeout-ms must be a positive integer/],
    ["submit a b -o c --max-message-bytes 65536", /--max-message-bytes must be an integer of bytes above 65536/],
    ["submit a b -o c --max-message-bytes 4MiB", /--max-message-bytes must be an integer/],
    ["status j1 --local-store on", /--local-store\/DCE_LOCAL_STORE must be auto or off, got "on"/],
    ["submit a b -o c --coordinator ftp://x", /must start with https:\/\/ or http:\/\//],
    ["submit a b -o c --coordinator nope", /is not a URL/],
    ["submit a b -o c --coordinator http://x --ca ca.pem", /--ca\/DCE_CA needs an https:\/\/ coordinator/],
    ["result j1", /required option '-o, --output <file>'/],
    ["status", /missing required argument 'ID'/],
    ["status j1 --bogus", /unknown option '--bogus'/],
    ["sumbit a b", /unknown command 'sumbit'/],
  ])("rejects %j with exit code 2", (args, pattern) => {
    const r = usage(parseArgs(split(args), {}));
    expect(r.exitCode).toBe(2);
    expect(r.usage).toMatch(pattern);
    expect(r.usage).toMatch(/--help' for usage/);
  });

  it("reports a bad DCE_TIMEOUT_MS by name", () => {
    const r = usage(parseArgs(split("status j1"), { DCE_TIMEOUT_MS: "soon" }));
    expect(r.exitCode).toBe(2);
    expect(r.usage).toMatch(/DCE_TIMEOUT_MS must be a positive integer/);
  });

  it("prints help with no command as a usage error", () => {
    const r = usage(parseArgs([], {}));
    expect(r.exitCode).toBe(2);
    expect(r.usage).toContain("Usage: dce");
    expect(r.usage).toContain("submit");
  });

  it("--help and --version exit 0 with text for stdout", () => {
    const help = usage(parseArgs(["--help"], {}));
    expect(help.exitCode).toBe(0);
    expect(help.usage).toContain("Commands:");
    const subHelp = usage(parseArgs(["submit", "--help"], {}));
    expect(subHelp.exitCode).toBe(0);
    expect(subHelp.usage).toContain("--idempotency-key <key>");
    const version = usage(parseArgs(["--version"], {}, { version: "1.2.3" }));
    expect(version).toEqual({ ok: false, usage: "1.2.3\n", exitCode: 0 });
  });

  it("is pure: the same input gives the same output and nothing is kept between calls", () => {
    const a = parseArgs(split("submit a b -o c --json"), {});
    const b = parseArgs(split("submit x y --no-wait"), {});
    const c = parseArgs(split("submit a b -o c --json"), {});
    expect(c).toEqual(a);
    expect(ok(b)).toMatchObject({ json: false, wait: false });
  });
});
