import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Journal } from "./journal.js";
import { DataDirError } from "./storage-errors.js";
import { faults } from "./test-support/disk-faults.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// The journal on a disk that fills up: a failed commit leaves nothing of its batch in
// the file and says which data dir is full; a failed snapshot costs nothing but space.

const dirs: string[] = [];
afterEach(() => {
  faults.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), "dce-journal-disk-"));
  dirs.push(d);
  return d;
}

describe("Journal on a full disk", () => {
  it("a commit the disk refuses half way rejects with RESOURCE_EXHAUSTED and leaves none of its records behind", async () => {
    const dir = dataDir();
    const { journal } = await Journal.open({ dir: join(dir, "journal") });
    journal.append({ type: "epochs-reserved", upTo: 100 });
    await journal.commit();
    faults.arm({ op: "write", path: /wal-/, code: "ENOSPC", partialBytes: 30 });
    journal.append({ type: "epochs-reserved", upTo: 200 });
    journal.append({ type: "epochs-reserved", upTo: 300 });
    const e = await journal.commit().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(DataDirError);
    expect((e as DataDirError).code).toBe(Code.ResourceExhausted);
    expect((e as DataDirError).rawMessage).toContain(`data dir ${dir} is full (ENOSPC) while writing the journal (wal-`);
    // Every later commit fails the same way: memory is ahead of disk.
    await expect(journal.commit()).rejects.toBe(e);
    await journal.close().catch(() => {});

    faults.clear();
    const { journal: again, report } = await Journal.open({ dir: join(dir, "journal") });
    expect(report).toMatchObject({ records: 1, truncatedBytes: 0 });
    expect(again.model.epochFloor).toBe(100);
    await again.close();
  });

  it("a snapshot the disk refuses is not fatal: commits go on, the temporary file is removed, nothing is lost", async () => {
    const dir = join(dataDir(), "journal");
    const failed: unknown[] = [];
    const { journal } = await Journal.open({ dir, snapshotAfterBytes: 1, onSnapshotFailed: (e) => failed.push(e) });
    faults.arm({ op: "writeFile", path: /snapshot\.json\.tmp$/, code: "ENOSPC", times: 1 });
    journal.append({ type: "epochs-reserved", upTo: 100 });
    await journal.commit();
    expect(failed).toHaveLength(1);
    expect(existsSync(join(dir, "snapshot.json.tmp"))).toBe(false);
    journal.append({ type: "epochs-reserved", upTo: 200 });
    await journal.commit(); // and this one's snapshot succeeds
    await journal.close();
    expect(readdirSync(dir)).toContain("snapshot.json");
    const { journal: again } = await Journal.open({ dir });
    expect(again.model.epochFloor).toBe(200);
    await again.close();
  });
});
