// Text a client chose reaches the journal (idempotency keys, cancel reasons, worker identities):
// it must come back from a restart exactly as it went in, even when it is not well-formed UTF-16.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asClientId, asJobId, type DurableRecord } from "@dce/core";
import { afterEach, describe, expect, it } from "vitest";
import { decodeSegment, encodeRecord, Journal } from "./journal.js";

/** A lone surrogate, a split pair at unit 64, a control character, an astral character. */
const AWKWARD = `key-\ud800-${"k".repeat(58)}\u{1f680}`.slice(0, 64) + "\u0000\u001b\n\u{1f680}";
const SPEC = {
  a: { rows: 1, cols: 1, blobId: "a".repeat(64) },
  b: { rows: 1, cols: 1, blobId: "b".repeat(64) },
  tileRows: 1,
  tileCols: 1,
  kernel: "reference",
};

const records: DurableRecord[] = [
  {
    type: "job-created",
    jobId: asJobId("j1"),
    clientId: asClientId("c1"),
    idempotencyKey: AWKWARD,
    spec: SPEC as never,
    createdAtMs: 1,
  },
  { type: "job-ended", jobId: asJobId("j1"), state: "cancelled", error: AWKWARD, finishedAtMs: 2 },
  { type: "worker-quarantined", identity: AWKWARD, rejectedResults: 3, reason: AWKWARD, atMs: 3 },
];

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("journal text", () => {
  it("frames a record holding lone surrogates and control characters, and decodes it unchanged", () => {
    const buf = Buffer.concat(records.map(encodeRecord));
    const { records: back, validBytes } = decodeSegment(buf);
    expect(validBytes).toBe(buf.byteLength);
    expect(back).toEqual(records);
  });

  it("keeps such text across a restart, from the log and from a snapshot", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-journal-text-"));
    dirs.push(dir);
    const first = (await Journal.open({ dir, fsync: false })).journal;
    for (const r of records) first.append(r);
    await first.commit();
    await first.close();
    for (const from of ["log", "snapshot"]) {
      const { journal, report } = await Journal.open({ dir, fsync: false });
      expect(report.snapshotSeq > 0, from).toBe(from === "snapshot");
      const job = journal.model.jobs.get(asJobId("j1"));
      expect(job?.idempotencyKey, from).toBe(AWKWARD);
      expect(job?.error, from).toBe(AWKWARD);
      expect(journal.model.quarantined.get(AWKWARD)?.reason, from).toBe(AWKWARD);
      await journal.snapshot();
      await journal.close();
    }
  });
});
