import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  blobPath,
  blobPrefixDir,
  blobsDir,
  isBlobId,
  parseStagedTileName,
  stagedTileName,
  stagedTilePath,
  stagingDir,
  storeIdPath,
  uploadPath,
  uploadsDir,
} from "./blob-layout.js";

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

  it("names a lease's staging file <job>.<shard>.<epoch>.f64 under staging/, and parses it back", () => {
    const lease = { jobId: "0f6e-4b_Z", shardIndex: 12, epoch: 18_446_744_073_709_551_615n };
    expect(stagingDir("/d")).toBe(join("/d", "staging"));
    expect(stagedTileName(lease)).toBe("0f6e-4b_Z.12.18446744073709551615.f64");
    expect(stagedTilePath("/d", lease)).toBe(join("/d", "staging", "0f6e-4b_Z.12.18446744073709551615.f64"));
    expect(parseStagedTileName("0f6e-4b_Z.12.18446744073709551615.f64")).toEqual(lease);
  });

  it("refuses a job id or number that could leave the staging folder or name two files", () => {
    for (const jobId of ["", "..", "../x", "a/b", "a\\b", "a.b", "a\u0000", "x".repeat(129)]) {
      expect(stagedTileName({ jobId, shardIndex: 0, epoch: 1n })).toBeUndefined();
      expect(stagedTilePath("/d", { jobId, shardIndex: 0, epoch: 1n })).toBeUndefined();
    }
    expect(stagedTileName({ jobId: "j", shardIndex: -1, epoch: 1n })).toBeUndefined();
    expect(stagedTileName({ jobId: "j", shardIndex: 1.5, epoch: 1n })).toBeUndefined();
    expect(stagedTileName({ jobId: "j", shardIndex: 0, epoch: -1n })).toBeUndefined();
    expect(stagedTileName({ jobId: "j", shardIndex: 0, epoch: 2n ** 64n })).toBeUndefined();
    expect(stagedTileName({ jobId: "j", shardIndex: 0, epoch: 0.5 })).toBeUndefined();
    expect(stagedTileName({ jobId: "j", shardIndex: 0, epoch: 7 })).toBe("j.0.7.f64");
    for (const name of ["j.01.1.f64", "j.1.01.f64", "j.1.1", "j.1.1.f64.tmp", "../j.1.1.f64", "j.1.99999999999999999999.f64"]) {
      expect(parseStagedTileName(name)).toBeUndefined();
    }
  });
});
