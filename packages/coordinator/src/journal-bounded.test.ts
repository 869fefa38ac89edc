import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asClientId, asJobId, type DurableRecord } from "@dce/core";
import { afterEach, describe, expect, it } from "vitest";
import { Journal } from "./journal.js";

// Jobs come and go (retention, DeleteJob): the journal's snapshot leaves deleted jobs out,
// so the journal on disk stays bounded however many jobs ever ran.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const spec = {
  a: { rows: 2, cols: 2, blobId: "a".repeat(64) },
  b: { rows: 2, cols: 2, blobId: "b".repeat(64) },
  tileRows: 2,
  tileCols: 2,
  kernel: "reference",
};

/** The records of one job's whole life, deleted at its end. */
function lifeOf(i: number): DurableRecord[] {
  const jobId = asJobId(`job-${i}`);
  return [
    { type: "job-created", jobId, clientId: asClientId("c"), idempotencyKey: `k${i}`, spec, createdAtMs: i },
    { type: "shard-accepted", jobId, shardIndex: 0, epoch: i + 1 },
    { type: "job-succeeded", jobId, resultBlobId: "c".repeat(64), finishedAtMs: i },
    { type: "job-deleted", jobId, atMs: i },
  ];
}

const bytesOf = (dir: string) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

describe("journal with deleted jobs", () => {
  it("stays bounded as jobs are created and deleted, and a reopened journal holds none of them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-journal-bounded-"));
    dirs.push(dir);
    const { journal } = await Journal.open({ dir, fsync: false, snapshotAfterBytes: 16 * 1024 });
    const sizes: number[] = [];
    for (let i = 0; i < 4_000; i++) {
      for (const r of lifeOf(i)) journal.append(r);
      await journal.commit();
      if (i % 500 === 499) sizes.push(bytesOf(dir));
    }
    // Each job leaves ~700 bytes of records: without dropping deleted jobs from snapshots
    // the journal would hold ~2.8 MB here. It stays under a few segments' worth instead.
    for (const s of sizes) expect(s).toBeLessThan(64 * 1024);
    expect(journal.model.jobs.size).toBe(0);
    await journal.close();
    const { journal: again } = await Journal.open({ dir, fsync: false });
    expect(again.model.jobs.size).toBe(0);
    expect(again.model.epochFloor).toBeGreaterThan(4_000);
    await again.close();
  });

  it("with the default options, compacts once the log is a few times the live state: bounded by the state, not by 64 MiB", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-journal-compact-"));
    dirs.push(dir);
    const { journal } = await Journal.open({ dir, fsync: false });
    let peak = 0;
    // ~700 bytes per job: 8,000 jobs write ~5.6 MB of records, none of them live at the end.
    for (let i = 0; i < 8_000; i++) {
      for (const r of lifeOf(i)) journal.append(r);
      await journal.commit();
      if (i % 250 === 249) peak = Math.max(peak, bytesOf(dir));
    }
    expect(peak).toBeLessThan(1.5 * 1024 * 1024);
    expect(readdirSync(dir)).toContain("snapshot.json");
    await journal.close();
  });
});
