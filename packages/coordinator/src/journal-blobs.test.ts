import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blobPath, uploadsDir } from "@dce/runtime/blob-layout";
import { afterEach, describe, expect, it } from "vitest";
import { decodeSegment, Journal } from "./journal.js";
import { JournalBlobs, restoreJournalBlobs } from "./journal-blobs.js";

// Small inline matrices made durable by the journal's own commit (data frames), and put
// back from the journal after a crash took their files.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), "dce-journal-blobs-"));
  dirs.push(d);
  mkdirSync(uploadsDir(d), { recursive: true });
  return d;
}

function matrixBytes(seed: number, bytes = 32 * 1024): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

const idOf = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function open(dir: string) {
  let jb: JournalBlobs | undefined;
  const opened = await Journal.open({ dir: join(dir, "journal"), beforeSnapshot: () => jb?.syncAll() ?? Promise.resolve() });
  jb = new JournalBlobs(dir, (id, data) => opened.journal.appendBlob(id, data));
  return { ...opened, jb };
}

const segmentsOf = (dir: string) => readdirSync(join(dir, "journal")).filter((f) => f.startsWith("wal-"));

describe("journal blobs", () => {
  it("stores a small matrix at its name at once and makes it durable in the same commit as the record after it", async () => {
    const dir = dataDir();
    const { journal, jb } = await open(dir);
    const bytes = matrixBytes(1);
    const id = idOf(bytes);
    jb.put(id, bytes);
    journal.append({ type: "epochs-reserved", upTo: 100 });
    // Readable at its name before any commit (page cache only).
    expect(Buffer.from(readFileSync(blobPath(dir, id))).equals(Buffer.from(bytes))).toBe(true);
    await journal.commit();
    // One commit, one segment: the frame is written before the record, both durable together.
    const seg = readFileSync(join(dir, "journal", segmentsOf(dir)[0] as string));
    const dec = decodeSegment(seg);
    expect(dec.records.map((r) => r.type)).toEqual(["epochs-reserved"]);
    expect(Buffer.from(dec.blobs.get(id) as Uint8Array).equals(Buffer.from(bytes))).toBe(true);
    expect(dec.validBytes).toBe(seg.byteLength);
    expect(jb.unsyncedCount).toBe(1);
    await journal.close();
  });

  it("after a crash, writes back the files a job still names that are missing or damaged, and only those", async () => {
    const dir = dataDir();
    const { journal, jb } = await open(dir);
    const [lost, damaged, intact, orphan] = [1, 2, 3, 4].map((s) => matrixBytes(s));
    for (const b of [lost, damaged, intact, orphan]) jb.put(idOf(b as Uint8Array), b as Uint8Array);
    await journal.commit();
    // The crash: the page cache never reached the disk for two of the files.
    rmSync(blobPath(dir, idOf(lost as Uint8Array)));
    writeFileSync(blobPath(dir, idOf(damaged as Uint8Array)), new Uint8Array((damaged as Uint8Array).byteLength));
    rmSync(blobPath(dir, idOf(orphan as Uint8Array)));
    const reopened = await Journal.open({ dir: join(dir, "journal") });
    const named = new Set([lost, damaged, intact].map((b) => idOf(b as Uint8Array)));
    const stored: string[] = [];
    const written = await restoreJournalBlobs(
      dir,
      reopened.blobs,
      (id) => named.has(id),
      (id) => stored.push(id),
    );
    expect(written).toBe(2);
    for (const b of [lost, damaged, intact]) {
      const id = idOf(b as Uint8Array);
      expect(
        createHash("sha256")
          .update(readFileSync(blobPath(dir, id)))
          .digest("hex"),
      ).toBe(id);
    }
    // A blob no job names any more (its job was deleted) is not brought back.
    expect(existsSync(blobPath(dir, idOf(orphan as Uint8Array)))).toBe(false);
    expect(new Set(stored)).toEqual(named);
    await reopened.journal.close();
  });

  it("a snapshot makes the files durable before it drops the segments holding their frames", async () => {
    const dir = dataDir();
    const { journal, jb } = await open(dir);
    const bytes = matrixBytes(5);
    jb.put(idOf(bytes), bytes);
    await journal.commit();
    const before = segmentsOf(dir);
    await journal.snapshot();
    expect(jb.unsyncedCount).toBe(0);
    // The old segment and its frame are gone; the file is what holds the bytes now.
    expect(segmentsOf(dir).some((s) => before.includes(s))).toBe(false);
    const reopened = await Journal.open({ dir: join(dir, "journal") });
    expect(reopened.blobs.size).toBe(0);
    expect(
      createHash("sha256")
        .update(readFileSync(blobPath(dir, idOf(bytes))))
        .digest("hex"),
    ).toBe(idOf(bytes));
    await reopened.journal.close();
    await journal.close();
  });

  it("cuts a torn data frame off the journal like a torn record", async () => {
    const dir = dataDir();
    const { journal, jb } = await open(dir);
    const first = matrixBytes(6);
    jb.put(idOf(first), first);
    journal.append({ type: "epochs-reserved", upTo: 100 });
    await journal.commit();
    jb.put(idOf(matrixBytes(7)), matrixBytes(7));
    await journal.commit();
    await journal.close();
    const path = join(dir, "journal", segmentsOf(dir)[0] as string);
    const seg = readFileSync(path);
    writeFileSync(path, seg.subarray(0, seg.byteLength - 100));
    const reopened = await Journal.open({ dir: join(dir, "journal") });
    expect([...reopened.blobs.keys()]).toEqual([idOf(first)]);
    expect(reopened.report.truncatedBytes).toBeGreaterThan(0);
    expect(reopened.journal.model.epochFloor).toBeGreaterThan(1);
    await reopened.journal.close();
  });
});
