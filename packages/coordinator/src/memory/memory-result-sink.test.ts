import { describe, expect, it } from "vitest";
import { MemoryBlobStore } from "./memory-blob-store.js";
import { MemoryResultSink } from "./memory-result-sink.js";

const tile = (v: number) => new Uint8Array(new Float64Array([v]).buffer);
const at = (i: number, j: number) => ({ rowStart: i, rowEnd: i + 1, colStart: j, colEnd: j + 1 });

describe("MemoryResultSink", () => {
  it("without explicitSync, every write is durable at once", () => {
    const sink = new MemoryResultSink(new MemoryBlobStore());
    sink.prepare("j", 1, 2);
    sink.writeTile("j", at(0, 1), tile(3));
    expect(new Float64Array(sink.durableBytesOf("j")?.slice().buffer ?? new ArrayBuffer(0))).toEqual(new Float64Array([0, 3]));
  });

  it("with explicitSync, writes are durable at sync, and a crash drops the rest", () => {
    const sink = new MemoryResultSink(new MemoryBlobStore(), { explicitSync: true });
    sink.prepare("j", 1, 2);
    sink.writeTile("j", at(0, 0), tile(1));
    sink.sync();
    sink.writeTile("j", at(0, 1), tile(2));
    const durable = () => new Float64Array(sink.durableBytesOf("j")?.slice().buffer ?? new ArrayBuffer(0));
    expect(durable()).toEqual(new Float64Array([1, 0]));
    sink.crash();
    expect(sink.has("j")).toBe(true);
    sink.writeTile("j", at(0, 1), tile(5));
    sink.sync();
    expect(durable()).toEqual(new Float64Array([1, 5]));
  });
});
