import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DataDirError } from "./storage-errors.js";
import { faults } from "./test-support/disk-faults.js";
import { addToken, readTokenFile } from "./tokens.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// `coordinator tokens` on a full disk: it says the data dir is full, and leaves neither a
// half-written file nor a lock that would block the next command.

const dirs: string[] = [];
afterEach(() => {
  faults.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-tokens-disk-"));
  dirs.push(dir);
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<DataDirError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DataDirError);
  return e as DataDirError;
}

describe("the token file on a full disk", () => {
  it("a lock file the disk refuses is removed, so the next command is not blocked", async () => {
    const dir = tmp();
    faults.arm({ op: "writeFile", path: /tokens\.json\.lock$/, code: "ENOSPC", times: 1 });
    const e = await rejection(addToken(dir, "alice", "client"));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toContain(`data dir ${dir} is full (ENOSPC) while writing tokens.json.lock`);
    expect(readdirSync(dir)).toEqual([]);
    await addToken(dir, "alice", "client"); // at once, not after a 5 s wait for the lock
    expect(readTokenFile(dir).map((t) => t.name)).toEqual(["alice"]);
  });

  it("a token file the disk refuses: the data dir is named, the old file is intact, no temporary file is left", async () => {
    const dir = tmp();
    await addToken(dir, "alice", "client");
    faults.arm({ op: "write", path: /tokens\.json\..*\.tmp$/, code: "ENOSPC" });
    const e = await rejection(addToken(dir, "bob", "client"));
    expect(e.rawMessage).toContain(`data dir ${dir} is full (ENOSPC) while writing tokens.json`);
    expect(readdirSync(dir).sort()).toEqual(["tokens.json"]);
    expect(readTokenFile(dir).map((t) => t.name)).toEqual(["alice"]);
  });
});
