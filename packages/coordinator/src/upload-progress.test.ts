import { describe, expect, it } from "vitest";
import { BlobError } from "./blob-error.js";
import { UploadProgress } from "./upload-progress.js";

const chunk = (from: number, length: number) => Uint8Array.from({ length }, (_, i) => (from + i) & 0xff);

/** Admits and adds a chunk as the store does; returns what it hands back for the hash, joined. */
function send(p: UploadProgress, offset: number, length: number): number[] | "resent" {
  if (!p.admit(offset, length)) return "resent";
  return p.add(offset, chunk(offset, length)).flatMap((piece) => [...piece]);
}

const kindOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof BlobError ? e.kind : e;
  }
  return undefined;
};

describe("UploadProgress", () => {
  it("hands chunks back for the hash in byte order, whatever order they came in", () => {
    const p = new UploadProgress(40);
    expect(send(p, 20, 10)).toEqual([]);
    expect(send(p, 30, 10)).toEqual([]);
    expect(p.received).toBe(20);
    expect(p.complete).toBe(false);
    expect(send(p, 0, 10)).toEqual([...chunk(0, 10)]);
    expect(send(p, 10, 10)).toEqual([...chunk(10, 30)]);
    expect(p.received).toBe(40);
    expect(p.complete).toBe(true);
    expect(p.hashedInOrder).toBe(true);
  });

  it("acknowledges a chunk sent twice without counting it again, before and past the first gap", () => {
    const p = new UploadProgress(30);
    send(p, 0, 10);
    send(p, 20, 10);
    expect(send(p, 0, 10)).toBe("resent");
    expect(send(p, 20, 10)).toBe("resent");
    expect(p.received).toBe(20);
    expect(send(p, 10, 10)).toEqual([...chunk(10, 20)]);
    expect(send(p, 10, 10)).toBe("resent");
    expect(p.received).toBe(30);
  });

  it("refuses a chunk that overlaps received bytes in part, or lies past the declared size", () => {
    const p = new UploadProgress(40);
    send(p, 0, 10);
    send(p, 20, 10);
    expect(kindOf(() => p.admit(5, 10))).toBe("invalid");
    expect(kindOf(() => p.admit(15, 10))).toBe("invalid");
    expect(kindOf(() => p.admit(25, 5))).toBe("invalid");
    expect(kindOf(() => p.admit(35, 10))).toBe("invalid");
    expect(kindOf(() => p.admit(-8, 8))).toBe("invalid");
    expect(p.admit(10, 10)).toBe(true);
  });

  it("refuses a chunk that would leave more than the limit of chunks waiting past a gap", () => {
    const p = new UploadProgress(100, { maxChunksAhead: 3 });
    for (const at of [10, 20, 30]) send(p, at, 10);
    expect(kindOf(() => p.admit(40, 10))).toBe("out-of-order");
    // The chunk at the gap is always welcome, and frees the places.
    expect(send(p, 0, 10)).toHaveLength(40);
    expect(p.admit(40, 10)).toBe(true);
  });

  it("past the bytes it may hold, stops handing bytes out: the store hashes its file instead", () => {
    const p = new UploadProgress(40, { maxHeldBytes: 15 });
    expect(send(p, 10, 10)).toEqual([]);
    expect(p.hashedInOrder).toBe(true);
    expect(send(p, 30, 10)).toEqual([]);
    expect(p.hashedInOrder).toBe(false);
    expect(send(p, 0, 10)).toEqual([]);
    expect(send(p, 20, 10)).toEqual([]);
    expect(p.complete).toBe(true);
  });
});
