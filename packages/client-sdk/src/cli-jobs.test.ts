import { type InMemoryCoordinator, startInMemoryCoordinator } from "@dce/coordinator/testing";
import { afterEach, describe, expect, it } from "vitest";
import { parseArgs } from "./cli-args.js";
import { type CliDeps, runCommand } from "./cli-run.js";
import { formatJobTable } from "./cli-run-jobs.js";
import { createClient } from "./client.js";
import { encodeNpy } from "./npy.js";

// `dce list`, `dce delete` and `dce submit --retention`, parsed and run against the real
// coordinator in memory.

const open: InMemoryCoordinator[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

const one = encodeNpy({ rows: 1, cols: 1, data: Float64Array.of(3) });

async function fixture() {
  const h = await startInMemoryCoordinator();
  open.push(h);
  let stdout = "";
  let stderr = "";
  const deps: CliDeps = {
    createClient: (options) => createClient({ ...options, transport: h.transport }),
    readFile: async () => one,
    writeFile: async () => {},
    stdout: { write: (s) => (stdout += s) },
    stderr: { write: (s) => (stderr += s) },
    signal: new AbortController().signal,
    intervals: { pollMs: 0, watchMs: 0, lineMs: 0 },
  };
  const run = async (args: string): Promise<number> => {
    stdout = "";
    stderr = "";
    const parsed = parseArgs(`${args} --coordinator http://x:1`.split(" "), {});
    if (!parsed.ok) throw new Error(parsed.usage);
    return await runCommand(parsed.command, deps);
  };
  const submit = async (extra = "") => {
    expect(await run(`submit a.npy b.npy --no-wait ${extra}`.trim())).toBe(0);
    return stdout.trim();
  };
  return { h, run, submit, out: () => stdout, err: () => stderr };
}

describe("dce list", () => {
  it("prints a table of jobs, newest first, with --state and --limit", async () => {
    const t = await fixture();
    const a = await t.submit();
    const b = await t.submit();
    expect(await t.run(`cancel ${a}`)).toBe(0);
    expect(await t.run("list")).toBe(0);
    const lines = t.out().trimEnd().split("\n");
    expect(lines[0]).toMatch(/^JOB +STATE +SHARDS +SIZE +CREATED +EXPIRES +OWNER$/);
    const ids = lines.slice(1).map((l) => l.split(/ +/)[0]);
    expect(new Set(ids)).toEqual(new Set([a, b]));
    expect(await t.run("list --state cancelled")).toBe(0);
    expect(t.out()).toContain(`${a} `);
    expect(t.out()).not.toContain(`${b} `);
    expect(await t.run("list --state running,queued --json")).toBe(0);
    expect(
      t
        .out()
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l).jobId),
    ).toEqual([b]);
    expect(await t.run("list --limit 1 --json")).toBe(0);
    expect(t.out().trimEnd().split("\n")).toHaveLength(1);
  });

  it("fetches no more pages than --limit needs", async () => {
    const t = await fixture();
    for (let i = 0; i < 3; i++) await t.submit();
    const before = t.h.calls.of("listJobs").length;
    expect(await t.run("list --limit 2 --json")).toBe(0);
    expect(t.h.calls.of("listJobs").length - before).toBe(1);
    expect(t.h.calls.of("listJobs").at(-1)?.request["pageSize"]).toBe(2);
  });

  it("refuses unknown states and bad limits as usage errors (exit 2)", () => {
    for (const args of ["list --state done", "list --limit 0", "list --limit x", "submit a b --no-wait --retention 5"]) {
      expect(parseArgs(args.split(" "), {}), args).toMatchObject({ ok: false, exitCode: 2 });
    }
  });

  it("the table shows '-' for the expiry of a running job, and the expiry of a finished one", () => {
    const base = { shardsDone: 0, shardsTotal: 1, shardsLeased: 0, shardsRetried: 0, rows: 1, cols: 1, tileRows: 1, priority: 0 };
    const table = formatJobTable([
      { ...base, jobId: "j1", state: "queued", createdAtMs: 0, kernel: "", tileCols: 1, version: 1, owner: "ann" },
      {
        ...base,
        jobId: "j2",
        state: "cancelled",
        createdAtMs: 0,
        kernel: "",
        tileCols: 1,
        version: 2,
        owner: "ann",
        expiresAtMs: 86_400_000,
      },
    ]);
    expect(table.split("\n")[1]).toMatch(/^j1 +queued +0\/1 +1x1 +1970-01-01T00:00:00Z +- +ann$/);
    expect(table.split("\n")[2]).toContain("1970-01-02T00:00:00Z");
  });
});

describe("dce delete and submit --retention", () => {
  it("deletes a job; deleting it again is NOT_FOUND (exit 1)", async () => {
    const t = await fixture();
    const id = await t.submit();
    expect(await t.run(`delete ${id}`)).toBe(0);
    expect(t.out()).toBe(`${id} deleted\n`);
    expect(await t.run(`delete ${id}`)).toBe(1);
    expect(t.err()).toContain("not_found: job");
    expect(await t.run(`status ${id}`)).toBe(1);
  });

  it("sends --retention as retention_ms; dce status shows the owner, and the expiry once finished", async () => {
    const t = await fixture();
    const id = await t.submit("--retention 90m");
    expect(t.h.calls.of("submitJob").at(-1)?.request["retentionMs"]).toBe(5_400_000n);
    expect(await t.run(`status ${id}`)).toBe(0);
    expect(t.out()).toContain("expires  -\n");
    expect(t.out()).toContain("owner    anonymous\n");
    expect(await t.run(`cancel ${id}`)).toBe(0);
    expect(await t.run(`status ${id} --json`)).toBe(0);
    const s = JSON.parse(t.out()) as { finishedAtMs: number; expiresAtMs: number };
    expect(s.expiresAtMs).toBe(s.finishedAtMs + 5_400_000);
    expect(await t.run(`status ${id}`)).toBe(0);
    expect(t.out()).toContain(`expires  ${new Date(s.expiresAtMs).toISOString()}\n`);
  });
});
