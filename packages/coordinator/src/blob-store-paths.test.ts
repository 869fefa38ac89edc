import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobError, BlobStore } from "./blob-store.js";

// A blob id is a hex SHA-256 before it is ever part of a path: ids that would walk out
// of the blob folder find nothing, even when the file they name exists.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("BlobStore ids are never paths", () => {
  it("answers not-found for ids that name existing files outside the blob folder", () => {
    const root = mkdtempSync(join(tmpdir(), "dce-blobs-"));
    dirs.push(root);
    const dir = join(root, "data");
    mkdirSync(join(dir, "journal"), { recursive: true });
    writeFileSync(join(root, "secret"), "x".repeat(16));
    writeFileSync(join(dir, "tokens.json"), "{}");
    const store = new BlobStore({ dir, maxBlobBytes: 1 << 20, maxOpenUploads: 4, uploadIdleMs: 60_000 });
    try {
      for (const id of ["../../secret", "../tokens.json", "../../../../etc/passwd", "/etc/passwd", `${"a".repeat(63)}/`, ""]) {
        expect(store.sizeOf(id)).toBeUndefined();
        expect(() => store.read(id, 0, 16)).toThrow(BlobError);
      }
      // Upper-case hex is not an id either (ids are lower-case, one spelling per content).
      expect(store.sizeOf("A".repeat(64))).toBeUndefined();
      expect(() => store.begin(8, "../../secret", 0)).toThrow("sha256 must be 64 lower-case hex characters");
      expect(() => store.append("../../secret", 0, new Uint8Array(8), 0)).toThrow("not found");
    } finally {
      store.close();
    }
  });
});
