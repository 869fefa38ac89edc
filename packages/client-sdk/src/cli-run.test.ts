import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { type CliCommand, parseArgs } from "./cli-args.js";
import { type CliDeps, codeName, formatEta, runCommand } from "./cli-run.js";
import { type ClientOptions, createClient } from "./client.js";
import { Code } from "./index.js";
import { encodeNpy, parseNpy } from "./npy.js";
import { type JobDriver, type JobDriverOptions, type JobStep, startJobDriver } from "./test-support/job-driver.js";
import { matmul } from "./test-support/oracle.js";

const drivers: JobDriver[] = [];
afterEach(async () => {
  await Promise.all(drivers.splice(0).map((d) => d.close()));
});

/** The CLI's dependencies over the real coordinator in memory, whose jobs a scripted worker moves along. */
async function fixture(files: Record<string, Uint8Array>, driverOptions: JobDriverOptions = {}) {
  const driver = await startJobDriver(driverOptions);
  drivers.push(driver);
  const h = driver.h;
  const fs = new Map(Object.entries(files));
  const clientOptions: ClientOptions[] = [];
  let stdout = "";
  let stderr = "";
  const controller = new AbortController();
  const deps: CliDeps = {
    createClient: (options) => {
      clientOptions.push(options);
      return createClient({ ...options, transport: h.transport });
    },
    readFile: async (path) => {
      const bytes = fs.get(path);
      if (bytes === undefined) {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: "ENOENT" });
      }
      return bytes;
    },
    writeFile: async (path, parts) => {
      fs.set(path, Buffer.concat(parts));
    },
    stdout: { write: (s) => (stdout += s) },
    stderr: { write: (s) => (stderr += s) },
    signal: controller.signal,
    intervals: { pollMs: 0, watchMs: 0, lineMs: 0 },
  };
  const run = async (args: string, extra: Partial<CliDeps> = {}): Promise<number> => {
    const parsed = parseArgs(args.split(" "), {});
    if (!parsed.ok) throw new Error(parsed.usage);
    return await runCommand(parsed.command as CliCommand, { ...deps, ...extra });
  };
  return {
    h,
    driver,
    fs,
    run,
    clientOptions,
    controller,
    out: () => stdout,
    err: () => stderr,
  };
}

const npy = (rows: number, cols: number, f = (i: number) => i + 1): Uint8Array =>
  encodeNpy({ rows, cols, data: Float64Array.from({ length: rows * cols }, (_, i) => f(i)) });

