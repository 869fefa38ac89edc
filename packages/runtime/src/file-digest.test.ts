import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { digestFile } from "./file-digest.js";

const dir = mkdtempSync(join(tmpdir(), "dce-file-digest-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("digestFile", () => {
  // 8 MiB pieces: a file of 2.5 pieces crosses two piece boundaries.
  const bytes = randomBytes(20 * 1024 * 1024 + 12_345);
  const path = join(dir, "blob");
  writeFileSync(path, bytes);

  it("hashes a whole file, and a range of it, on a thread: the same hex SHA-256 as node:crypto", async () => {
    const [whole, range] = await Promise.all([digestFile(path, bytes.byteLength), digestFile(path, 9 * 1024 * 1024, 1_000_003)]);
    expect(whole).toBe(sha(bytes));
    expect(range).toBe(sha(bytes.subarray(1_000_003, 1_000_003 + 9 * 1024 * 1024)));
  });

  it("a file shorter than asked, or missing, is an error naming it (ENOENT kept)", async () => {
    await expect(digestFile(path, bytes.byteLength + 1)).rejects.toThrow(`${path} ends at ${bytes.byteLength} bytes`);
    await expect(digestFile(join(dir, "missing"), 10)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("keeps the process alive while it hashes, and lets it exit once idle", async () => {
    // A child that starts a digest and does nothing else: it must print the hash (the
    // busy thread holds the process) and then exit by itself (idle threads do not).
    const module = fileURLToPath(new URL("../dist/file-digest.js", import.meta.url));
    const script = `import(${JSON.stringify(module)}).then(async (m) => console.log(await m.digestFile(${JSON.stringify(path)}, ${bytes.byteLength})));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script], { timeout: 20_000 });
    expect(stdout.trim()).toBe(sha(bytes));
  });
});
