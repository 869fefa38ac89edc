import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeNpy } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, type Cluster, startCluster } from "../support/cluster.js";

// Retention, `dce list` and `dce delete` through the bins, as a new user would: real
// tokens (isolation between clients, an admin who sees everyone), a coordinator with
// `--retention 8s`, and a restart that must not bring a deleted job back.

const dir = mkdtempSync(join(tmpdir(), "dce-lifecycle-"));
let cluster: Cluster;
let alice: string;
let bob: string;

beforeAll(async () => {
  const m = (rows: number, cols: number) =>
    encodeNpy({ rows, cols, data: Float64Array.from({ length: rows * cols }, (_, i) => (i % 5) - 2) });
  writeFileSync(join(dir, "A.npy"), m(8, 6));
  writeFileSync(join(dir, "B.npy"), m(6, 4));
  cluster = await startCluster({ workers: 1, extraCoordinatorArgs: ["--retention", "8s"] });
  [alice, bob] = await Promise.all([cluster.tokens("add", "alice"), cluster.tokens("add", "bob")]);
}, 120_000);
afterAll(async () => {
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `dce ARGS` with `token`; the child is killed by its own timeout if it hangs. */
function dce(token: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN.dce, ...args], {
      cwd: dir,
      env: { ...process.env, DCE_COORDINATOR: cluster.url, DCE_CA: cluster.caPath, DCE_TOKEN: token },
      timeout: 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const jsonLines = (text: string) =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { jobId: string; state: string; owner: string; expiresAtMs?: number; finishedAtMs?: number });

describe("jobs come and go through the bins", () => {
  test("isolation, admin listing, retention of 8 s, dce delete, and a restart that brings nothing back", async () => {
    const long = await dce(alice, ["submit", "A.npy", "B.npy", "-o", "C2.npy", "--retention", "1h"]);
    expect(long.code, long.stderr).toBe(0);
    const longId = long.stdout.split("\n")[0] as string;
    const short = await dce(alice, ["submit", "A.npy", "B.npy", "-o", "C1.npy"]);
    expect(short.code, short.stderr).toBe(0);
    const shortId = short.stdout.split("\n")[0] as string;

    // Alice lists hers, newest first, with when each expires; Bob sees none and cannot touch them.
    const mine = await dce(alice, ["list", "--json"]);
    expect(mine.code, mine.stderr).toBe(0);
    const listed = jsonLines(mine.stdout);
    expect(listed.map((j) => j.jobId)).toEqual([shortId, longId]);
    const [shortJob, longJob] = listed;
    expect(longJob?.expiresAtMs).toBe((longJob?.finishedAtMs ?? 0) + 3_600_000);
    expect(shortJob?.expiresAtMs).toBe((shortJob?.finishedAtMs ?? 0) + 8_000);
    expect(listed.every((j) => j.owner === "alice" && j.state === "succeeded")).toBe(true);
    const table = await dce(alice, ["list"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^JOB +STATE +SHARDS/);
    const theirs = await dce(bob, ["list", "--json"]);
    expect(theirs.stdout.trim()).toBe("");
    for (const args of [
      ["delete", longId],
      ["status", longId],
    ]) {
      const r = await dce(bob, args);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("not_found");
    }
    // The admin sees everyone's jobs, with their owner.
    const all = jsonLines((await dce(cluster.adminToken, ["list", "--json"])).stdout);
    expect(all.filter((j) => j.owner === "alice").map((j) => j.jobId)).toEqual([shortId, longId]);

    // Retention: the 8 s job goes once it expired (the coordinator ticks every 250 ms), the 1 h one stays.
    await new Promise((r) => setTimeout(r, Math.max(0, (shortJob?.expiresAtMs ?? 0) - Date.now()) + 1_000));
    const gone = await dce(alice, ["status", shortId]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("not_found");
    expect((await dce(alice, ["status", longId])).code).toBe(0);

    // Deleted by its owner, now; and still gone after a restart.
    const del = await dce(alice, ["delete", longId]);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout).toBe(`${longId} deleted\n`);
    await cluster.restartCoordinator();
    for (const id of [shortId, longId]) expect((await dce(alice, ["status", id])).code).toBe(1);
    expect((await dce(alice, ["list", "--json"])).stdout.trim()).toBe("");
  }, 180_000);
});