describe("dce submit", () => {
  it("prints the job id first, waits, and writes C (exit 0)", async () => {
    const t = await fixture({ "a.npy": npy(3, 4), "b.npy": npy(4, 2, (i) => i - 3) });
    const code = await t.run("submit a.npy b.npy -o c.npy --coordinator http://x:1 --tile 2");
    expect(code).toBe(0);
    const lines = t.out().split("\n");
    expect(lines[0]).toBe("job-1");
    const c = parseNpy(t.fs.get("c.npy") ?? new Uint8Array());
    const a = parseNpy(t.fs.get("a.npy") ?? new Uint8Array());
    const b = parseNpy(t.fs.get("b.npy") ?? new Uint8Array());
    expect([c.rows, c.cols]).toEqual([3, 2]);
    expect(c.data).toEqual(matmul(a.data, b.data, 3, 4, 2));
    expect(t.clientOptions[0]).toEqual({ baseUrl: "http://x:1", timeoutMs: 30_000, useLocalStore: true });
    expect(t.h.calls.of("submitJob")[0]?.request["matmul"]).toMatchObject({ tileRows: 2, tileCols: 2 });
  });

  it("--priority reaches the submit, and status shows it", async () => {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) });
    expect(await t.run("submit a.npy b.npy --no-wait --priority 42")).toBe(0);
    expect(t.h.calls.of("submitJob")[0]?.request["priority"]).toBe(42);
    expect(await t.run("status job-1")).toBe(0);
    expect(t.out()).toMatch(/^priority +42$/m);
  });

  it("--no-wait prints only the job id", async () => {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) });
    expect(await t.run("submit a.npy b.npy --no-wait")).toBe(0);
    expect(t.out()).toBe("job-1\n");
    expect(t.h.calls.of("getJob")).toEqual([]);
  });

  it("--json prints the job id as JSON first and a final JSON summary", async () => {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) });
    expect(await t.run("submit a.npy b.npy -o c.npy --json")).toBe(0);
    const lines = t
      .out()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({ jobId: "job-1" });
    expect(lines.at(-1)).toEqual({ jobId: "job-1", state: "succeeded", output: "c.npy", rows: 2, cols: 2 });
  });

  it.each([
    [
      "inner dimensions",
      { "a.npy": npy(3, 4), "b.npy": npy(5, 2) },
      "error: inner dimensions do not match: A is 3x4, B is 5x2\n",
    ],
    ["missing file", { "a.npy": npy(2, 2) }, "error: cannot read b.npy: no such file\n"],
    [
      "zero-sized",
      { "a.npy": npy(0, 2), "b.npy": npy(2, 2) },
      "error: a.npy: A is empty (0x2); rows and cols must be at least 1\n",
    ],
    [
      "bad dtype",
      {
        "a.npy": npy(2, 2),
        "b.npy": (() => {
          const b = npy(2, 2);
          b.set(new TextEncoder().encode("<i8"), 21);
          return b;
        })(),
      },
      "error: b.npy: dtype '<i8' is not supported; expected float64 ('<f8', '>f8') or float32 ('<f4', '>f4')\n",
    ],
    [
      "not npy",
      { "a.npy": new TextEncoder().encode("hello"), "b.npy": npy(2, 2) },
      "error: a.npy: not a .npy file: bad magic (expected \\x93NUMPY)\n",
    ],
  ])("input problem (%s): one line on stderr, exit 2, no RPC", async (_name, files, message) => {
    const t = await fixture(files);
    expect(await t.run("submit a.npy b.npy -o c.npy")).toBe(2);
    expect(t.err()).toBe(message);
    expect(t.out()).toBe("");
    expect(t.h.calls.all).toEqual([]);
  });

  it("a missing CA file is an input problem (exit 2)", async () => {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) });
    expect(await t.run("submit a.npy b.npy -o c.npy --ca nope.pem")).toBe(2);
    expect(t.err()).toBe("error: cannot read --ca / DCE_CA file nope.pem: no such file\n");
  });

  it("a CA file that is not PEM is an input problem (exit 2) naming --ca and the file; nothing is sent", async () => {
    const t = await fixture({
      "a.npy": npy(2, 2),
      "b.npy": npy(2, 2),
      "ca.der": Uint8Array.of(0x30, 0x82, 0x01),
      "ca.txt": npy(1, 1),
    });
    expect(await t.run("submit a.npy b.npy -o c.npy --ca ca.der")).toBe(2);
    expect(t.err()).toMatch(/^error: --ca \/ DCE_CA file ca\.der is DER, not PEM \(convert it/);
    expect(await t.run("status j1 --ca ca.txt")).toBe(2);
    expect(t.err()).toContain("error: --ca / DCE_CA file ca.txt is not PEM: it has no -----BEGIN CERTIFICATE----- block\n");
    expect(t.clientOptions).toEqual([]);
    expect(t.h.calls.all).toEqual([]);
  });

  it("a failed job exits 1 with the reason, and writes nothing", async () => {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) }, { script: () => ["start", { fail: "worker crashed" }] });
    expect(await t.run("submit a.npy b.npy -o c.npy")).toBe(1);
    expect(t.out()).toBe("job-1\n");
    // The reason is the coordinator's, ending with the worker's error.
    expect(t.err().trim().split("\n").at(-1)).toMatch(/^error: job job-1 failed: .*worker crashed$/);
    expect(t.fs.has("c.npy")).toBe(false);
  });

  it("draws a progress bar when stderr is a terminal", async () => {
    const t = await fixture({ "a.npy": npy(4, 4), "b.npy": npy(4, 4) });
    let drawn = "";
    const tty = Object.assign(
      new Writable({
        write(chunk: Buffer, _enc, done) {
          drawn += chunk.toString();
          done();
        },
      }),
      { isTTY: true, columns: 120 },
    );
    expect(await t.run("submit a.npy b.npy -o c.npy", { stderrTty: tty })).toBe(0);
    expect(drawn).toContain("4/4 shards (100%)");
    expect(drawn).toContain("succeeded");
    expect(t.err()).not.toContain("shards ("); // no plain lines when a bar is drawn
    expect(t.err()).toBe("wrote c.npy (4x4)\n");
  });

  it("prints plain progress lines on a non-terminal stderr; stdout keeps only the job id", async () => {
    const t = await fixture(
      { "a.npy": npy(4, 4), "b.npy": npy(4, 4) },
      {
        script: () => [["start", { complete: 1 }], { complete: 1 }, { complete: 1 }, [{ complete: 1 }, "seal"]],
      },
    );
    expect(await t.run("submit a.npy b.npy -o c.npy --tile 2")).toBe(0);
    expect(t.out()).toBe("job-1\n");
    expect(t.fs.has("c.npy")).toBe(true);
    const lines = t.err().trimEnd().split("\n");
    // With the line interval at 0 every figure progress() yields is a line.
    expect(lines).toEqual([
      "job job-1 queued 0/4 shards (0.0%)",
      expect.stringMatching(/^job job-1 running 1\/4 shards \(25\.0%\) [0-9.]+ shards\/s( eta [0-9.]+s)?$/),
      expect.stringMatching(/^job job-1 running 2\/4 shards \(50\.0%\)/),
      expect.stringMatching(/^job job-1 running 3\/4 shards \(75\.0%\)/),
      expect.stringMatching(/^job job-1 succeeded 4\/4 shards \(100\.0%\) [0-9.]+ shards\/s( in [0-9.]+s)?$/),
      "wrote c.npy (4x4)",
    ]);
  });

  it("paces plain lines: the first, each change of state, the end, and otherwise one per interval", async () => {
    const script = (): JobStep[] => [
      ["start", { complete: 1 }],
      ...Array.from({ length: 5 }, () => ({ complete: 1 })),
      [{ complete: 2 }, "seal"],
    ];
    // 8 x 4 by 4 x 4 in 2 x 2 tiles: 8 shards.
    const t = await fixture({ "a.npy": npy(8, 4), "b.npy": npy(4, 4) }, { script });
    let now = 0;
    // Every poll advances the clock by 1 s; lines may come every 2.5 s.
    const nowMs = () => (now += 1_000);
    expect(
      await t.run("submit a.npy b.npy -o c.npy --tile 2", { nowMs, intervals: { pollMs: 0, watchMs: 0, lineMs: 2_500 } }),
    ).toBe(0);
    const states = t
      .err()
      .trimEnd()
      .split("\n")
      .map((l) => /^job job-1 (\w+) (\d+)\//.exec(l)?.slice(1, 3).join(" "));
    // queued at t=1, running (new state) at t=2, then t=5 (3 s later), then succeeded at the end.
    expect(states).toEqual(["queued 0", "running 1", "running 4", "succeeded 8", undefined]);
  });
});

