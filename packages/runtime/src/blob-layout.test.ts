import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { blobPath, blobPrefixDir, blobsDir, isBlobId, storeIdPath, uploadPath, uploadsDir } from "./blob-layout.js";

const ID = `ab${"0".repeat(62)}`;

describe("blob layout", () => {
  it("places a blob under blobs/<first 2 hex>/<id>, uploads under uploads/, the id in store-id", () => {
    expect(blobsDir("/d")).toBe(join("/d", "blobs"));
    expect(blobPrefixDir("/d", ID)).toBe(join("/d", "blobs", "ab"));
    expect(blobPath("/d", ID)).toBe(join("/d", "blobs", "ab", ID));
    expect(uploadsDir("/d")).toBe(join("/d", "uploads"));
    expect(uploadPath("/d", "u1")).toBe(join("/d", "uploads", "u1"));
    expect(storeIdPath("/d")).toBe(join("/d", "store-id"));
    // A relative store folder stays relative (the coordinator joins onto its --data-dir as given).
    expect(blobPath("rel", ID)).toBe(join("rel", "blobs", "ab", ID));
  });

  it("accepts only 64 lower-case hex characters as a blob id", () => {
    expect(isBlobId(ID)).toBe(true);
    for (const bad of ["", ID.slice(1), `${ID}0`, ID.toUpperCase(), `../${ID.slice(3)}`, `g${ID.slice(1)}`]) {
      expect(isBlobId(bad)).toBe(false);
    }
  });
});
