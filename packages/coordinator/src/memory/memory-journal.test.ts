import type { DurableRecord } from "@dce/core";
import { describe, expect, it } from "vitest";
import { MemoryJournal } from "./memory-journal.js";

const reserve = (upTo: number): DurableRecord => ({ type: "epochs-reserved", upTo });
const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

describe("MemoryJournal", () => {
  it("tells commit observers each batch as it becomes durable, and counts held commits", async () => {
    const j = new MemoryJournal();
    const seen: DurableRecord[][] = [];
    j.observeCommits((rs) => seen.push([...rs]));
    const { journal } = await j.open();
    j.hold();
    journal.append(reserve(10));
    const first = journal.commit();
    await settle();
    expect(j.heldCommits).toBe(1);
    expect(seen).toEqual([]);
    j.release();
    await first;
    expect(seen).toEqual([[reserve(10)]]);
    expect(j.heldCommits).toBe(0);
  });

  it("a crash drops what is not durable and fences the run; a torn crash keeps a prefix of the records in flight", async () => {
    const j = new MemoryJournal();
    const { journal } = await j.open();
    journal.append(reserve(1));
    await journal.commit();
    j.hold();
    journal.append(reserve(2));
    journal.append(reserve(3));
    const flying = journal.commit();
    flying.catch(() => {});
    await settle();
    expect(j.crash(1)).toBe(2);
    j.release();
    await expect(flying).rejects.toThrow(/opened again/);
    await expect(journal.commit()).rejects.toThrow(/opened again/);
    expect(j.records).toEqual([reserve(1), reserve(2)]);
    const again = await j.open();
    expect(again.journal.model.epochFloor).toBeGreaterThanOrEqual(2);
  });

  it("opens through a JSON snapshot of a prefix to the same model", async () => {
    const j = new MemoryJournal();
    const { journal } = await j.open();
    for (const n of [5, 9, 12]) journal.append(reserve(n));
    await journal.commit();
    const plain = await j.open();
    const viaSnapshot = await j.open({ snapshotAfter: 2 });
    expect(viaSnapshot.report.snapshotSeq).toBe(2);
    expect(viaSnapshot.journal.model.epochFloor).toBe(plain.journal.model.epochFloor);
  });
});