describe("dce status, result, cancel, watch", () => {
  async function submitted(driverOptions: JobDriverOptions = {}) {
    const t = await fixture({ "a.npy": npy(2, 2), "b.npy": npy(2, 2) }, driverOptions);
    expect(await t.run("submit a.npy b.npy --no-wait")).toBe(0);
    return t;
  }

  it("status prints text and JSON", async () => {
    const t = await submitted({ script: () => [] });
    expect(await t.run("status job-1")).toBe(0);
    expect(t.out()).toContain("state    queued\n");
    expect(t.out()).toContain("shards   0/1 done, 0 leased, 0 retried\n");
    expect(await t.run("status job-1 --json")).toBe(0);
    const json = JSON.parse(t.out().trim().split("\n").at(-1) ?? "") as Record<string, unknown>;
    expect(json).toMatchObject({ jobId: "job-1", state: "queued", shardsTotal: 1 });
  });

  it("an RPC failure prints 'error: <code>: <message>' and exits 1", async () => {
    const t = await fixture({});
    expect(await t.run("status nope")).toBe(1);
    expect(t.err()).toBe("error: not_found: job nope not found\n");
  });

  it("result waits and writes C", async () => {
    const t = await submitted();
    expect(await t.run("result job-1 -o out.npy")).toBe(0);
    expect(parseNpy(t.fs.get("out.npy") ?? new Uint8Array()).data).toEqual(new Float64Array([7, 10, 15, 22]));
  });

  it("cancel prints the new state; result then exits 1", async () => {
    const t = await submitted({ script: () => [] });
    expect(await t.run("cancel job-1 --reason stop")).toBe(0);
    expect(t.out()).toBe("job-1\njob-1 cancelled\n");
    expect(await t.run("result job-1 -o out.npy")).toBe(1);
    expect(t.err()).toContain("error: job job-1 cancelled: stop\n");
  });

  it("watch prints progress until the job ends (exit 0 on success, 1 otherwise)", async () => {
    const t = await submitted({ script: () => ["start", [{ complete: 1 }, "seal"]] });
    expect(await t.run("watch job-1")).toBe(0);
    expect(t.out().split("\n").slice(1, -1)).toEqual([
      "job job-1 queued 0/1 shards (0.0%)",
      expect.stringMatching(/^job job-1 running 0\/1 shards \(0\.0%\)/),
      expect.stringMatching(/^job job-1 succeeded 1\/1 shards \(100\.0%\)/),
    ]);
    const failing = await submitted({ script: () => [["start", { fail: "x" }]] });
    expect(await failing.run("watch job-1")).toBe(1);
    expect(failing.out().trimEnd().split("\n").at(-1)).toMatch(/^job job-1 failed 0\/1 shards \(0\.0%\).*: x$/);
  });

  it("watch --json prints each progress figure as a JSON object", async () => {
    const t = await submitted({ script: () => [["start", { complete: 1 }, "seal"]] });
    expect(await t.run("watch job-1 --json")).toBe(0);
    const objects = t
      .out()
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects.at(-1)).toMatchObject({ jobId: "job-1", state: "succeeded", shardsDone: 1, shardsTotal: 1, etaMs: 0 });
  });

  it("watch on a terminal draws the bar on stderr and prints the final line on stdout", async () => {
    const t = await submitted({ script: () => ["start", [{ complete: 1 }, "seal"]] });
    let drawn = "";
    const tty = Object.assign(
      new Writable({
        write(chunk: Buffer, _enc, done) {
          drawn += chunk.toString();
          done();
        },
      }),
      { isTTY: true, columns: 120 },
    );
    expect(await t.run("watch job-1", { stderrTty: tty })).toBe(0);
    expect(drawn).toContain("1/1 shards (100%)");
    expect(t.out().split("\n").slice(1, -1)).toEqual([expect.stringMatching(/^job job-1 succeeded 1\/1 shards \(100\.0%\)/)]);
  });

  it("an aborted wait leaves the job running and exits 1", async () => {
    const t = await submitted({ script: () => [] });
    const blocked = t.driver.nextBlockedPoll();
    const running = t.run("result job-1 -o out.npy");
    await blocked;
    t.controller.abort();
    expect(await running).toBe(1);
    expect(t.err()).toContain("job job-1 keeps running");
    expect(t.err()).toMatch(/error: canceled: /);
    expect(t.h.calls.of("cancelJob")).toEqual([]);
  });
});

describe("formatting helpers", () => {
  it("codeName matches the wire spelling", () => {
    expect(codeName(Code.DeadlineExceeded)).toBe("deadline_exceeded");
    expect(codeName(Code.NotFound)).toBe("not_found");
    expect(codeName(Code.Unavailable)).toBe("unavailable");
  });

  it("formatEta", () => {
    expect(formatEta(undefined)).toBe("-");
    expect(formatEta(0)).toBe("0.0s");
    expect(formatEta(6_740)).toBe("6.7s");
    expect(formatEta(9_960)).toBe("10s");
    expect(formatEta(17_000)).toBe("17s");
    expect(formatEta(185_000)).toBe("3m05s");
    expect(formatEta(3_720_000)).toBe("1h02m");
  });
});
